"""Helpers for tagged-library tests: short audio files in MP3/FLAC/M4A/WAV with genre and artist tags."""

from __future__ import annotations

from pathlib import Path

import av
import mutagen
import numpy as np
import soundfile as sf
from mutagen.id3 import TCON, TPE1

SAMPLE_RATE = 22050
LIBSNDFILE = {".mp3": ("MP3", "MPEG_LAYER_III"), ".flac": ("FLAC", "PCM_16"), ".wav": ("WAV", "PCM_16")}


def tone(freq_hz: float, seconds: float, seed: int = 0) -> np.ndarray:
    """A seeded tone plus a little noise, float32 in [-0.4, 0.4], mono at :data:`SAMPLE_RATE`."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    noise = 0.01 * np.random.default_rng(seed).standard_normal(t.size)
    return (0.3 * np.sin(2 * np.pi * freq_hz * t) + noise).astype(np.float32)


def write_samples(path: Path, y: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Path:
    """Write mono float32 samples in the format of ``path``'s suffix (M4A: AAC through PyAV)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".m4a":
        with av.open(str(path), "w") as out:
            stream = out.add_stream("aac", rate=sample_rate, layout="mono")
            for i in range(0, len(y), 1024):
                frame = av.AudioFrame.from_ndarray(y[None, i : i + 1024].copy(), format="fltp", layout="mono")
                frame.sample_rate = sample_rate
                for packet in stream.encode(frame):
                    out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)
        return path
    fmt, subtype = LIBSNDFILE[path.suffix]
    with sf.SoundFile(path, "w", sample_rate, 1, format=fmt, subtype=subtype) as f:
        for i in range(0, len(y), 4096):
            f.write(y[i : i + 4096])
    return path


def set_tags(path: Path, *, genre: str | None = None, artist: str | None = None) -> Path:
    """Give ``path`` a genre and/or artist tag (ID3 ``TCON``/``TPE1``, Vorbis, MP4 ``©gen``/``©ART``)."""
    f = mutagen.File(path)
    if f.tags is None:
        f.add_tags()
    if path.suffix in (".mp3", ".wav"):
        if genre:
            f.tags.add(TCON(encoding=3, text=[genre]))
        if artist:
            f.tags.add(TPE1(encoding=3, text=[artist]))
    elif path.suffix == ".m4a":
        f.tags.update({k: [v] for k, v in (("\xa9gen", genre), ("\xa9ART", artist)) if v})
    else:
        f.tags.update({k: [v] for k, v in (("genre", genre), ("artist", artist)) if v})
    f.save()
    return path


def song(
    path: Path, *, genre: str | None = None, artist: str | None = None, freq_hz: float = 440.0, seconds: float = 1.3
) -> Path:
    """A tagged tone of ``seconds`` at ``path`` (format from the suffix); untagged when both tags are ``None``."""
    write_samples(path, tone(freq_hz, seconds, seed=int(freq_hz)))
    return set_tags(path, genre=genre, artist=artist) if genre or artist else path
