"""``download-flow``: fetch a dataset source and write its manifest (no training)."""

from __future__ import annotations

from prefect import flow

from crnn.requests import MIN_TRACKS_PER_LABEL
from infra.sources import GTZAN_URL
from tasks.download import download_dataset


@flow(name="download-flow")
def download_flow(
    source: str = GTZAN_URL,
    work_dir: str = "work",
    sha256: str = "",
    source_layout: str = "auto",
    label_map: str = "",
    min_tracks_per_label: int = MIN_TRACKS_PER_LABEL,
) -> dict:
    """Return the dataset folder, manifest and exclusion CSV paths and counts (``sha256``: the archive's digest)."""
    return download_dataset(source, work_dir, sha256, source_layout, label_map, min_tracks_per_label)
