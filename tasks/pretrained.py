"""Pretrained weights a zoo architecture starts from (musicnn), converted once per cache."""

from __future__ import annotations

from prefect import task

from crnn.config import PipelineConfig
from crnn.zoo import pretrained_checkpoint
from infra import pretrained
from tasks import task_logger


@task(name="prepare-pretrained-weights")
def prepare_pretrained(cfg: PipelineConfig, work_dir: str) -> str | None:
    """Convert (first time only) and return the path of the architecture's pretrained weights; None if it has none."""
    checkpoint = pretrained_checkpoint(cfg)
    if checkpoint is None:
        return None
    path = pretrained.ensure_musicnn_weights(checkpoint, pretrained.cache_dir(work_dir))
    task_logger().info("pretrained %s weights: %s", checkpoint, path)
    return str(path)
