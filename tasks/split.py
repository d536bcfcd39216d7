"""Track-level train/val/test split."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from prefect import task

from crnn.config import SplitConfig
from crnn.dataset import is_gtzan_id, label_list, read_manifest, write_csv_atomic
from crnn.splits import SPLITS, assign_split
from tasks import task_logger

SPLIT_TABLE_COLUMNS = ("track_id", "genre", "split", "path", "sha256", "duration_s")
GROUPED_TABLE_COLUMNS = (*SPLIT_TABLE_COLUMNS, "group", "method")
"""Columns of ``split-tracks``'s table: each track's group (``""``: none) and the split method used."""


@task(name="split-tracks")
def split_tracks(manifest_csv: str, cfg: SplitConfig, out_dir: str) -> dict:
    """Assign every track to train/val/test; write ``split-<method>-<config hash>.csv``; return path, counts and labels.

    ``labels`` is the class list a model trained on this split predicts (:func:`crnn.dataset.label_list`);
    the table records each track's group and the method (e.g. ``grouped-stratified``).
    """
    tracks = read_manifest(Path(manifest_csv))
    method, mapping = assign_split(
        [t.track_id for t in tracks],
        [t.genre for t in tracks],
        cfg,
        groups=[t.group for t in tracks],
        official=[t.official_split for t in tracks],
    )
    key = hashlib.sha256(json.dumps(dataclasses.asdict(cfg), sort_keys=True).encode()).hexdigest()[:8]
    out = Path(out_dir) / f"split-{method}-{key}.csv"  # one file per split config: concurrent runs never share one
    rows = [
        (t.track_id, t.genre, mapping[t.track_id], t.path, t.sha256, f"{t.duration_s:.3f}", t.group, method)
        for t in tracks
        if t.track_id in mapping
    ]
    write_csv_atomic(out, GROUPED_TABLE_COLUMNS, rows)
    counts = {s: sum(1 for v in mapping.values() if v == s) for s in SPLITS}
    task_logger().info("split %s: %s", method, counts)
    labels = list(label_list((row[1] for row in rows), gtzan=all(is_gtzan_id(row[0]) for row in rows)))
    return {"method": method, "table": str(out), "counts": counts, "labels": labels}
