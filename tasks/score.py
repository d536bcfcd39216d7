"""Batch scoring tasks: thin Prefect wrappers around :mod:`scoring.engine` (plan, score chunks, tag, export)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from crnn.config import check_scoring_options
from crnn.inference import checkpoint_labels
from infra import registry, tracking
from infra.redact import redact, reveal
from scoring import engine, results
from scoring.prepare import loaded_model
from scoring.store import LibraryStore, store_path
from tasks import task_logger

__all__ = [
    "check_options",
    "export_results",
    "plan_scoring",
    "resolve_model",
    "score_chunk",
    "store_path",
    "write_genre_tags",
]


@task(name="resolve-model", retries=2, retry_delay_seconds=5)
def resolve_model(model_uri: str, output_dir: str) -> dict:
    """Resolve the model URI to a registry version and download its checkpoint into ``<output>/models``."""
    tracking.configure_tracking()
    model = registry.resolve_model(model_uri, Path(output_dir) / "models")
    model["labels"] = list(checkpoint_labels(model["checkpoint"]))  # the result columns
    task_logger().info("%s resolved to %s", model_uri, model["version"])
    return model


@task(name="plan-scoring")
def plan_scoring(
    library: list[str],
    output_dir: str,
    model: dict,
    options: dict,
    chunk_size: int,
    retry_failed: bool,
    rescore: bool,
    formats: list[str] | None = None,
) -> dict:
    """Check the options, list the library, drop files unchanged since this model version scored them, chunk the rest."""
    check_options(**options)
    # an unknown results format fails here, before any file is scored
    results.parse_formats(results.DEFAULT_FORMATS if formats is None else formats)
    roots = [reveal(r) for r in library]
    run_id = str(flow_run.get_id() or uuid.uuid4())
    planned = engine.plan_run(
        roots,
        output_dir,
        model,
        run_id,
        chunk_size=chunk_size,
        retry_failed=retry_failed,
        rescore=rescore,
        shown_roots=[redact(r) for r in roots],
    )
    task_logger().info(
        "%d files: %d unchanged since scored by %s, %d to check in %d chunks",
        planned["files"],
        planned["unchanged"],
        model["version"],
        planned["todo"],
        len(planned["chunks"]),
    )
    return planned


def check_options(top_k: int, uncertain_below: float, timeline: bool, max_duration_s: float | None) -> None:
    """Raise ``ValueError`` for options no file could be scored with (before any file is touched)."""
    check_scoring_options(top_k, uncertain_below, max_duration_s)


@task(name="score-chunk")
def score_chunk(
    files: list[dict],
    model: dict,
    output_dir: str,
    run_id: str,
    options: dict,
    device: str = "auto",
) -> dict:
    """Score one chunk of files, each row committed at once; return counts plus ``started``/``finished`` (epoch s).

    A file that cannot be scored is recorded with its reason; an unexpected error (I/O, out of memory)
    is logged and not recorded, so the next run tries that file again.
    """
    started = time.time()
    net = loaded_model(model["checkpoint"], device)
    with LibraryStore(store_path(output_dir)) as store:
        counts = engine.score_files(
            files, net, store, model, run_id, options, Path(output_dir) / "s3-cache", task_logger()
        )
    return dict(counts) | {"started": started, "finished": time.time()}


@task(name="write-genre-tags")
def write_genre_tags(output_dir: str, model: dict, run_id: str, mode: str, library: list[str]) -> dict:
    """Write (or, in ``dry-run`` mode, report) the genre tag of every confidently scored local file of this run's library."""
    logger = task_logger()
    with LibraryStore(store_path(output_dir)) as store:
        counts = engine.tag_files(store, model["version"], run_id, mode, [reveal(r) for r in library], logger)
    logger.info("genre tags (%s): %s", mode, dict(counts))
    return dict(counts)


@task(name="export-results")
def export_results(
    output_dir: str,
    model: dict,
    planned: dict,
    counts: list[dict],
    library: list[str],
    formats: list[str],
    results_uri: str = "",
) -> dict:
    """Write this run's results and the library's current labels in ``formats`` (copies on S3), and a summary artifact."""
    summary, run_rows, outputs = engine.export_run(output_dir, model, planned, counts, formats=formats)
    if results_uri:
        outputs += results.publish(outputs, Path(output_dir), reveal(results_uri))
    summary = {
        "run_id": planned["run_id"],
        "library": [redact(r) for r in library],
        "model_uri": model["uri"],
        "model_version": model["version"],
        "files": planned["files"],
    } | summary
    summary["outputs"] = [redact(str(p)) for p in outputs]
    create_markdown_artifact(results.summary_markdown(summary, run_rows), key="batch-score-summary")
    task_logger().info(
        "scored %d, unchanged %d, failed %d, errors %d (retried next run)",
        *summary["counts"].values(),
        summary["errors"],
    )
    return summary
