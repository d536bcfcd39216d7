"""Log-mel feature extraction into the content-addressed cache."""

from __future__ import annotations

import time
from collections.abc import Sequence

import pandas as pd
from prefect import task

from crnn.config import FeatureConfig
from crnn.features import FeatureCache, extract_to_cache
from crnn.train import resolve_device
from tasks import task_logger

FEATURE_CHUNK = 25
"""Tracks per compute-log-mels task (the unit a Dask worker takes)."""


@task(name="plan-log-mels")
def plan_log_mels(split_table: str, cfg: FeatureConfig, cache_root: str, chunk_size: int = FEATURE_CHUNK) -> dict:
    """Find the tracks whose log-mel is not cached yet (one per content hash) and cut them into chunks."""
    df = pd.read_csv(split_table)
    cache = FeatureCache(cache_root, cfg)
    unique = dict(zip(df["sha256"], df["path"]))  # one computation per content hash
    todo = [(path, sha) for sha, path in unique.items() if not cache.has(sha)]
    chunks = [todo[i : i + chunk_size] for i in range(0, len(todo), chunk_size)]
    return {"cache_dir": str(cache.dir), "cached": len(unique) - len(todo), "chunks": chunks, "started": time.time()}


@task(name="compute-log-mels")
def compute_log_mels(
    items: list[tuple[str, str]], cfg: FeatureConfig, cache_root: str, backend: str = "auto", device: str = "auto"
) -> dict:
    """Cache the log-mels of one chunk of ``(path, sha256)``; ``backend="auto"``: batched torch on CUDA, librosa on CPU."""
    dev = resolve_device(device)
    backend = ("torch" if dev.type == "cuda" else "librosa") if backend == "auto" else backend
    counts = extract_to_cache([tuple(i) for i in items], FeatureCache(cache_root, cfg), backend=backend, device=dev)
    task_logger().info("log-mels: %d computed (%s backend)", counts["computed"], backend)
    return {"backend": backend, **counts}


@task(name="summarize-log-mels")
def summarize_log_mels(planned: dict, chunks: list[dict], backend: str = "auto", device: str = "auto") -> dict:
    """Totals over the chunks: cache folder, backend, seconds, tracks computed and reused."""
    computed = sum(c["computed"] for c in chunks)
    if chunks:
        backend = chunks[0]["backend"]
    elif backend == "auto":
        backend = "torch" if resolve_device(device).type == "cuda" else "librosa"
    seconds = time.time() - planned["started"]
    task_logger().info(
        "log-mels: %d computed, %d from cache (%s backend) in %.1f s", computed, planned["cached"], backend, seconds
    )
    return {
        "cache_dir": planned["cache_dir"],
        "backend": backend,
        "seconds": seconds,
        "computed": computed,
        "cached": planned["cached"],
    }


def load_split_features(
    split_table: str, cache_root: str, cfg: FeatureConfig, split: str, labels: Sequence[str]
) -> tuple[list, list[int], list[str]]:
    """Cached log-mels (each (n_mels, frames)), class indices into ``labels`` and track ids of one split."""
    df = pd.read_csv(split_table)
    df = df[df["split"] == split]
    cache = FeatureCache(cache_root, cfg)
    return [cache.load(h) for h in df["sha256"]], [labels.index(g) for g in df["genre"]], list(df["track_id"])
