"""Audio decoding to mono float32 at a target sample rate: libsndfile, and FFmpeg (PyAV) for M4A/AAC."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import av
import librosa
import numpy as np
import soundfile as sf

LIBSNDFILE_EXTENSIONS = frozenset(
    {".wav", ".wave", ".aif", ".aiff", ".aifc", ".au", ".snd", ".flac", ".ogg", ".oga", ".opus", ".mp3"}
)
"""Suffixes decoded by libsndfile (WAV, AIFF, AU, FLAC, Ogg Vorbis, Opus, MP3)."""
FFMPEG_EXTENSIONS = frozenset({".m4a", ".mp4", ".aac"})
"""Suffixes libsndfile cannot read (MPEG-4 audio/AAC), decoded by FFmpeg through PyAV."""
AUDIO_EXTENSIONS = LIBSNDFILE_EXTENSIONS | FFMPEG_EXTENSIONS
SHORT_READ_FRACTION = 0.95
"""A file whose decodable audio is shorter than this share of what its header promises is truncated."""


class AudioDecodeError(Exception):
    """A file could not be decoded as audio; the message names the file and the reason."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header says.

    Attributes:
        sample_rate: native rate (in Hz).
        channels: channel count.
        duration_s: length (in seconds).
    """

    sample_rate: int
    channels: int
    duration_s: float


def audio_info(path: str | Path) -> AudioInfo:
    """Read the header of ``path`` without decoding the samples.

    Raises:
        AudioDecodeError: the file is missing, empty or not a readable audio format.
    """
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioDecodeError(path, f"unreadable header ({exc})") from exc
    if info.frames <= 0:
        raise AudioDecodeError(path, "zero-length audio")
    return AudioInfo(info.samplerate, info.channels, info.frames / info.samplerate)


def load_audio(path: str | Path, sample_rate: int, *, max_duration_s: float | None = None) -> np.ndarray:
    """Decode ``path``, mix to mono and resample.

    Args:
        path: WAV, AIFF, AU, FLAC, Ogg Vorbis, Opus or MP3 (libsndfile), or M4A/AAC (FFmpeg via PyAV),
            chosen by the file suffix (see :data:`AUDIO_EXTENSIONS`).
        sample_rate: target rate (in Hz).
        max_duration_s: keep at most this many seconds from the start (``None``: all).

    Returns:
        Samples in [-1, 1], float32, shape (time,), at ``sample_rate`` Hz.

    Raises:
        AudioDecodeError: unreadable, truncated, zero-length or non-finite audio.
    """
    decode = _decode_ffmpeg if Path(path).suffix.lower() in FFMPEG_EXTENSIONS else _decode_libsndfile
    data, native_sr = decode(path, max_duration_s)
    if data.shape[0] == 0:
        raise AudioDecodeError(path, "zero-length audio")
    if not np.isfinite(data).all():
        raise AudioDecodeError(path, "non-finite samples")
    return to_mono_resampled(data, native_sr, sample_rate)


def _decode_libsndfile(path: str | Path, max_duration_s: float | None) -> tuple[np.ndarray, int]:
    """Samples of shape (time, channels) and the native rate (in Hz), through libsndfile."""
    kind = Path(path).suffix.lower() or "audio"
    if kind in (".au", ".snd") and _magic(path) != b".snd":
        # libsndfile would read a header-less .au as raw 8 kHz u-law: any bytes would "decode".
        raise AudioDecodeError(path, f"not an AU file (no '.snd' header, first bytes {_magic(path)!r})")
    try:
        with sf.SoundFile(str(path)) as f:
            native_sr = f.samplerate
            frames = f.frames if max_duration_s is None else min(f.frames, int(max_duration_s * native_sr))
            data = f.read(frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioDecodeError(path, f"cannot decode as {kind} ({exc})") from exc
    if frames > 0 and data.shape[0] < SHORT_READ_FRACTION * frames:
        raise AudioDecodeError(
            path, f"truncated: the header promises {frames / native_sr:.1f} s, {data.shape[0] / native_sr:.1f} s decode"
        )
    return data, native_sr


def _magic(path: str | Path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(4)
    except OSError as exc:
        raise AudioDecodeError(path, f"cannot read ({exc})") from exc


def _decode_ffmpeg(path: str | Path, max_duration_s: float | None) -> tuple[np.ndarray, int]:
    """Samples of shape (time, channels) and the native rate (in Hz), through FFmpeg (PyAV)."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AudioDecodeError(path, "no audio stream")
            stream = container.streams.audio[0]
            native_sr = stream.codec_context.sample_rate
            limit = None if max_duration_s is None else int(max_duration_s * native_sr)
            to_float = av.AudioResampler(format="fltp")  # planar float32, native layout and rate
            blocks, n = [], 0
            for frame in container.decode(stream):
                for out in to_float.resample(frame):
                    blocks.append(out.to_ndarray())  # (channels, samples)
                    n += blocks[-1].shape[1]
                if limit is not None and n >= limit:
                    break
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise AudioDecodeError(path, f"cannot decode ({exc})") from exc
    if not blocks:
        raise AudioDecodeError(path, "zero-length audio")
    data = np.concatenate(blocks, axis=1).T
    return np.ascontiguousarray(data[:limit]), native_sr


def to_mono_resampled(data: np.ndarray, orig_sr: int, sample_rate: int) -> np.ndarray:
    """Mix (time, channels) or (time,) samples to mono and resample to ``sample_rate`` Hz.

    Returns:
        float32, shape (time',), time' = round(time * sample_rate / orig_sr).
    """
    mono = data.mean(axis=1) if data.ndim == 2 else data
    mono = np.ascontiguousarray(mono, dtype=np.float32)
    if orig_sr != sample_rate:
        mono = librosa.resample(mono, orig_sr=orig_sr, target_sr=sample_rate, res_type="soxr_hq")
    return mono.astype(np.float32, copy=False)


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (streamed by ``hashlib.file_digest``)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
