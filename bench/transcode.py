"""Build a test music library from real WAV tracks: copies in other formats (stereo, 44.1/48 kHz) and broken files.

    .venv/bin/python -m bench.transcode --source ../shared/data/gtzan_mini/genres --out /tmp/library

The copies exercise every decoder path of batch-score-flow; the broken files (garbage MP3, header-only
WAV, empty FLAC, non-audio file, a 0.1 s clip, corrupt M4A, broken symlink) exercise its error paths.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
import librosa
import numpy as np
import soundfile as sf
from rich.progress import track

from crnn.atomic import atomic_path, write_text_atomic

LIBSNDFILE_FORMATS = {
    ".aiff": ("AIFF", "PCM_16", 44100),
    ".au": ("AU", "PCM_16", 44100),
    ".flac": ("FLAC", "PCM_24", 44100),
    ".ogg": ("OGG", "VORBIS", 44100),
    ".opus": ("OGG", "OPUS", 48000),
    ".mp3": ("MP3", "MPEG_LAYER_III", 44100),
}
"""suffix -> (libsndfile format, subtype, sample rate in Hz)."""
ALL_FORMATS = (*LIBSNDFILE_FORMATS, ".m4a")
BROKEN_FILES = {
    "garbage.mp3": "cannot decode",
    "header-only.wav": "zero-length audio",
    "empty.flac": "zero-length file",
    "cover.jpg": "unsupported format .jpg",
    "too-short.wav": "shorter than min_segment_s",
    "corrupt.m4a": "cannot decode",
    "gone.flac": "broken symlink",
}
"""Broken file name -> part of the reason batch scoring records for it."""


def stereo(mono: np.ndarray, sample_rate: int, rate: int) -> np.ndarray:
    """(time, 2) float32 at ``rate`` Hz; the right channel is 2 dB quieter so the mix-down is exercised."""
    y = librosa.resample(mono, orig_sr=sample_rate, target_sr=rate) if rate != sample_rate else mono
    return np.stack([y, 0.8 * y], axis=1).astype(np.float32)


def write_libsndfile(path: Path, data: np.ndarray, rate: int, fmt: str, subtype: str) -> None:
    """Write (time, channels) samples in blocks: one long Ogg write can crash the bundled libsndfile."""
    with sf.SoundFile(path, "w", rate, data.shape[1], subtype, format=fmt) as f:
        for i in range(0, len(data), 4096):
            f.write(data[i : i + 4096])


def write_m4a(path: Path, data: np.ndarray, rate: int) -> None:
    """AAC in an MP4 container through PyAV (FFmpeg's native AAC encoder), from (time, 2) samples."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=rate, layout="stereo")
        for i in range(0, len(data), 1024):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(data[i : i + 1024].T), format="fltp", layout="stereo"
            )
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def write_audio(path: Path, data: np.ndarray, rate: int) -> Path:
    """Write (time, 2) samples at ``rate`` Hz atomically, in the format ``path``'s suffix names.

    ``.wav`` is 16-bit PCM, ``.m4a`` AAC (:func:`write_m4a`), any suffix of :data:`LIBSNDFILE_FORMATS`
    its format and subtype (the table's rate is not imposed). Raises ``KeyError`` for another suffix.
    """
    suffix = path.suffix.lower()
    with atomic_path(path, suffix=suffix) as tmp:  # the writers pick the container by the name's suffix
        if suffix == ".m4a":
            write_m4a(tmp, data, rate)
        elif suffix == ".wav":
            write_libsndfile(tmp, data, rate, "WAV", "PCM_16")
        else:
            fmt, subtype, _ = LIBSNDFILE_FORMATS[suffix]
            write_libsndfile(tmp, data, rate, fmt, subtype)
    return path


MIXED_FORMATS = tuple(itertools.product((".flac", ".mp3", ".ogg", ".m4a", ".wav"), (44100, 48000)))
"""(suffix, sample rate in Hz) of the tracks of :func:`mixed_library`, used in turn."""
LONG_FORMATS = ((".flac", 44100), (".ogg", 48000), (".mp3", 44100))
"""(suffix, sample rate in Hz) of its long tracks, in turn."""


