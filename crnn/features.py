"""Log-mel spectrograms: a torch path (batched, GPU-capable), a librosa CPU path, and a disk cache.

Both paths compute the same quantity: Slaney-scale, Slaney-normalised mel filterbank over the
power STFT (Hann window of ``n_fft`` samples, centred frames with reflect padding), converted
to dB as ``10 * log10(max(power, 1e-10))`` without ``top_db`` clipping. ``tests/crnn`` checks
that they agree within ``PARITY_ATOL_DB``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import librosa
import numpy as np
import torch
import torchaudio
from torch import Tensor, nn

from crnn.atomic import atomic_open
from crnn.audio import load_audio
from crnn.config import FeatureConfig

AMIN = 1e-10
"""Power floor before the dB conversion (-100 dB)."""

PARITY_ATOL_DB = 0.05
"""Largest allowed |torch - librosa| difference (in dB) on bins above -80 dB."""


def _mel_spectrogram(cfg: FeatureConfig, *, center: bool) -> torchaudio.transforms.MelSpectrogram:
    return torchaudio.transforms.MelSpectrogram(
        sample_rate=cfg.sample_rate,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        f_min=cfg.f_min,
        f_max=cfg.resolved_f_max,
        n_mels=cfg.n_mels,
        power=2.0,
        center=center,
        pad_mode="reflect",
        norm="slaney",
        mel_scale="slaney",
    )


class LogMel(nn.Module):
    """Waveform to log-mel spectrogram, as a module so it travels inside a saved model.

    Input: samples in [-1, 1], shape (..., time), at ``cfg.sample_rate`` Hz.
    Output: power in dB, shape (..., n_mels, frames), frames = 1 + time // hop_length.
    """

    def __init__(self, cfg: FeatureConfig) -> None:
        super().__init__()
        self.mel = _mel_spectrogram(cfg, center=True)
        self.to_db = torchaudio.transforms.AmplitudeToDB(stype="power", top_db=None)
        self.to_db.amin = AMIN

    def forward(self, waveform: Tensor) -> Tensor:
        """Return the log-mel spectrogram of ``waveform``; see the class docstring for shapes."""
        return self.to_db(self.mel(waveform))


def log_mel(waveform: Tensor, cfg: FeatureConfig) -> Tensor:
    """Log-scaled mel spectrogram of mono audio (torch path).

    Args:
        waveform: samples in [-1, 1], shape (..., time), at cfg.sample_rate Hz.
        cfg: n_fft and hop_length in samples; f_min/f_max in Hz.

    Returns:
        Power in dB, shape (..., n_mels, frames), frames = 1 + time // hop_length.
    """
    return LogMel(cfg).to(waveform.device)(waveform)


def log_mel_librosa(waveform: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Log-scaled mel spectrogram of mono audio (librosa CPU path), same definition as :func:`log_mel`.

    Args:
        waveform: samples in [-1, 1], shape (time,), at cfg.sample_rate Hz.
        cfg: the feature config.

    Returns:
        Power in dB, float32, shape (n_mels, frames), frames = 1 + time // hop_length.
    """
    power = librosa.feature.melspectrogram(
        y=waveform,
        sr=cfg.sample_rate,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        n_mels=cfg.n_mels,
        fmin=cfg.f_min,
        fmax=cfg.resolved_f_max,
        power=2.0,
        center=True,
        pad_mode="reflect",
        htk=False,
        norm="slaney",
    )
    return librosa.power_to_db(power, ref=1.0, amin=AMIN, top_db=None).astype(np.float32)


