"""Checkpoints and whole-track prediction from waveforms or files."""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from crnn.audio import load_audio, to_mono_resampled
from crnn.config import FeatureConfig, PipelineConfig
from crnn.features import segment_log_mel
from crnn.models import GenreNet
from crnn.onnx_runtime import attach, attached
from crnn.zoo import build_model

__all__ = [
    "RUNTIMES",
    "InferenceSettings",
    "build_model",
    "checkpoint_labels",
    "checkpoint_state",
    "inference_settings",
    "load_checkpoint",
    "predict_file",
    "predict_waveform",
    "prepare_for_inference",
    "scoring_settings",
    "segment_probs",
]

ACCELERATOR_BATCH_SIZE = 64
"""Segments per forward pass on a GPU, which wants large batches (a CPU uses the model's ``inference_batch_size``)."""


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AVX-512 BF16 or AMX); elsewhere bf16 is emulated and slow."""
    checks = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
    return any(check is not None and check() for check in checks)


RUNTIMES = ("torch", "onnxruntime")
"""Engines a forward can run in: torch, or ONNX Runtime on the classifier exported at registration (:mod:`crnn.onnx_runtime`)."""


@dataclass(frozen=True)
class InferenceSettings:
    """How a model runs at prediction time: the one place scoring, serving and evaluation take it from.

    Every choice here is measured by ``bench/inference_variants.py`` (side by side with the plain fp32
    forward on real tracks) and kept only where it is faster and gives the same genres; see
    ``bench/RESULTS.md``.

    Attributes:
        batch_size: segments per forward pass.
        channels_last: run the conv layers in the channels-last (NHWC) memory layout (same results up
            to float rounding; oneDNN's convolutions and max-pools are faster in it).
        bf16: run under ``torch.autocast`` in bfloat16 (only where the hardware has it: probabilities
            differ from fp32 by up to ``BF16_PROB_TOLERANCE``, checked by a test).
        overlap_s: overlap between a track's scored segments (in seconds); ``None``: the model's
            training-time ``overlap_s``. Default 0: crnn-attention's 1.5 s overlap doubles the forward
            passes (18 against 10 segments per 30 s track) for the same genre on 100/100 gtzan_mini tracks
            and the same accuracy (0.86); the cross-artist excerpts are one segment each either way.
        runtime: one of :data:`RUNTIMES`. ``onnxruntime`` runs the model's exported classifier (attached by
            :func:`load_checkpoint` from a registered model's ``.onnx`` artifact; ``channels_last`` and ``bf16``
            do not apply to it): on one CPU thread 1.5x (musicnn-linear) and 2.3x (crnn-attention) the kept
            torch forward, 5-12x on two threads of a busy 2-core machine; the same genres and probabilities
            within :data:`crnn.onnx_runtime.ONNX_PROB_TOLERANCE` (``bench/inference_variants.py``).
    """

    batch_size: int
    channels_last: bool = True
    bf16: bool = False
    overlap_s: float | None = 0.0
    runtime: str = "torch"

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 segment, got {self.batch_size}")
        if self.runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {self.runtime!r}")

    def features(self, cfg: FeatureConfig) -> FeatureConfig:
        """``cfg`` with the segmentation scoring uses (``overlap_s``); the spectral settings are the model's."""
        return cfg if self.overlap_s is None else dataclasses.replace(cfg, overlap_s=self.overlap_s)

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        """The autocast context of these settings on ``device`` (a no-op without ``bf16``)."""
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.bf16)


BF16_PROB_TOLERANCE = 0.02
"""Largest difference of a track probability (in [0, 1]) between a bf16 and the fp32 forward that the tests allow."""


