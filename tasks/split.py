"""Track-level train/val/test split."""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path

from prefect import task
from prefect.logging import get_run_logger

from crnn.config import SplitConfig
from crnn.dataset import read_manifest
from crnn.splits import assign_split


@task(name="split-tracks")
def split_tracks(manifest_csv: str, cfg: SplitConfig, out_dir: str) -> dict:
    """Assign every track to train/val/test; write ``split.csv`` (manifest columns + split); return path and counts."""
    tracks = read_manifest(Path(manifest_csv))
    method, mapping = assign_split([t.track_id for t in tracks], [t.genre for t in tracks], cfg)
    out = Path(out_dir) / f"split-{method}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".tmp")
    with os.fdopen(fd, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["track_id", "genre", "split", "path", "sha256", "duration_s"])
        for t in tracks:
            if t.track_id in mapping:
                writer.writerow([t.track_id, t.genre, mapping[t.track_id], t.path, t.sha256, f"{t.duration_s:.3f}"])
    os.replace(tmp, out)
    counts = {s: sum(1 for v in mapping.values() if v == s) for s in ("train", "val", "test")}
    get_run_logger().info("split %s: %s", method, counts)
    return {"method": method, "table": str(out), "counts": counts}