def batched_log_mel(
    waveforms: Sequence[Tensor], cfg: FeatureConfig, device: torch.device | str = "cpu"
) -> list[Tensor]:
    """Log-mel spectrograms of tracks of different lengths in one batched STFT.

    Each waveform is reflect-padded by ``n_fft // 2`` on both sides on its own (exactly as
    ``center=True`` does), zero-padded to the longest, transformed once, and trimmed back, so
    the result equals :func:`log_mel` applied one by one.

    Args:
        waveforms: each shape (time_i,), samples in [-1, 1] at cfg.sample_rate Hz;
            every time_i must exceed ``n_fft // 2`` (reflect padding needs that many samples).
        cfg: the feature config.
        device: where to compute (e.g. ``"cuda"``).

    Returns:
        One float32 CPU tensor per input, shape (n_mels, 1 + time_i // hop_length), in dB.

    Raises:
        ValueError: a waveform is too short to pad.
    """
    pad = cfg.n_fft // 2
    padded = []
    for i, w in enumerate(waveforms):
        if w.shape[-1] <= pad:
            raise ValueError(f"waveform {i} has {w.shape[-1]} samples; needs more than n_fft // 2 = {pad}")
        padded.append(torch.nn.functional.pad(w.to(device)[None, None], (pad, pad), mode="reflect")[0, 0])
    batch = torch.nn.utils.rnn.pad_sequence(padded, batch_first=True)  # (B, max_time + 2 * pad)
    mel = _mel_spectrogram(cfg, center=False).to(device)
    db = torchaudio.transforms.AmplitudeToDB(stype="power", top_db=None).to(device)
    db.amin = AMIN
    with torch.inference_mode():
        out = db(mel(batch))  # (B, n_mels, frames_max)
    return [out[i, :, : 1 + w.shape[-1] // cfg.hop_length].float().cpu() for i, w in enumerate(waveforms)]


def segment_starts(n_frames: int, cfg: FeatureConfig) -> list[int]:
    """Start frames of the segments a track of ``n_frames`` frames is cut into.

    Segments of ``cfg.segment_frames`` frames start every ``cfg.hop_frames`` frames. A track
    shorter than one segment but at least ``cfg.min_frames`` long is one (shorter) segment
    starting at 0; a track shorter than that has no segment.
    """
    if n_frames < cfg.min_frames:
        return []
    if n_frames <= cfg.segment_frames:
        return [0]
    return list(range(0, n_frames - cfg.segment_frames + 1, cfg.hop_frames))


def scored_segment_starts(n_frames: int, cfg: FeatureConfig) -> list[int]:
    """Start frames of the segments scoring reads: :func:`segment_starts`, at most ``cfg.max_segments`` of them.

    With more segments than ``max_segments`` (> 0), segment ``floor((i + 0.5) * n / max_segments)`` is
    kept for each ``i``: one from the middle of each of ``max_segments`` equal stretches of the track,
    so a track's start and end (intros, fades) weigh no more than its body.
    """
    starts = segment_starts(n_frames, cfg)
    n, keep = len(starts), cfg.max_segments
    if keep == 0 or n <= keep:
        return starts
    return [starts[(2 * i + 1) * n // (2 * keep)] for i in range(keep)]


def segment_log_mel(log_mel_: Tensor, cfg: FeatureConfig) -> Tensor:
    """Cut one track's log-mel spectrogram into the segments scoring reads (:func:`scored_segment_starts`).

    Args:
        log_mel_: shape (n_mels, frames), in dB.
        cfg: segment length and overlap.

    Returns:
        Shape (n_segments, n_mels, min(frames, segment_frames)).

    Raises:
        ValueError: the track is shorter than ``cfg.min_segment_s``.
    """
    n_frames = log_mel_.shape[-1]
    starts = scored_segment_starts(n_frames, cfg)
    if not starts:
        raise ValueError(
            f"audio of {n_frames} frames is shorter than min_segment_s={cfg.min_segment_s} s ({cfg.min_frames} frames)"
        )
    width = min(n_frames, cfg.segment_frames)
    return torch.stack([log_mel_[:, s : s + width] for s in starts])


class FeatureCache:
    """Log-mel spectrograms on disk, keyed by audio content hash and spectral config.

    A file lives at ``root/<cfg.cache_key()>/<sha256>.npy`` (float32, shape (n_mels, frames));
    it is written atomically, so an interrupted run leaves no partial entry.
    """

    def __init__(self, root: str | Path, cfg: FeatureConfig) -> None:
        self.cfg = cfg
        self.dir = Path(root) / cfg.cache_key()

    def path(self, sha256: str) -> Path:
        """Where the log-mel of the audio with this content hash is stored."""
        return self.dir / f"{sha256}.npy"

    def has(self, sha256: str) -> bool:
        """Whether the entry exists."""
        return self.path(sha256).exists()

    def load(self, sha256: str) -> np.ndarray:
        """Read an entry, shape (n_mels, frames)."""
        return np.load(self.path(sha256))

    def save(self, sha256: str, value: np.ndarray) -> Path:
        """Write an entry (float32) atomically and return its path."""
        with atomic_open(self.path(sha256), binary=True) as f:
            np.save(f, value.astype(np.float32, copy=False))
        return self.path(sha256)


def extract_to_cache(
    items: Sequence[tuple[str, str]],
    cache: FeatureCache,
    *,
    backend: str = "librosa",
    device: torch.device | str = "cpu",
    batch_size: int = 16,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, int]:
    """Compute the log-mel of every ``(audio_path, sha256)`` not yet in ``cache``.

    Args:
        items: audio files and their content hashes.
        cache: where results go.
        backend: ``"librosa"`` (CPU, one by one) or ``"torch"`` (batched, on ``device``).
        device: torch device for the torch backend.
        batch_size: tracks per batched STFT (torch backend).
        on_progress: called as ``on_progress(done, total)``.

    Returns:
        ``{"computed": n, "cached": m}``, counting distinct content hashes.

    Raises:
        ValueError: unknown backend. AudioDecodeError: a file does not decode.
    """
    if backend not in ("librosa", "torch"):
        raise ValueError(f"feature backend must be 'librosa' or 'torch', got {backend!r}")
    unique = {h: p for p, h in reversed(items)}  # one computation per content hash (first path wins)
    todo = [(p, h) for h, p in reversed(unique.items()) if not cache.has(h)]
    total, done = len(unique), len(unique) - len(todo)
    for start in range(0, len(todo), batch_size if backend == "torch" else 1):
        chunk = todo[start : start + (batch_size if backend == "torch" else 1)]
        waves = [load_audio(p, cache.cfg.sample_rate) for p, _ in chunk]
        if backend == "torch":
            mels = [m.numpy() for m in batched_log_mel([torch.from_numpy(w) for w in waves], cache.cfg, device)]
        else:
            mels = [log_mel_librosa(w, cache.cfg) for w in waves]
        for (_, sha), mel in zip(chunk, mels, strict=True):
            cache.save(sha, mel)
        done += len(chunk)
        if on_progress:
            on_progress(done, total)
    return {"computed": len(todo), "cached": len(unique) - len(todo)}
