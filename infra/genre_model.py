"""MLflow pyfunc wrapper for genre-crnn, logged as "models from code".

The model takes a DataFrame whose rows are either waveforms with their rate (columns ``waveform``:
list of samples in [-1, 1], mono, and ``sample_rate`` in Hz) or audio file paths (column ``path``).
It returns one row per input: ``genre`` (top class) and ``prob_<genre>`` for each class the
checkpoint names (``model.labels``; GTZAN's ten for checkpoints from before labels). Preprocessing
(resampling, log-mel, segmentation) comes from the config inside the checkpoint artifact, so it
cannot drift from training.

Paths are opened only under the folder named by ``$GENRE_CRNN_SERVE_ROOT`` (:data:`SERVE_ROOT_ENV`),
read at each prediction: unset, a ``path`` row is refused, so ``mlflow models serve`` never opens a
file of the server for a network client unless its operator allows a folder. Local uses
(``mlflow models predict`` on one's own files) set the variable the same way; code of this project
that scores its own files uses :func:`paths_allowed`. Bad input raises :class:`InvalidModelInput`,
which the scoring server answers with HTTP 400 and a one-line reason, without a stack trace.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel

SERVE_ROOT_ENV = "GENRE_CRNN_SERVE_ROOT"
"""Environment variable naming the one folder whose files ``path`` rows may name (symlinks resolved);
unset or empty: ``path`` rows are refused."""
ONNX_ARTIFACT = "onnx"
"""Artifact key of the exported segment classifier (``classifier.onnx``) beside the ``checkpoint``; models
logged before it, or whose export failed, have none and score with torch."""


class InvalidModelInput(MlflowException):
    """Bad model input; the scoring server answers HTTP 400 with ``{"error_code": "INVALID_PARAMETER_VALUE", "message": <reason>}``.

    The message stays the one-line reason: the scoring server rewrites the message of an exception
    raised in ``predict`` to prepend the whole input (a multi-line DataFrame), which is ignored here.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason, error_code=INVALID_PARAMETER_VALUE)

    @property
    def message(self) -> str:
        """The one-line reason."""
        return self._reason

    @message.setter
    def message(self, value: str) -> None:
        if not hasattr(self, "_reason"):  # set once, by MlflowException.__init__
            self._reason = " ".join(str(value).split())


@contextlib.contextmanager
def paths_allowed(root: str | Path = "/") -> Iterator[None]:
    """Let ``path`` rows name files under ``root`` while the block runs (in-process scoring of one's own files).

    Sets :data:`SERVE_ROOT_ENV` for the process and restores it afterwards.
    """
    before = os.environ.get(SERVE_ROOT_ENV)
    os.environ[SERVE_ROOT_ENV] = str(root)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(SERVE_ROOT_ENV, None)
        else:
            os.environ[SERVE_ROOT_ENV] = before


def allowed_path(path: str) -> Path:
    """``path`` resolved (relative paths: under the root), if it lies under ``$GENRE_CRNN_SERVE_ROOT``.

    Raises:
        InvalidModelInput: the variable is unset, its folder does not exist, or ``path`` resolves
            (``..`` and symlinks followed) outside it.
    """
    root = os.environ.get(SERVE_ROOT_ENV, "")
    if not root:
        raise InvalidModelInput(
            f"'path' input is disabled: send 'waveform' and 'sample_rate', or start the model with "
            f"{SERVE_ROOT_ENV}=<folder> to allow reading audio files under that folder"
        )
    base = Path(root).expanduser()
    if not base.is_dir():
        raise InvalidModelInput(f"{SERVE_ROOT_ENV}={root}: not a folder")
    base = base.resolve()
    resolved = (base / path).resolve()  # an absolute path replaces base
    if not resolved.is_relative_to(base):
        raise InvalidModelInput(f"path {path!r} is outside the folder that {SERVE_ROOT_ENV} allows")  # not named
    return resolved


def _waveform(row: pd.Series) -> tuple[np.ndarray, int]:
    """The row's waveform (float32, shape (time,)) and rate (in Hz), checked."""
    waveform, rate = row.get("waveform"), row.get("sample_rate")
    if waveform is None or rate is None or pd.isna(rate):
        raise InvalidModelInput("each row needs either 'path' or both 'waveform' and 'sample_rate'")
    try:
        samples = np.asarray(waveform, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InvalidModelInput(f"'waveform' must be a list of numbers ({exc})") from None
    if samples.ndim != 1 or samples.size == 0:
        raise InvalidModelInput(f"'waveform' must be a non-empty list of mono samples, got shape {samples.shape}")
    if not np.isfinite(samples).all():
        raise InvalidModelInput("'waveform' holds non-finite samples (NaN or infinity)")
    if not 1 <= int(rate) <= 768_000:
        raise InvalidModelInput(f"'sample_rate' must be in 1-768000 Hz, got {rate}")
    return samples, int(rate)


class GenreModel(PythonModel):
    """Whole-track genre classifier over a :class:`crnn.models.GenreNet` checkpoint."""

    def load_context(self, context) -> None:
        """Load the checkpoint artifact ``checkpoint`` on CUDA when available, else CPU.

        On the CPU the model scores in ONNX Runtime when the model carries its exported classifier (artifact
        ``onnx``, see :func:`infra.registry.log_model`); models logged without one score with torch.
        """
        import torch  # here, not at the top: infra.registry imports paths_allowed, and batch scoring must not pay torch

        from crnn.inference import load_checkpoint

        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model, self.cfg = load_checkpoint(
            context.artifacts["checkpoint"], device, context.artifacts.get(ONNX_ARTIFACT)
        )
        self.genres = list(self.cfg.model.labels)

    def _probs(self, row: pd.Series) -> np.ndarray:
        from crnn.audio import AudioDecodeError
        from crnn.inference import predict_file, predict_waveform

        path = row.get("path")
        try:
            if isinstance(path, str) and path:
                return predict_file(self.model, allowed_path(path))[0]
            return predict_waveform(self.model, *_waveform(row))[0]
        except (AudioDecodeError, ValueError) as exc:  # undecodable or too short
            raise InvalidModelInput(str(exc)) from None

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        """Genre and per-genre probabilities for every row of ``model_input``.

        Raises:
            InvalidModelInput: a row is unusable; the message names the row (0-based) and the reason.
        """
        if model_input.empty:
            raise InvalidModelInput("no rows to score")
        rows = []
        for i, (_, row) in enumerate(model_input.iterrows()):
            try:
                rows.append(self._probs(row))
            except InvalidModelInput as exc:
                raise InvalidModelInput(f"row {i}: {exc.message}") from None
        probs = np.stack(rows)
        out = pd.DataFrame(probs, columns=[f"prob_{g}" for g in self.genres])
        out.insert(0, "genre", [self.genres[i] for i in probs.argmax(axis=1)])
        return out


mlflow.models.set_model(GenreModel())
