"""Dataset download and manifest."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from prefect import task

from crnn.dataset import read_manifest, write_manifest
from crnn.layouts import build_layout_manifest
from crnn.requests import MIN_TRACKS_PER_LABEL
from infra.redact import reveal
from infra.sources import fetch_dataset
from tasks import task_logger


def _fingerprint(root: Path) -> str:
    """Hash of every file's relative path, size and mtime under ``root`` (cheap change detector)."""
    entries = sorted(
        (str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()
    )
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()


def _label_map_text(label_map: str) -> str:
    """The label map's contents (part of the manifest's fingerprint), ``""`` without one."""
    return (
        Path(label_map).read_text(encoding="utf-8", errors="replace") if label_map and Path(label_map).is_file() else ""
    )


@task(name="download-dataset", retries=2, retry_delay_seconds=10)
def download_dataset(
    source: str,
    work_dir: str,
    sha256: str = "",
    source_layout: str = "auto",
    label_map: str = "",
    min_tracks_per_label: int = MIN_TRACKS_PER_LABEL,
) -> dict:
    """Fetch ``source`` (checked against ``sha256`` when given) and write its manifest; return the CSV paths, layout and counts.

    A redacted ``source`` (credentials as ``***``) is fetched from its full form in the environment.
    The manifest is rebuilt when a file, the layout, the label map or the minimum changes.
    """
    logger = task_logger()
    root = fetch_dataset(reveal(source), Path(work_dir), sha256=sha256)
    options = json.dumps([source_layout, _label_map_text(label_map), min_tracks_per_label])
    out_dir = Path(work_dir) / "manifests" / hashlib.sha256(f"{root}\0{options}".encode()).hexdigest()[:12]
    manifest, exclusions, stamp = out_dir / "manifest.csv", out_dir / "exclusions.csv", out_dir / "fingerprint"
    fingerprint = _fingerprint(root)
    if manifest.exists() and stamp.exists() and stamp.read_text() == fingerprint:
        logger.info("manifest of %s unchanged, reusing %s", root, manifest)
    else:

        def progress(done: int, total: int) -> None:
            if done % 100 == 0 or done == total:
                logger.info("manifest: %d/%d files decoded and hashed", done, total)

        _, tracks, excluded = build_layout_manifest(
            root,
            layout=source_layout,
            label_map=label_map or None,
            min_tracks=min_tracks_per_label,
            on_progress=progress,
        )
        for e in excluded:
            logger.warning("excluded %s: %s", e.path, e.reason)
        write_manifest(tracks, excluded, manifest, exclusions)
        stamp.write_text(fingerprint)
    n_tracks = len(read_manifest(manifest))
    n_excluded = sum(1 for _ in exclusions.open()) - 1
    logger.info("%d tracks, %d exclusions from %s (layout %s)", n_tracks, n_excluded, root, source_layout)
    return {
        "root": str(root),
        "manifest": str(manifest),
        "exclusions": str(exclusions),
        "n_tracks": n_tracks,
        "n_excluded": n_excluded,
    }
