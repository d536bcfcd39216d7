"""Cheaper inference, side by side: forward variants of one model on the same real tracks in one run.

    .venv/bin/python -m bench.inference_variants --checkpoint /path/crnn-attention.pt --tracks 8 --rounds 3
    .venv/bin/python -m bench.inference_variants --models musicnn-linear,crnn-attention   # fresh weights

Every track is decoded and cut into segments once; each round then runs every variant over all the
tracks, the variants alternating so machine load hits them alike. Printed per variant: the median
over rounds of the forward time per 30 s track (ms), its ratio to the plain fp32 forward, the share
of tracks with the same top genre as fp32 and the largest difference of a track probability.

Variants: ``fp32`` (contiguous layout, the model's batch size: the path before the fast one),
``kept`` (:func:`crnn.inference.inference_settings`: what scoring uses), ``channels-last``,
``bf16`` (autocast; emulated, and slow, on CPUs without native bfloat16), ``batch-1``,
``compile`` (``torch.compile`` of ``classify``), ``int8`` (dynamic quantization of Linear/GRU/LSTM),
``threads-N`` (the kept settings on N intra-op threads, against ``--threads`` for the others)
and ``onnxruntime`` (the classifier exported as at registration, :mod:`crnn.onnx_runtime`, run by
:func:`crnn.inference.segment_probs` with ``runtime="onnxruntime"``: what scoring and serving use
on a CPU). Equality needs trained weights (``--checkpoint``); fresh weights are fine for speed.

``--overlap-data FOLDER`` also scores a checkpoint's tracks with and without the training-time
segment overlap (accuracy by folder name = genre, agreement, forward time per track).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from crnn.audio import load_audio
from crnn.config import PipelineConfig
from crnn.features import segment_log_mel
from crnn.inference import (
    InferenceSettings,
    inference_settings,
    load_checkpoint,
    prepare_for_inference,
    segment_probs,
)
from crnn.models import GenreNet
from crnn.onnx_runtime import attach, export_classifier
from crnn.zoo import build_model

Variant = Callable[[torch.Tensor], np.ndarray]
"""Segments (n, n_mels, frames) in dB -> segment probabilities (n, n_classes)."""


def _plain(model: GenreNet, **changes) -> Variant:
    """The model in the contiguous layout, with settings changed from the plain fp32 ones."""
    plain = copy.deepcopy(model).to(memory_format=torch.contiguous_format).eval()
    settings = InferenceSettings(model.inference_batch_size, channels_last=False, bf16=False)
    settings = dataclasses.replace(settings, **changes)
    if settings.channels_last:
        plain.to(memory_format=torch.channels_last)
    return lambda segments: segment_probs(plain, segments, settings)


def _with_threads(model: GenreNet, threads: int) -> Variant:
    """The kept settings with ``threads`` intra-op threads (set for the call, then put back)."""

    def run(segments: torch.Tensor) -> np.ndarray:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return segment_probs(model, segments, inference_settings(model))
        finally:
            torch.set_num_threads(before)

    return run


def _compiled(model: GenreNet) -> Variant:
    fast = copy.deepcopy(model)
    fast.classify = torch.compile(fast.classify, dynamic=True)
    return lambda segments: segment_probs(fast, segments, inference_settings(fast))


def _int8(model: GenreNet) -> Variant:
    quantized = torch.ao.quantization.quantize_dynamic(
        copy.deepcopy(model), {nn.Linear, nn.GRU, nn.LSTM}, dtype=torch.qint8
    )
    return lambda segments: segment_probs(quantized, segments, inference_settings(model))


def _onnx(model: GenreNet, work: Path) -> Variant:
    """What a registered model scores with on a CPU: its exported classifier in ONNX Runtime (crnn.onnx_runtime)."""
    exported = copy.deepcopy(model)  # a copy: attaching must not change the other variants' model
    path = export_classifier(exported, work / f"{model.model_cfg.architecture}.onnx")
    if not attach(exported, path):
        raise RuntimeError(f"{path}: ONNX Runtime cannot load the exported classifier")
    return lambda segments: segment_probs(exported, segments, inference_settings(exported))


def variants(model: GenreNet, work: Path, names: set[str]) -> dict[str, Variant]:
    """The variants of ``model`` named in ``names`` (``fp32`` always first)."""
    builders: dict[str, Callable[[], Variant | None]] = {
        "fp32": lambda: _plain(model),
        "kept": lambda: lambda segments: segment_probs(model, segments, inference_settings(model)),
        "channels-last": lambda: _plain(model, channels_last=True),
        "bf16": lambda: _plain(model, bf16=True, channels_last=model.inference_channels_last),
        "batch-1": lambda: _plain(model, batch_size=1, channels_last=model.inference_channels_last),
        "compile": lambda: _compiled(model),
        "int8": lambda: _int8(model),
        "onnxruntime": lambda: _onnx(model, work),
    }
    for name in sorted(n for n in names if n.startswith("threads-")):
        threads = int(name.removeprefix("threads-"))
        builders[name] = lambda threads=threads: _with_threads(model, threads)
    built = {name: build() for name, build in builders.items() if name == "fp32" or name in names}
    return {name: v for name, v in built.items() if v is not None}


def track_segments(model: GenreNet, paths: list[Path]) -> list[torch.Tensor]:
    """Each track's segments (n, n_mels, frames) in dB, cut with the model's own config (training-time overlap).

    The same segments go to every variant; what dropping the overlap saves is :func:`overlap_trial`'s.
    """
    cfg = model.feature_cfg
    with torch.inference_mode():
        return [segment_log_mel(model.frontend(torch.from_numpy(load_audio(p, cfg.sample_rate))), cfg) for p in paths]


def compare(model: GenreNet, paths: list[Path], rounds: int, names: set[str], work: Path) -> None:
    """Time every variant of ``model`` on ``paths`` (alternating, ``rounds`` times) and print the table."""
    segments = track_segments(model, paths)
    runs = variants(model, work, names)
    probs = {name: np.stack([run(s).mean(axis=0) for s in segments]) for name, run in runs.items()}  # warm-up
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            for s in segments:
                run(s)
            times[name].append(1000 * (time.perf_counter() - start) / len(segments))
    base, ref = statistics.median(times["fp32"]), probs["fp32"]
    print(f"\n{model.model_cfg.architecture}: {len(paths)} tracks, {len(segments[0])} segments/track, {rounds} rounds")
    print(f"{'variant':14s} {'ms/track':>9s} {'x fp32':>7s} {'same genre':>11s} {'max |dprob|':>12s}")
    for name in runs:
        ms = statistics.median(times[name])
        same = float(np.mean(probs[name].argmax(axis=1) == ref.argmax(axis=1)))
        delta = float(np.abs(probs[name] - ref).max())
        print(f"{name:14s} {ms:9.1f} {base / ms:7.2f} {same:11.1%} {delta:12.2e}")


def overlap_trial(model: GenreNet, folder: Path, rounds: int) -> None:
    """Score every WAV under ``folder`` (genre = parent folder) with the config's overlap and without any."""
    paths = sorted(folder.rglob("*.wav"))
    labels = list(model.model_cfg.labels)
    truth = np.array([labels.index(p.parent.name) for p in paths])
    cfg = model.feature_cfg
    with torch.inference_mode():
        mels = [model.frontend(torch.from_numpy(load_audio(p, cfg.sample_rate))) for p in paths]
    settings = inference_settings(model)
    genres, times = {}, {}
    for overlap in (cfg.overlap_s, 0.0):
        cut = dataclasses.replace(cfg, overlap_s=overlap)
        segments = [segment_log_mel(m, cut) for m in mels]
        genres[overlap] = np.array([segment_probs(model, s, settings).mean(axis=0).argmax() for s in segments])
        ms = []
        for _ in range(rounds):
            start = time.perf_counter()
            for s in segments:
                segment_probs(model, s, settings)
            ms.append(1000 * (time.perf_counter() - start) / len(segments))
        times[overlap] = (statistics.median(ms), statistics.mean(len(s) for s in segments))
    print(f"\nsegment overlap, {model.model_cfg.architecture} on {folder} ({len(paths)} tracks)")
    for overlap, predicted in genres.items():
        ms, n = times[overlap]
        print(
            f"overlap {overlap:3.1f} s: accuracy {np.mean(predicted == truth):.3f}, {n:.1f} segments, {ms:.1f} ms/track"
        )
    print(f"same genre with and without overlap: {np.mean(genres[cfg.overlap_s] == genres[0.0]):.1%}")


