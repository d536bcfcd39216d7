"""Pretrained musicnn weights: converted once from the PyPI package's TensorFlow checkpoints, cached, verified.

TensorFlow cannot share the project's environment (musicnn builds a TF1-style graph and the
working combination needs numpy < 2), so the conversion runs ``infra/musicnn_convert.py`` in an
isolated virtual environment built with uv from :data:`TF_ENV_REQUIREMENTS`, into which the
``musicnn`` wheel is installed without its (impossible) dependency pins. The checkpoint is
checked against :data:`CHECKPOINT_SHA256` before conversion; the converted ``.npz`` is written
through a temporary file and renamed only after it loads into :class:`crnn.musicnn.Musicnn`, so a
failed or interrupted conversion never leaves a file that loads. Scoring and serving never
need any of this: the trained model's checkpoint holds every weight.

Weights: musicnn 0.1.0 by Jordi Pons and Xavier Serra (ISC licence), trained on the Million Song
Dataset (``MSD_musicnn``) or MagnaTagATune (``MTT_musicnn``).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from filelock import FileLock

from crnn.audio import file_sha256
from crnn.musicnn import CHECKPOINTS, load_pretrained
from infra.storage import commit

logger = logging.getLogger(__name__)

MUSICNN_PACKAGE = "musicnn==0.1.0"
TF_ENV_REQUIREMENTS = ("tensorflow-cpu==2.15.1", "numpy==1.26.4", "librosa==0.10.2.post1")
"""The isolated converter environment: the combination that runs musicnn's TF1-style graph."""
TF_ENV_PYTHON = "3.11"
CHECKPOINT_SHA256 = {
    "MSD_musicnn": "8579734ee6388f799ed0def4bbd0d1fdcbeaf213ef2a9dc860917bd76a303de6",
    "MTT_musicnn": "041f3935e981a65cea739842d30c188d3a7d2adf4410955c8668eb3de4a5acab",
}
"""SHA-256 of each checkpoint's ``.data-00000-of-00001`` in the musicnn 0.1.0 wheel."""
CACHE_ENV = "GENRE_CRNN_PRETRAINED_DIR"
"""Environment variable naming the cache folder (default: ``<work_dir>/pretrained``)."""
CONVERTER = Path(__file__).with_name("musicnn_convert.py")


class PretrainedWeightsError(RuntimeError):
    """The pretrained weights could not be installed, verified or converted; the message says which step."""


def cache_dir(work_dir: str | Path) -> Path:
    """Where converted weights and the converter environment live: ``$GENRE_CRNN_PRETRAINED_DIR`` or ``<work_dir>/pretrained``."""
    return Path(os.environ.get(CACHE_ENV) or Path(work_dir) / "pretrained")


def weights_path(checkpoint: str, root: Path) -> Path:
    """The converted ``.npz`` of ``checkpoint``, keyed by the pinned SHA-256 of its TF checkpoint."""
    return root / "musicnn" / f"{checkpoint}-{CHECKPOINT_SHA256[checkpoint][:16]}.npz"


def _uv() -> list[str]:
    found = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if not found:
        raise PretrainedWeightsError("musicnn conversion needs uv (make setup installs it; or pip install uv)")
    return [found]


def _run(cmd: list[str], step: str) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise PretrainedWeightsError(f"musicnn conversion: {step} failed: {tail[0]}")


def converter_env(root: Path) -> Path:
    """The isolated TensorFlow + musicnn environment (built once); returns its Python.

    Raises:
        PretrainedWeightsError: uv is missing or an install failed (e.g. no access to PyPI).
    """
    env = root / "musicnn" / "tf-env"
    python = env / "bin" / "python"
    marker = env / ".complete"
    if marker.exists():
        return python
    shutil.rmtree(env, ignore_errors=True)  # a half-built environment from an interrupted run
    logger.info("musicnn: building the converter environment (%s) in %s", ", ".join(TF_ENV_REQUIREMENTS), env)
    uv = _uv()
    _run([*uv, "venv", "--quiet", "--python", TF_ENV_PYTHON, str(env)], "creating the environment")
    _run([*uv, "pip", "install", "--quiet", "--python", str(python), *TF_ENV_REQUIREMENTS], "installing TensorFlow")
    # The wheel pins numpy<1.17, which cannot be built today; its code needs only what is installed above.
    _run(
        [*uv, "pip", "install", "--quiet", "--no-deps", "--python", str(python), MUSICNN_PACKAGE], "installing musicnn"
    )
    marker.touch()
    return python


def _checkpoint_dir(python: Path, checkpoint: str) -> Path:
    out = subprocess.run(
        [str(python), "-c", "import importlib.util as u; print(u.find_spec('musicnn').submodule_search_locations[0])"],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise PretrainedWeightsError("musicnn conversion: the converter environment has no musicnn package")
    folder = Path(out.stdout.strip()) / checkpoint
    data = folder / ".data-00000-of-00001"
    if not data.is_file() or file_sha256(data) != CHECKPOINT_SHA256[checkpoint]:
        raise PretrainedWeightsError(f"musicnn conversion: {data} is missing or does not match its pinned SHA-256")
    return folder


def ensure_musicnn_weights(checkpoint: str, root: Path) -> Path:
    """Path of the converted weights of ``checkpoint``, converting them first if needed (once per cache).

    Concurrent callers wait on a file lock, so the conversion runs once.

    Args:
        checkpoint: a key of :data:`crnn.musicnn.CHECKPOINTS` (``MSD_musicnn`` or ``MTT_musicnn``).
        root: the cache folder (:func:`cache_dir`).

    Raises:
        ValueError: an unknown checkpoint. PretrainedWeightsError: a step of the conversion failed.
    """
    if checkpoint not in CHECKPOINTS:
        raise ValueError(f"musicnn checkpoint must be one of {', '.join(CHECKPOINTS)}, got {checkpoint!r}")
    final = weights_path(checkpoint, root)
    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(final.parent / ".convert.lock")):
        if final.exists():
            return final
        start = time.perf_counter()
        logger.info("musicnn: converting the pretrained %s weights (once; about a minute)", checkpoint)
        python = converter_env(root)
        source = _checkpoint_dir(python, checkpoint)
        staging = final.with_name(f".{final.stem}.converting.npz")
        staging.unlink(missing_ok=True)
        try:
            _run(
                [
                    str(python),
                    str(CONVERTER),
                    "--checkpoint-dir",
                    str(source),
                    "--name",
                    checkpoint,
                    "--out",
                    str(staging),
                ],
                "reading the TensorFlow checkpoint",
            )
            load_pretrained(staging, checkpoint)  # every variable present, every shape right
            commit(staging, final)  # fsynced, mode 0644, renamed, folder fsynced
        finally:
            staging.unlink(missing_ok=True)
        logger.info("musicnn: %s converted in %.0f s -> %s", checkpoint, time.perf_counter() - start, final)
    return final