def inference_settings(model: GenreNet) -> InferenceSettings:
    """The measured fastest equal settings for ``model`` on the device its parameters are on.

    CPU: the model's ``inference_batch_size``; ONNX Runtime when the model has an exported classifier attached
    (:func:`crnn.onnx_runtime.attached`), else torch with bf16 autocast where the CPU has native bfloat16
    (:func:`cpu_has_native_bf16`). GPU: :data:`ACCELERATOR_BATCH_SIZE` segments per pass, torch fp32. The
    layout is the model's ``inference_channels_last`` (musicnn is slower in channels-last).
    """
    device = next(model.parameters()).device
    layout = model.inference_channels_last
    if device.type == "cpu" and attached(model) is not None:
        return InferenceSettings(model.inference_batch_size, channels_last=layout, runtime="onnxruntime")
    if device.type == "cpu":
        return InferenceSettings(model.inference_batch_size, channels_last=layout, bf16=cpu_has_native_bf16())
    return InferenceSettings(ACCELERATOR_BATCH_SIZE, channels_last=layout)


def prepare_for_inference(model: GenreNet, settings: InferenceSettings | None = None) -> GenreNet:
    """Put ``model`` (in place) in eval mode and in the memory layout of ``settings`` (default: :func:`inference_settings`).

    Returns:
        ``model`` itself, for chaining.
    """
    settings = settings or inference_settings(model)
    model.eval()
    if settings.channels_last:
        model.to(memory_format=torch.channels_last)  # 4-D weights only; 1-D/2-D parameters are untouched
    return model


@torch.inference_mode()
def segment_probs(model: GenreNet, segments: torch.Tensor, settings: InferenceSettings | None = None) -> np.ndarray:
    """Softmax probabilities of a track's segments, in batches of ``settings.batch_size``.

    Args:
        model: a :class:`crnn.models.GenreNet` in eval mode, on any device.
        segments: log-mels in dB, shape (n_segments, n_mels, frames), on any device.
        settings: default :func:`inference_settings` of ``model``.

    Returns:
        float32, shape (n_segments, n_classes); each row sums to 1.

    Raises:
        ValueError: ``settings.runtime`` is ``onnxruntime`` and ``model`` has no exported classifier attached.
    """
    settings = settings or inference_settings(model)
    step = settings.batch_size
    if settings.runtime == "onnxruntime":
        classifier = attached(model)
        if classifier is None:
            raise ValueError("runtime 'onnxruntime' needs the model's exported classifier (load_checkpoint(onnx=...))")
        return np.concatenate([classifier(segments[i : i + step]) for i in range(0, len(segments), step)])
    device = next(model.parameters()).device
    with settings.autocast(device):
        probs = [
            torch.softmax(model.classify(segments[i : i + step].to(device)).float(), dim=-1)
            for i in range(0, len(segments), step)
        ]
    return torch.cat(probs).cpu().numpy()


def scoring_settings(model: GenreNet, **changes) -> InferenceSettings:
    """:func:`inference_settings` of ``model`` with ``changes`` (:class:`InferenceSettings` fields) applied."""
    return dataclasses.replace(inference_settings(model), **changes)


def predict_segments(model: GenreNet, log_mel: torch.Tensor, cfg: FeatureConfig, **settings) -> np.ndarray:
    """:func:`segment_probs` of the segments :func:`crnn.features.segment_log_mel` cuts from one track.

    Args:
        model: a :class:`crnn.models.GenreNet` in eval mode, on any device.
        log_mel: shape (n_mels, frames), in dB.
        cfg: segmentation (segment_s, min_segment_s, max_segments; ``overlap_s`` only with ``overlap_s=None``).
        **settings: :class:`InferenceSettings` fields overriding :func:`inference_settings` (e.g. ``batch_size``,
            ``overlap_s``).

    Returns:
        Softmax probabilities, shape (n_segments, n_classes).

    Raises:
        ValueError: the track is shorter than ``cfg.min_segment_s``.
    """
    chosen = scoring_settings(model, **settings)
    return segment_probs(model, segment_log_mel(log_mel, chosen.features(cfg)), chosen)


def checkpoint_state(model: GenreNet, cfg: PipelineConfig) -> dict:
    """The self-describing checkpoint: weights, the full config (labels included) and the class names."""
    return {"state_dict": model.state_dict(), "config": cfg.to_dict(), "genres": list(cfg.model.labels)}


