"""Log-mel feature extraction into the content-addressed cache."""

from __future__ import annotations

import time

import pandas as pd
from prefect import task
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from crnn.config import FeatureConfig
from crnn.features import FeatureCache, extract_to_cache
from crnn.train import resolve_device
from tasks import task_logger


@task(name="compute-log-mels")
def compute_log_mels(
    split_table: str, cfg: FeatureConfig, cache_root: str, backend: str = "auto", device: str = "auto"
) -> dict:
    """Cache the log-mel of every track in the split table; return the cache folder and hit counts.

    ``backend="auto"`` uses the batched torch path on CUDA and librosa on CPU.
    """
    logger = task_logger()
    dev = resolve_device(device)
    backend = ("torch" if dev.type == "cuda" else "librosa") if backend == "auto" else backend
    df = pd.read_csv(split_table)
    cache = FeatureCache(cache_root, cfg)
    start = time.perf_counter()
    artifact = create_progress_artifact(0.0, description="compute-log-mels: tracks done")

    def progress(done: int, total: int) -> None:
        if done % 25 == 0 or done == total:
            update_progress_artifact(artifact, 100.0 * done / total)
            logger.info("log-mels %d/%d (%.0f s)", done, total, time.perf_counter() - start)

    counts = extract_to_cache(
        list(zip(df["path"], df["sha256"])), cache, backend=backend, device=dev, on_progress=progress
    )
    seconds = time.perf_counter() - start
    logger.info(
        "log-mels: %d computed, %d from cache (%s backend) in %.1f s",
        counts["computed"],
        counts["cached"],
        backend,
        seconds,
    )
    return {"cache_dir": str(cache.dir), "backend": backend, "seconds": seconds, **counts}


def load_split_features(
    split_table: str, cache_root: str, cfg: FeatureConfig, split: str
) -> tuple[list, list[int], list[str]]:
    """Cached log-mels (each (n_mels, frames)), genre labels and track ids of one split."""
    from crnn import GENRES

    df = pd.read_csv(split_table)
    df = df[df["split"] == split]
    cache = FeatureCache(cache_root, cfg)
    return [cache.load(h) for h in df["sha256"]], [GENRES.index(g) for g in df["genre"]], list(df["track_id"])
