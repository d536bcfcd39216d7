"""Decoding guards of crnn.audio on tiny synthetic files: truncated and streaming WAV headers."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from crnn.audio import AudioDecodeError, load_audio, wav_layout


def _wav(path: Path, seconds: float, sample_rate: int = 8000) -> Path:
    """A seeded noise WAV (16-bit mono)."""
    y = np.random.default_rng(0).uniform(-0.5, 0.5, int(seconds * sample_rate)).astype(np.float32)
    sf.write(path, y, sample_rate, subtype="PCM_16")
    return path


def cut_wav(path: Path, keep_fraction: float) -> Path:
    """Drop the end of a WAV's samples, leaving the header's sizes as they were (a lying header)."""
    data = path.read_bytes()
    start = data.index(b"data") + 8
    path.write_bytes(data[: start + int((len(data) - start) * keep_fraction)])
    return path


def streaming_wav(path: Path) -> Path:
    """Set a WAV's RIFF and data sizes to 0xFFFFFFFF, as a streaming encoder does."""
    data = bytearray(path.read_bytes())
    data[4:8] = struct.pack("<I", 0xFFFFFFFF)
    start = data.index(b"data")
    data[start + 4 : start + 8] = struct.pack("<I", 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    return path


def test_wav_shorter_than_its_header_is_truncated(tmp_path: Path) -> None:
    """A WAV holding 1 s of the 3 s its header promises fails as truncated (libsndfile alone reads 1 s)."""
    path = cut_wav(_wav(tmp_path / "short.wav", 3.0), 1 / 3)
    assert wav_layout(path).missing_data_bytes > 0
    with pytest.raises(AudioDecodeError, match=r"truncated: the header promises 3\.0 s, 1\.0 s decode"):
        load_audio(path, 8000)


def test_wav_missing_a_few_bytes_still_decodes(tmp_path: Path) -> None:
    """A WAV missing under 5 % of its data decodes (the same tolerance as other formats)."""
    path = cut_wav(_wav(tmp_path / "nearly.wav", 2.0), 0.99)
    assert load_audio(path, 8000).size > 0


def test_streaming_wav_header_is_not_truncation(tmp_path: Path) -> None:
    """RIFF and data sizes of 0xFFFFFFFF mean "to the end of the file": the layout says so."""
    path = streaming_wav(_wav(tmp_path / "stream.wav", 1.0))
    layout = wav_layout(path)
    assert layout.streaming and layout.missing_data_bytes == 0
    assert load_audio(path, 8000).size == 8000


def test_wav_layout_of_other_files(tmp_path: Path) -> None:
    """Files that are not RIFF/WAVE have no layout; a complete WAV misses nothing."""
    (tmp_path / "notes.wav").write_text("not a wav")
    assert wav_layout(tmp_path / "notes.wav") is None
    layout = wav_layout(_wav(tmp_path / "ok.wav", 1.0))
    assert (layout.missing_data_bytes, layout.block_align, layout.streaming) == (0, 2, False)
    assert layout.riff_bytes + 8 == layout.file_bytes
