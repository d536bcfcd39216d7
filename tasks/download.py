"""Dataset download and manifest."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from prefect import task

from crnn.dataset import build_manifest, read_manifest, write_manifest
from infra.redact import reveal
from infra.sources import fetch_dataset
from tasks import task_logger


def _fingerprint(root: Path) -> str:
    """Hash of every file's relative path, size and mtime under ``root`` (cheap change detector)."""
    entries = sorted(
        (str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()
    )
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()


@task(name="download-dataset", retries=2, retry_delay_seconds=10)
def download_dataset(source: str, work_dir: str, sha256: str = "") -> dict:
    """Fetch ``source`` (checked against ``sha256`` when given) and write its manifest; return the CSV paths and counts.

    A redacted ``source`` (credentials as ``***``) is fetched from its full form in the environment.
    """
    logger = task_logger()
    root = fetch_dataset(reveal(source), Path(work_dir), sha256=sha256)
    out_dir = Path(work_dir) / "manifests" / hashlib.sha256(str(root).encode()).hexdigest()[:12]
    manifest, exclusions, stamp = out_dir / "manifest.csv", out_dir / "exclusions.csv", out_dir / "fingerprint"
    fingerprint = _fingerprint(root)
    if manifest.exists() and stamp.exists() and stamp.read_text() == fingerprint:
        logger.info("manifest of %s unchanged, reusing %s", root, manifest)
    else:

        def progress(done: int, total: int) -> None:
            if done % 100 == 0 or done == total:
                logger.info("manifest: %d/%d files decoded and hashed", done, total)

        tracks, excluded = build_manifest(root, on_progress=progress)
        for e in excluded:
            logger.warning("excluded %s: %s", e.path, e.reason)
        write_manifest(tracks, excluded, manifest, exclusions)
        stamp.write_text(fingerprint)
    n_tracks = len(read_manifest(manifest))
    n_excluded = sum(1 for _ in exclusions.open()) - 1
    logger.info("%d tracks, %d exclusions from %s", n_tracks, n_excluded, root)
    return {
        "root": str(root),
        "manifest": str(manifest),
        "exclusions": str(exclusions),
        "n_tracks": n_tracks,
        "n_excluded": n_excluded,
    }
