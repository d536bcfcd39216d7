"""Scoring speed of zoo architectures, measured side by side on the same tracks in one run.

    .venv/bin/python -m bench.model_speed --models musicnn-linear,crnn-attention --tracks 20 --rounds 3

Each round decodes and scores every track once per model (``crnn.inference.predict_file``: decode,
resample, log-mel, segments, forward), alternating the models so that machine load hits them
alike; it prints each model's median tracks/s over the rounds and the ratio to the first model.
Speed does not depend on the weights, so the models are freshly initialised (no conversion needed).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from crnn.config import ARCHITECTURES, PipelineConfig
from crnn.inference import predict_file
from crnn.zoo import build_model


def main(argv: list[str] | None = None) -> None:
    """Time the models and print tracks/s and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(ARCHITECTURES[:3]), help="comma-separated architectures")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/gtzan_mini/genres"), help="audio folder")
    parser.add_argument("--tracks", type=int, default=20, help="tracks per round (30 s each in GTZAN)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    found = sorted(args.data.rglob("*.wav"))
    paths = found[:: max(1, len(found) // args.tracks)][: args.tracks]  # spread over the genres
    names = args.models.split(",")
    models = {name: build_model(PipelineConfig.from_options(architecture=name)).eval() for name in names}
    for model in models.values():
        predict_file(model, paths[0])  # warm-up: first-call allocations and kernel selection
    speeds: dict[str, list[float]] = {name: [] for name in names}
    with torch.inference_mode():
        for _ in range(args.rounds):
            for name, model in models.items():
                start = time.perf_counter()
                for path in paths:
                    predict_file(model, path)
                speeds[name].append(len(paths) / (time.perf_counter() - start))
    print(f"{len(paths)} tracks x {args.rounds} rounds, torch {torch.__version__}, {torch.get_num_threads()} threads")
    first = statistics.median(speeds[names[0]])
    for name in names:
        median = statistics.median(speeds[name])
        print(f"{name:22s} {median:6.2f} tracks/s   {median / first:5.2f} x {names[0]}")


if __name__ == "__main__":
    main()
