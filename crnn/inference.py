"""Checkpoints and whole-track prediction from waveforms or files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from crnn.audio import load_audio, to_mono_resampled
from crnn.config import PipelineConfig
from crnn.evaluate import predict_segments
from crnn.models import GenreNet
from crnn.zoo import build_model

__all__ = [
    "build_model",
    "checkpoint_labels",
    "checkpoint_state",
    "load_checkpoint",
    "predict_file",
    "predict_waveform",
]


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


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> tuple[GenreNet, PipelineConfig]:
    """Rebuild the model saved by :func:`checkpoint_state` in eval mode on ``device``.

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
    return model.to(device).eval(), cfg


@torch.inference_mode()
def predict_waveform(model: GenreNet, waveform: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Genre probabilities of a whole track.

    The track is resampled to the model's rate, turned into one log-mel spectrogram by the
    model's own front end, cut into segments and scored; the track probabilities are the mean
    of the segment probabilities.

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
    segment_probs = predict_segments(model, log_mel, cfg)
    return segment_probs.mean(axis=0), segment_probs


def predict_file(model: GenreNet, path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """:func:`predict_waveform` on a decoded file.

    Raises:
        AudioDecodeError: the file does not decode. ValueError: too short.
    """
    rate = model.feature_cfg.sample_rate
    return predict_waveform(model, load_audio(path, rate), rate)
