"""Audio decoding to mono float32 at a target sample rate: libsndfile, and FFmpeg (PyAV) for M4A/AAC."""

from __future__ import annotations

import hashlib
import math
import os
import stat
import struct
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import soundfile as sf
import soxr

LIBSNDFILE_EXTENSIONS = frozenset(
    {".wav", ".wave", ".aif", ".aiff", ".aifc", ".au", ".snd", ".flac", ".ogg", ".oga", ".opus", ".mp3"}
)
"""Suffixes decoded by libsndfile (WAV, AIFF, AU, FLAC, Ogg Vorbis, Opus, MP3)."""
FFMPEG_EXTENSIONS = frozenset({".m4a", ".mp4", ".aac"})
"""Suffixes libsndfile cannot read (MPEG-4 audio/AAC), decoded by FFmpeg through PyAV."""
AUDIO_EXTENSIONS = LIBSNDFILE_EXTENSIONS | FFMPEG_EXTENSIONS
MIN_SAMPLE_RATE = 4000
"""Lowest native sample rate (in Hz) a file may declare; below it the header is taken to be broken."""
MAX_SAMPLE_RATE = 768_000
"""Highest native sample rate (in Hz) a file may declare."""
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


UNKNOWN_CHUNK_SIZE = 0xFFFFFFFF
"""RIFF or data size written by streaming encoders that did not know the length ("read to the end")."""


@dataclass(frozen=True)
class WavLayout:
    """What a RIFF/WAVE file's header states about its size, next to the file's real size.

    Attributes:
        file_bytes: the file's size (in bytes).
        riff_bytes: the RIFF chunk size of the header (the file should be ``riff_bytes + 8`` bytes).
        data_offset: where the ``data`` samples start (in bytes), or ``None`` when there is no data chunk.
        data_bytes: the ``data`` chunk size of the header (in bytes), or ``None``.
        block_align: bytes per frame (all channels), or ``None`` without a ``fmt `` chunk.
    """

    file_bytes: int
    riff_bytes: int
    data_offset: int | None
    data_bytes: int | None
    block_align: int | None

    @property
    def streaming(self) -> bool:
        """The header leaves the RIFF or data size unknown (0xFFFFFFFF)."""
        return UNKNOWN_CHUNK_SIZE in (self.riff_bytes, self.data_bytes)

    @property
    def missing_data_bytes(self) -> int:
        """Bytes of the data chunk its header promises beyond the end of the file (0: all present)."""
        if self.data_offset is None or self.data_bytes is None or self.streaming:
            return 0
        return max(0, self.data_offset + self.data_bytes - self.file_bytes)


def wav_layout(path: str | Path) -> WavLayout | None:
    """Read the chunk sizes of a RIFF/WAVE header, or ``None`` when ``path`` is not a RIFF/WAVE file.

    Raises:
        OSError: the file cannot be read.
    """
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        size = os.fstat(f.fileno()).st_size
        riff_bytes, pos, block_align = struct.unpack("<I", head[4:8])[0], 12, None
        while pos + 8 <= size:
            f.seek(pos)
            chunk_id, chunk_bytes = struct.unpack("<4sI", f.read(8))
            fmt = f.read(14) if chunk_id == b"fmt " else b""
            if len(fmt) == 14:
                block_align = struct.unpack("<H", fmt[12:14])[0] or None
            elif chunk_id == b"data":
                return WavLayout(size, riff_bytes, pos + 8, chunk_bytes, block_align)
            pos += 8 + chunk_bytes + (chunk_bytes & 1)
    return WavLayout(size, riff_bytes, None, None, block_align)