def main(argv: list[str] | None = None) -> None:
    """Parse the options, build or load the models and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", action="append", type=Path, default=[], help="trained checkpoint (repeat)")
    parser.add_argument("--models", default="", help="comma-separated architectures, freshly initialised (seed 0)")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/gtzan_mini"), help="audio folder")
    parser.add_argument("--tracks", type=int, default=8, help="tracks, spread over the genres")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="intra-op threads")
    parser.add_argument("--variants", default="kept,channels-last,bf16,batch-1,compile,int8,onnxruntime")
    parser.add_argument("--overlap-data", type=Path, help="also compare segment overlap on this labelled folder")
    parser.add_argument("--work", type=Path, default=Path("/tmp/inference-variants"), help="exported models")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    found = sorted(args.data.rglob("*.wav"))
    paths = found[:: max(1, len(found) // args.tracks)][: args.tracks]
    torch.manual_seed(0)
    models = [load_checkpoint(p)[0] for p in args.checkpoint]
    for name in filter(None, args.models.split(",")):
        models.append(prepare_for_inference(build_model(PipelineConfig.from_options(architecture=name))))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, python {sys.version.split()[0]}")
    for model in models:
        compare(model, paths, args.rounds, set(args.variants.split(",")), args.work)
        if args.overlap_data and model.feature_cfg.overlap_s > 0:
            overlap_trial(model, args.overlap_data, args.rounds)


if __name__ == "__main__":
    main()