def _config(state: dict) -> PipelineConfig:
    """The config of a loaded checkpoint; one saved before ``model.labels`` takes its ``genres`` (else GTZAN's)."""
    data = dict(state["config"])
    if "genres" in state and "labels" not in data.get("model", {}):
        data["model"] = {**data.get("model", {}), "labels": list(state["genres"])}
    return PipelineConfig.from_dict(data)


def checkpoint_labels(path: str | Path) -> tuple[str, ...]:
    """The class names a checkpoint predicts, in output order (GTZAN's ten for checkpoints that predate labels).

    Raises:
        FileNotFoundError: no such file. KeyError: not a genre-crnn checkpoint.
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    return _config(state).model.labels


def load_checkpoint(
    path: str | Path, device: torch.device | str = "cpu", onnx: str | Path | None = None
) -> tuple[GenreNet, PipelineConfig]:
    """Rebuild the model saved by :func:`checkpoint_state` in eval mode on ``device``.

    With ``onnx`` (the classifier :func:`crnn.onnx_runtime.export_classifier` wrote for this checkpoint) and
    a CPU ``device``, the model scores in ONNX Runtime (:func:`inference_settings`); a file that does not
    load is logged and the model scores with torch.

    The class comes from the config's ``model.architecture`` (checkpoints written before the
    model zoo have none and are ``crnn-attention``; those written before calibration get
    temperature 1), the class names from ``model.labels`` (:func:`checkpoint_labels`). Pretrained weights are part of the state dict: nothing is converted here.

    Raises:
        FileNotFoundError: no such file. KeyError: not a genre-crnn checkpoint.
    """
    state = torch.load(path, map_location=device, weights_only=True)
    cfg = _config(state)
    model = build_model(cfg)
    weights = state["state_dict"]
    weights.setdefault("temperature", torch.ones(()))  # checkpoints from before calibration
    model.load_state_dict(weights)
    model = prepare_for_inference(model.to(device))
    if onnx is not None:
        attach(model, onnx)
    return model, cfg


@torch.inference_mode()
def predict_waveform(model: GenreNet, waveform: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Genre probabilities of a whole track.

    The track is resampled to the model's rate, turned into one log-mel spectrogram by the
    model's own front end, cut into segments (as :class:`InferenceSettings` says: without overlap)
    and scored; the track probabilities are the mean of the segment probabilities.

    Args:
        model: a :class:`crnn.models.GenreNet` in eval mode.
        waveform: samples in [-1, 1], shape (time,) or (time, channels), at ``sample_rate`` Hz.
        sample_rate: rate of ``waveform`` (in Hz).

    Returns:
        ``(track_probs, segment_probs)`` with shapes (n_classes,) and (n_segments, n_classes).

    Raises:
        ValueError: the audio is shorter than the config's ``min_segment_s``.
    """
    cfg = model.feature_cfg
    mono = to_mono_resampled(np.asarray(waveform, dtype=np.float32), sample_rate, cfg.sample_rate)
    # The centred STFT needs more than n_fft // 2 samples; check here so very short audio is a ValueError too.
    if mono.size <= cfg.n_fft // 2 or 1 + mono.size // cfg.hop_length < cfg.min_frames:
        raise ValueError(
            f"audio of {mono.size / cfg.sample_rate:.3f} s is shorter than min_segment_s={cfg.min_segment_s} s"
        )
    device = next(model.parameters()).device
    log_mel = model.frontend(torch.from_numpy(mono).to(device))  # (n_mels, frames)
    probs = predict_segments(model, log_mel, cfg)
    return probs.mean(axis=0), probs


def predict_file(model: GenreNet, path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """:func:`predict_waveform` on a decoded file.

    Raises:
        AudioDecodeError: the file does not decode. ValueError: too short.
    """
    rate = model.feature_cfg.sample_rate
    return predict_waveform(model, load_audio(path, rate), rate)