def _mixed_plan(sources: list[Path], n_tracks: int, long_sources: list[int]) -> list[tuple[str, list[Path], int]]:
    """(relative name, sources to concatenate, rate) per file; copies of one source get different formats."""
    plan = []
    for i in range(n_tracks):
        src = sources[i % len(sources)]
        suffix, rate = MIXED_FORMATS[(i + 3 * (i // len(sources))) % len(MIXED_FORMATS)]
        plan.append((f"tracks/{i:04d}-{src.stem}-{rate // 1000}k{suffix}", [src], rate))
    for k, n in enumerate(long_sources):
        suffix, rate = LONG_FORMATS[k % len(LONG_FORMATS)]
        parts = [sources[(7 * k + j) % len(sources)] for j in range(n)]
        plan.append((f"long/long-{k}-{n}x-{rate // 1000}k{suffix}", parts, rate))
    return plan


def _build_one(root: Path, name: str, parts: list[Path], rate: int) -> float:
    """Write one file of the plan unless it exists; return its duration (in seconds)."""
    path = root / name
    if path.exists():
        return sum(sf.info(p).duration for p in parts)
    pieces = []
    for src in parts:
        mono, sr = sf.read(src, dtype="float32", always_2d=True)
        pieces.append(stereo(mono.mean(axis=1), sr, rate))
    data = np.concatenate(pieces)
    write_audio(path, data, rate)
    return len(data) / rate


def mixed_library(
    sources: list[Path], root: Path, n_tracks: int, long_sources: list[int], workers: int = os.cpu_count() or 1
) -> dict:
    """Build (or finish building) a library of copies of ``sources`` in mixed formats, plus long concatenations.

    Track ``i`` is source ``i % len(sources)`` in the ``i``-th entry of :data:`MIXED_FORMATS` (shifted by 3
    each pass over the sources, so the copies of one source differ); long track ``k`` concatenates
    ``long_sources[k]`` sources (:data:`LONG_FORMATS`). Every file is written atomically and an existing
    one is kept, so an interrupted build resumes; the manifest ``<root>.json`` is written last.

    Args:
        sources: mono or stereo audio files libsndfile reads (e.g. GTZAN WAVs).
        root: the library folder (created).
        n_tracks: number of single-source tracks.
        long_sources: sources per long track, one entry per long track.
        workers: threads writing files at once.

    Returns:
        The manifest: ``files`` (``path`` relative to ``root``, ``seconds``), ``tracks``, ``long_sources``.

    Raises:
        ValueError: no sources.
    """
    if not sources:
        raise ValueError("no source audio to build the library from")
    manifest_path = root.with_suffix(".json")
    wanted = {"tracks": n_tracks, "long_sources": list(long_sources)}
    if manifest_path.exists() and root.is_dir():
        manifest = json.loads(manifest_path.read_text())
        if {k: manifest.get(k) for k in wanted} == wanted:
            return manifest
    plan = _mixed_plan(sources, n_tracks, long_sources)
    with ThreadPoolExecutor(workers) as pool:
        jobs = pool.map(lambda p: _build_one(root, *p), plan)
        seconds = list(track(jobs, total=len(plan), description=f"building {root.name}"))
    manifest = wanted | {"files": [{"path": name, "seconds": round(s, 3)} for (name, _, _), s in zip(plan, seconds)]}
    write_text_atomic(manifest_path, json.dumps(manifest, indent=1))
    return manifest


def transcode(src: Path, folder: Path, formats: tuple[str, ...] = ALL_FORMATS) -> list[Path]:
    """Copies of the WAV ``src`` in ``folder``: the original plus one per suffix of ``formats``."""
    mono, sr = sf.read(src, dtype="float32")
    folder.mkdir(parents=True, exist_ok=True)
    stem = src.name.removesuffix(".wav")
    out = [folder / src.name]
    shutil.copy(src, out[0])
    for suffix in formats:
        out.append(folder / f"{stem}{suffix}")
        if suffix == ".m4a":
            write_m4a(out[-1], stereo(mono, sr, 44100), 44100)
        else:
            fmt, subtype, rate = LIBSNDFILE_FORMATS[suffix]
            write_libsndfile(out[-1], stereo(mono, sr, rate), rate, fmt, subtype)
    return out


def write_broken(folder: Path, good_wav: Path) -> None:
    """The files of :data:`BROKEN_FILES` (plus a hidden ``.DS_Store`` that scans never list)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    (folder / "garbage.mp3").write_bytes(rng.bytes(4096))
    (folder / "header-only.wav").write_bytes(good_wav.read_bytes()[:44])
    (folder / "empty.flac").write_bytes(b"")
    (folder / "cover.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    sf.write(folder / "too-short.wav", np.zeros(2205, dtype=np.float32), 22050)
    (folder / "corrupt.m4a").write_bytes(b"\x00\x00\x00\x18ftypM4A " + rng.bytes(2048))
    (folder / "gone.flac").symlink_to(folder / "deleted-since.flac")
    (folder / ".DS_Store").write_bytes(b"hidden: never listed")


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, required=True, help="folder of WAV tracks (searched recursively)")
    parser.add_argument("--out", type=Path, required=True, help="library folder to create")
    parser.add_argument("--formats", default=",".join(ALL_FORMATS), help="comma-separated suffixes to add")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    formats = tuple(s if s.startswith(".") else f".{s}" for s in args.formats.split(",") if s)
    tracks = sorted(args.source.rglob("*.wav"))
    with ThreadPoolExecutor(args.workers) as pool:
        jobs = pool.map(lambda t: transcode(t, args.out / t.parent.name, formats), tracks)
        for _ in track(jobs, total=len(tracks), description="transcoding"):
            pass
    write_broken(args.out / "incoming", tracks[0])
    files = [p for p in args.out.rglob("*") if (p.is_file() or p.is_symlink()) and not p.name.startswith(".")]
    print(
        f"{len(tracks)} tracks x {1 + len(formats)} formats + {len(BROKEN_FILES)} broken = {len(files)} files in {args.out}"
    )


if __name__ == "__main__":
    main()
