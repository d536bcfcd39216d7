"""``evaluate-library``: compare a scored library with its files' own genre tags; an MLflow run and a report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from prefect import task

from crnn.labelmap import load_label_map
from crnn.library_eval import ScoredFile, evaluate_library, write_report
from infra import tracking
from scoring import tags
from scoring.store import SCORED, LibraryStore, store_path
from tasks import task_logger

REPORT_DIR = "evaluation"
"""Folder of the report under the output folder (``report.md``, ``per_label.csv``, ``confusion.csv``, ``files.csv``)."""


def _own_tag(path: str) -> str | None:
    """The file's genre tag; ``None`` when it has none or its format carries no tags (e.g. AU)."""
    try:
        return tags.read_genre(path)
    except (tags.TagError, OSError):
        return None


def scored_files(output_dir: str, scored: dict) -> tuple[list[ScoredFile], list[str]]:
    """The files ``scored`` (a batch-score-flow summary) listed, with their own tags; and the model's labels."""
    with LibraryStore(store_path(output_dir)) as store:
        rows = store.results(model_version=scored["model_version"], seen_run=scored["run_id"])
    labels = next((list(r["probs"]) for r in rows if r["status"] == SCORED), [])
    files = [
        ScoredFile(
            r["path"], _own_tag(r["path"]), np.array([r["probs"][g] for g in labels]) if r["status"] == SCORED else None
        )
        for r in rows
    ]
    return files, labels


@task(name="evaluate-library")
def evaluate_library_task(
    output_dir: str, scored: dict, label_map: str, uncertain_below: float, experiment: str
) -> dict:
    """Metrics of the model against the mapped tags, logged as an MLflow run with the report; return them, the run id and the report paths."""
    mapping = load_label_map(label_map)
    files, labels = scored_files(output_dir, scored)
    ev = evaluate_library(files, mapping, labels, uncertain_below)
    title = f"{scored['model_version']} on {', '.join(scored['library'])}"
    paths = write_report(ev, Path(output_dir) / REPORT_DIR, title, uncertain_below)
    tracking.configure_tracking()
    params = {"model_uri": scored["model_uri"], "model_version": scored["model_version"], "label_map": label_map}
    params |= {"library": ",".join(scored["library"]), "uncertain_below": uncertain_below}
    run_id = tracking.start_run(
        experiment, f"library-{scored['model_version']}", params, {"library.labels": ",".join(mapping.labels)}
    )
    try:
        tracking.log_metrics(run_id, ev.metrics())
        for path in [*paths, Path(label_map)]:
            tracking.log_artifact(run_id, path, REPORT_DIR)
    except BaseException:
        tracking.end_run(run_id, "FAILED")
        raise
    tracking.end_run(run_id)
    task_logger().info(
        "%s: accuracy %.3f over %d tracks; excluded %s",
        title,
        ev.report.accuracy,
        int(ev.report.support.sum()),
        dict(ev.excluded),
    )
    return {"run_id": run_id, "metrics": ev.metrics(), "unknown_labels": list(ev.unknown_labels),
            "excluded": dict(ev.excluded), "report": [str(p) for p in paths]}  # fmt: skip
