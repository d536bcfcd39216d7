"""ONNX export of a model's segment classifier, and its forward in ONNX Runtime (CPU).

A registered model carries, beside its checkpoint, the classifier exported here: log-mel segments
(batch, n_mels, frames) in dB -> softmax probabilities (batch, n_classes), batch a dynamic axis
(frames too, except for models with a fixed input width, whose shorter segments
:class:`OnnxClassifier` loops up to that width first, as :meth:`crnn.models.GenreNet.embedding`
does). The export is checked against the torch forward before it is kept
(:func:`check_classifier`), so a kept file gives the same probabilities within
:data:`ONNX_PROB_TOLERANCE`. Which forward scoring uses is :class:`crnn.inference.InferenceSettings`'
``runtime``; a model gets the ONNX Runtime forward by :func:`attach` (done by
:func:`crnn.inference.load_checkpoint` when it is given the file).

Export uses torch's TorchScript-based exporter (``dynamo=False``), which needs only the ``onnx``
package (the ``dynamo=True`` exporter also needs ``onnxscript``); running needs ``onnxruntime``,
imported on first use so that importing this module stays cheap.
"""

from __future__ import annotations

import copy
import logging
import warnings
import weakref
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from crnn.atomic import atomic_path
from crnn.models import GenreNet, tile_frames

__all__ = [
    "ONNX_PROB_TOLERANCE",
    "OnnxClassifier",
    "OnnxExportError",
    "attach",
    "attached",
    "check_classifier",
    "export_classifier",
]

ONNX_OPSET = 17
"""ONNX operator set of exported classifiers (ONNX Runtime 1.32 runs 7-23)."""
ONNX_PROB_TOLERANCE = 1e-5
"""Largest difference of a probability (in [0, 1]) between the ONNX Runtime and the torch forward that is accepted
(measured: <= 1e-6 on the zoo's architectures, fresh and trained weights; float32 rounding)."""
INPUT_NAME, OUTPUT_NAME = "log_mel", "probs"

_log = logging.getLogger(__name__)
_ATTACHED: weakref.WeakKeyDictionary[GenreNet, OnnxClassifier] = weakref.WeakKeyDictionary()


class OnnxExportError(RuntimeError):
    """An exported classifier does not reproduce the torch forward (the message says by how much)."""


class _Probs(nn.Module):
    """``model.classify`` followed by softmax: (B, n_mels, frames) in dB -> (B, n_classes) probabilities."""

    def __init__(self, model: GenreNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, log_mel: Tensor) -> Tensor:
        return torch.softmax(self.model.classify(log_mel), dim=-1)


def _example(model: GenreNet, batch: int, frames: int, seed: int = 0) -> Tensor:
    """Seeded random log-mels (batch, n_mels, frames) in dB, around -40 dB with a 20 dB spread."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, model.feature_cfg.n_mels, frames, generator=generator) * 20.0 - 40.0


def export_classifier(model: GenreNet, path: str | Path) -> Path:
    """Write ``model``'s segment classifier to ``path`` as ONNX (atomically; the model itself is not changed).

    Args:
        model: any :class:`crnn.models.GenreNet`, on any device, in any memory layout.
        path: destination ``.onnx`` file.

    Returns:
        ``path``. Input ``log_mel`` (batch, n_mels, frames) in dB, ``frames`` fixed at
        ``feature_cfg.segment_frames`` for ``fixed_input`` models; output ``probs`` (batch, n_classes).

    Raises:
        Exception: whatever torch's exporter raises for a layer it cannot express (the caller decides
            whether that is fatal); OSError: the file cannot be written.
    """
    wrapped = _Probs(copy.deepcopy(model).cpu().to(memory_format=torch.contiguous_format)).eval()
    axes = {0: "batch"} if model.fixed_input else {0: "batch", 2: "frames"}
    path = Path(path)
    with atomic_path(path, suffix=".onnx") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation notice and tracer hints; checked below instead
        torch.onnx.export(
            wrapped,
            (_example(model, 2, model.feature_cfg.segment_frames),),
            str(tmp),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: {0: "batch"}},
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
    return path


class OnnxClassifier:
    """An ONNX Runtime session (CPU) of a file written by :func:`export_classifier`.

    Args:
        path: the ``.onnx`` file.
        threads: intra-op threads (default: torch's current ``torch.get_num_threads()``, the setting the
            torch forward it replaces would use); inter-op threads are 1 (the graph is one chain) and idle
            threads sleep instead of spinning (a 2-core machine shares its cores with the decode thread).

    Raises:
        ImportError: ``onnxruntime`` is not installed. onnxruntime's errors: the file is not a valid model.
    """

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import onnxruntime  # here: importing crnn.inference must not pay for it

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # errors only
        self.path = Path(path)
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        width = self.session.get_inputs()[0].shape[2]
        self.fixed_frames = width if isinstance(width, int) else None
        """Input width of a fixed-width export (frames), or ``None`` when any width is accepted."""

    def __call__(self, log_mel: Tensor) -> np.ndarray:
        """Probabilities (batch, n_classes), float32, of log-mels (batch, n_mels, frames) in dB (any device)."""
        if self.fixed_frames is not None:
            log_mel = tile_frames(log_mel, self.fixed_frames)  # (batch, n_mels, fixed_frames)
        inputs = np.ascontiguousarray(log_mel.detach().cpu().numpy(), dtype=np.float32)
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: inputs})[0]


@torch.inference_mode()
def check_classifier(model: GenreNet, classifier: OnnxClassifier, tolerance: float = ONNX_PROB_TOLERANCE) -> float:
    """Compare ``classifier`` with ``model``'s torch forward on seeded random log-mels (full and shorter widths).

    Returns:
        The largest probability difference found.

    Raises:
        OnnxExportError: a difference above ``tolerance``, or a different top class.
    """
    frames = model.feature_cfg.segment_frames
    widths = (frames,) if model.fixed_input else (frames, max(model.feature_cfg.min_frames, frames * 3 // 4))
    worst = 0.0
    for seed, width in enumerate(widths):
        log_mel = _example(model, 3, width, seed=seed + 1)
        expected = torch.softmax(model.eval().classify(log_mel.to(next(model.parameters()).device)), -1).cpu().numpy()
        got = classifier(log_mel)
        worst = max(worst, float(np.abs(got - expected).max()))
        if worst > tolerance or not (got.argmax(1) == expected.argmax(1)).all():
            raise OnnxExportError(
                f"{classifier.path}: ONNX Runtime differs from torch by {worst:.2e} on {width}-frame inputs "
                f"(tolerance {tolerance:.0e})"
            )
    return worst


def attach(model: GenreNet, path: str | Path) -> bool:
    """Give ``model`` (on the CPU) the ONNX Runtime forward of ``path``; see :func:`attached`.

    A file that does not load, or a model on another device, is logged as a warning and left out: the
    model keeps its torch forward.

    Returns:
        Whether the forward was attached.
    """
    if next(model.parameters()).device.type != "cpu":
        return False
    try:
        _ATTACHED[model] = OnnxClassifier(path)
    except Exception as exc:  # noqa: BLE001 - a model that scores with torch beats one that does not load
        _log.warning("%s: not used, scoring with torch (%s: %s)", path, type(exc).__name__, exc)
        return False
    return True


def attached(model: GenreNet) -> OnnxClassifier | None:
    """The ONNX Runtime forward given to ``model`` by :func:`attach` (``None``: none; copies of the model have none)."""
    return _ATTACHED.get(model)
