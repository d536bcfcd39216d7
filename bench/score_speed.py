"""Scoring throughput: decoding one file at a time vs decoding the next file while the model scores this one.

    .venv/bin/python -m bench.score_speed --library /tmp/library --checkpoint scores/models/genre-crnn-v1/artifacts/best.pt

Both modes score the same files with the same model in one process, one after the other, after a
warm-up; the script prints tracks per second for each and their ratio. Nothing is written.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from crnn.audio import AUDIO_EXTENSIONS, AudioDecodeError
from crnn.inference import load_checkpoint
from crnn.scoring import decode_for, prefetch, score_waveform


def _files(library: Path, limit: int) -> list[Path]:
    files = sorted(p for p in library.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
    return files[:limit]


def _decode(model, path: Path):
    try:
        return decode_for(model, path, 600.0)
    except AudioDecodeError:
        return None


def sequential(model, files: list[Path]) -> int:
    """Decode, then score, file by file; returns the number scored."""
    n = 0
    for path in files:
        decoded = _decode(model, path)
        if decoded is not None and decoded[0].size >= model.feature_cfg.sample_rate:
            score_waveform(model, *decoded)
            n += 1
    return n


def overlapped(model, files: list[Path], depth: int = 2) -> int:
    """Decode in a background thread, ``depth`` files ahead (what score-chunk does); returns the number scored."""
    n = 0
    for _, decoded in prefetch(lambda p: _decode(model, p), files, depth):
        if decoded is not None and decoded[0].size >= model.feature_cfg.sample_rate:
            score_waveform(model, *decoded)
            n += 1
    return n


def main() -> None:
    """Command line entry point: print both throughputs and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--library", type=Path, required=True, help="folder of audio files")
    parser.add_argument("--checkpoint", type=Path, required=True, help="a genre-crnn checkpoint (.pt)")
    parser.add_argument("--limit", type=int, default=140, help="files to score per mode")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    model, _ = load_checkpoint(args.checkpoint, args.device)
    files = _files(args.library, args.limit)
    sequential(model, files[:5])  # warm-up: first-call allocations, resampler tables
    timings = {}
    for name, run in (("sequential", sequential), ("overlapped", overlapped)):
        start = time.perf_counter()
        n = run(model, files)
        timings[name] = n / (time.perf_counter() - start)
        print(f"{name:>10}: {n} tracks, {timings[name]:.2f} tracks/s")
    print(
        f"overlapped / sequential: {timings['overlapped'] / timings['sequential']:.2f}x "
        f"({torch.get_num_threads()} torch threads, device {args.device}, {len(files)} files from {args.library})"
    )


if __name__ == "__main__":
    main()