def non_regular_reason(path: str | Path) -> str | None:
    """Why ``path`` (symlinks followed) must not be opened: a FIFO, device, socket or folder; else ``None``.

    Only ``stat`` is called, so a FIFO without a writer cannot hang the caller. A missing file gives
    ``None`` (opening it reports that).
    """
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return None
    kinds = {stat.S_ISFIFO: "a FIFO", stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device"}
    kinds |= {stat.S_ISSOCK: "a socket", stat.S_ISDIR: "a folder"}
    kind = next((name for test, name in kinds.items() if test(mode)), "not a regular file")
    return f"not a regular file ({kind}); not opened"


def _check_openable(path: str | Path) -> None:
    if reason := non_regular_reason(path):
        raise AudioDecodeError(path, reason)


def _check_sample_rate(path: str | Path, sample_rate: int) -> None:
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise AudioDecodeError(
            path, f"implausible sample rate {sample_rate} Hz (expected {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz)"
        )


def _libsndfile_reason(exc: Exception) -> str:
    """The message of libsndfile, reworded when it only means "no format it knows" (it blames pipes for MP3)."""
    text = str(exc)
    if "possibly a pipe" in text or "Format not recognised" in text:
        return "not a decodable audio file (libsndfile recognises no audio format in it)"
    return text


def audio_info(path: str | Path) -> AudioInfo:
    """Read the header of ``path`` without decoding the samples.

    Raises:
        AudioDecodeError: the file is missing, empty, not a regular file, not a readable audio
            format, or declares a sample rate outside [MIN_SAMPLE_RATE, MAX_SAMPLE_RATE].
    """
    _check_openable(path)
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioDecodeError(path, f"unreadable header: {_libsndfile_reason(exc)}") from exc
    _check_sample_rate(path, info.samplerate)
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
        AudioDecodeError: not a regular file (checked before opening), unreadable, truncated,
            zero-length or non-finite audio, or an implausible sample rate.
    """
    _check_openable(path)
    decode = _decode_ffmpeg if Path(path).suffix.lower() in FFMPEG_EXTENSIONS else _decode_libsndfile
    stream = decode(path, sample_rate, max_duration_s)
    if stream.frames == 0:
        raise AudioDecodeError(path, "zero-length audio")
    if not stream.finite:
        raise AudioDecodeError(path, "non-finite samples")
    return stream.finish()


DECODE_BLOCK_FRAMES = 1 << 16
"""Frames decoded at a time; each block is mixed to mono and resampled at once, so memory is bounded by
the block (all its channels, at the native rate) plus the mono output at the target rate."""


PREALLOCATED_SAMPLES = 1 << 26
"""Most output samples reserved up front (256 MiB of address space, resident only once written)."""


class MonoStream:
    """Mono blocks at the native rate in, resampled as they arrive (soxr's streaming resampler, quality HQ).

    The result equals ``librosa.resample(whole, res_type="soxr_hq")`` of the whole signal, sample for sample.
    Output goes straight into one buffer sized from ``frames_hint`` (grown by doubling if the hint was
    short), so memory is the output once, not per block plus a concatenated copy.

    Args:
        orig_sr: native rate of the blocks (in Hz).
        sample_rate: target rate (in Hz).
        frames_hint: native frames expected (0: unknown).
    """

    def __init__(self, orig_sr: int, sample_rate: int, frames_hint: int = 0) -> None:
        self.frames, self.finite = 0, True  # native frames taken in; all of them finite
        self._ratio = sample_rate / orig_sr
        self._soxr = None
        if orig_sr != sample_rate:
            self._soxr = soxr.ResampleStream(orig_sr, sample_rate, 1, dtype="float32", quality="HQ")
        capacity = min(math.ceil(frames_hint * self._ratio) + 1, PREALLOCATED_SAMPLES)
        self._out, self._n = np.zeros(capacity, dtype=np.float32), 0  # zeros: pages untouched until written

    def add(self, mono: np.ndarray) -> None:
        """Take the next block: float32 samples at ``orig_sr`` Hz, shape (time,)."""
        self.frames += mono.shape[0]
        self.finite = self.finite and bool(np.isfinite(mono).all())
        self._append(mono if self._soxr is None else self._soxr.resample_chunk(mono))

    def _append(self, chunk: np.ndarray) -> None:
        end = self._n + chunk.shape[0]
        if end > self._out.shape[0]:
            grown = np.zeros(max(end, 2 * self._out.shape[0]), dtype=np.float32)
            grown[: self._n] = self._out[: self._n]
            self._out = grown
        self._out[self._n : end] = chunk
        self._n = end

    def finish(self) -> np.ndarray:
        """All output: float32, shape (time',), time' = ceil(frames * sample_rate / orig_sr) (librosa's length)."""
        if self._soxr is not None:
            self._append(self._soxr.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
        n = math.ceil(self.frames * self._ratio) if self._soxr is not None else self.frames
        if n > self._n:  # soxr's output ends a sample short of librosa's length, which pads with zeros
            self._append(np.zeros(n - self._n, dtype=np.float32))
        return self._out[:n]


def downmix(block: np.ndarray, *, planar: bool = False) -> np.ndarray:
    """Mix a block of float32 samples to mono: the mean of the channels, as one matrix-vector product.

    ``block.mean(axis=...)`` reduces along the short channel axis element by element (15 ms for a 30 s
    stereo track); a product with the weights ``1 / channels`` is ~25x faster and, for one or two
    channels, gives the same numbers bit for bit (halving is exact); for more channels they differ by
    at most one rounding step of float32.

    Args:
        block: shape (time, channels) interleaved, or (channels, time) when ``planar``.
        planar: the channel axis comes first (FFmpeg's planar ``fltp`` frames).

    Returns:
        float32, shape (time,): a view of the only channel for mono input, else a new array.
    """
    channels = block.shape[0] if planar else block.shape[1]
    if channels == 1:
        return block[0] if planar else block[:, 0]
    weights = np.full(channels, 1.0 / channels, dtype=np.float32)
    return weights @ block if planar else block @ weights


def _read_mono(f: sf.SoundFile, frames: int, stream: MonoStream) -> None:
    """Feed up to ``frames`` frames of ``f``, block by block and mixed to mono, to ``stream``."""
    buffer = np.empty((min(DECODE_BLOCK_FRAMES, max(frames, 1)), f.channels), dtype=np.float32)
    while stream.frames < frames:
        block = f.read(min(buffer.shape[0], frames - stream.frames), dtype="float32", always_2d=True, out=buffer)
        if block.shape[0] == 0:
            break
        stream.add(downmix(block))  # the same numbers as mixing the whole file: rows are independent


def _decode_libsndfile(path: str | Path, sample_rate: int, max_duration_s: float | None) -> MonoStream:
    """The file mixed to mono and resampled to ``sample_rate`` Hz as it is read, through libsndfile."""
    kind = Path(path).suffix.lower() or "audio"
    if kind in (".au", ".snd") and _magic(path) != b".snd":
        # libsndfile would read a header-less .au as raw 8 kHz u-law: any bytes would "decode".
        raise AudioDecodeError(path, f"not an AU file (no '.snd' header, first bytes {_magic(path)!r})")
    try:
        with sf.SoundFile(str(path)) as f:
            native_sr = f.samplerate
            _check_sample_rate(path, native_sr)
            frames = f.frames if max_duration_s is None else min(f.frames, int(max_duration_s * native_sr))
            stream = MonoStream(native_sr, sample_rate, frames)
            _read_mono(f, frames, stream)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioDecodeError(path, f"cannot decode as {kind}: {_libsndfile_reason(exc)}") from exc
    if frames > 0 and stream.frames < SHORT_READ_FRACTION * frames:
        raise AudioDecodeError(
            path, f"truncated: the header promises {frames / native_sr:.1f} s, {stream.frames / native_sr:.1f} s decode"
        )
    if stream.frames:  # no samples at all: load_audio says "zero-length audio"
        _check_wav_complete(path, native_sr)
    return stream


def _check_wav_complete(path: str | Path, native_sr: int) -> None:
    """Raise when a WAV's data chunk holds less than SHORT_READ_FRACTION of what its header promises.

    libsndfile quietly shortens such a file to the bytes present, so its frame count cannot tell.
    """
    try:
        layout = wav_layout(path)
    except OSError as exc:
        raise AudioDecodeError(path, f"cannot read ({exc})") from exc
    if layout is None or not layout.missing_data_bytes or not layout.block_align:
        return
    promised = layout.data_bytes / layout.block_align / native_sr
    present = (layout.data_bytes - layout.missing_data_bytes) / layout.block_align / native_sr
    if present < SHORT_READ_FRACTION * promised:
        raise AudioDecodeError(path, f"truncated: the header promises {promised:.1f} s, {present:.1f} s decode")


def _magic(path: str | Path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(4)
    except OSError as exc:
        raise AudioDecodeError(path, f"cannot read ({exc})") from exc


def _decode_ffmpeg(path: str | Path, sample_rate: int, max_duration_s: float | None) -> MonoStream:
    """The file mixed to mono and resampled to ``sample_rate`` Hz as it is decoded, through FFmpeg (PyAV)."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AudioDecodeError(path, "no audio stream")
            audio = container.streams.audio[0]
            native_sr = audio.codec_context.sample_rate
            _check_sample_rate(path, native_sr)
            limit = sys.maxsize if max_duration_s is None else int(max_duration_s * native_sr)
            stream = MonoStream(native_sr, sample_rate, 0 if max_duration_s is None else limit)
            _feed_planar_blocks(container.decode(audio), limit, stream)
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise AudioDecodeError(path, f"cannot decode ({exc})") from exc
    if not stream.frames:
        raise AudioDecodeError(path, "zero-length audio")
    return stream


def _feed_planar_blocks(frames: Iterable[av.AudioFrame], limit: int, stream: MonoStream) -> None:
    """Feed up to ``limit`` native frames of decoded audio to ``stream``, mixed to mono a block at a time.

    FFmpeg hands out frames of ~1 000 samples; mixing and resampling each on its own costs more than
    decoding it, so frames are gathered into blocks of :data:`DECODE_BLOCK_FRAMES` first (the same
    numbers: mixing is per sample and the resampler is streaming).
    """
    to_float = av.AudioResampler(format="fltp")  # planar float32, native layout and rate
    pending: list[np.ndarray] = []
    held = 0  # native frames in ``pending``

    def flush() -> None:
        nonlocal held
        if pending:
            stream.add(downmix(np.concatenate(pending, axis=1), planar=True)[: limit - stream.frames])
            pending.clear()
            held = 0

    for frame in frames:
        for out in to_float.resample(frame):
            pending.append(out.to_ndarray())  # (channels, samples)
            held += pending[-1].shape[1]
        if held >= DECODE_BLOCK_FRAMES or stream.frames + held >= limit:
            flush()
        if stream.frames >= limit:
            return
    flush()


def to_mono_resampled(data: np.ndarray, orig_sr: int, sample_rate: int) -> np.ndarray:
    """Mix (time, channels) or (time,) samples to mono and resample to ``sample_rate`` Hz, block by block.

    Returns:
        float32, shape (time',), time' = ceil(time * sample_rate / orig_sr); the same samples as
        ``librosa.resample(mono, res_type="soxr_hq")``.
    """
    stream = MonoStream(orig_sr, sample_rate, data.shape[0])
    for start in range(0, data.shape[0], DECODE_BLOCK_FRAMES):
        block = data[start : start + DECODE_BLOCK_FRAMES]
        mono = downmix(np.asarray(block, dtype=np.float32)) if block.ndim == 2 else block
        stream.add(np.ascontiguousarray(mono, dtype=np.float32))
    return stream.finish()


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (streamed by ``hashlib.file_digest``)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
