"""Batch scoring tasks: :mod:`scoring.engine` steps, the library report, and each scoring run's MLflow run.

Thin Prefect wrappers: plan, score chunks, tag, export; then the report (``scoring.report`` +
``tasks.plots``) and the MLflow run in experiment ``genre-crnn-scoring`` (``infra.tracking``).
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from crnn.config import check_scoring_options
from crnn.requests import SCORING_EXPERIMENT
from infra import registry, tracking
from infra.redact import redact, reveal
from infra.storage import write_text_atomic
from scoring import engine, report, results
from scoring.store import LibraryStore, store_path
from tasks import task_logger
from tasks.tracking import announce_run, prefect_tags

__all__ = [
    "check_options",
    "end_failed_scoring_run",
    "export_results",
    "log_scoring_run",
    "plan_scoring",
    "report_library",
    "resolve_model",
    "score_chunk",
    "start_scoring_run",
    "store_path",
    "write_genre_tags",
]


@task(name="resolve-model", retries=2, retry_delay_seconds=5)
def resolve_model(model_uri: str, output_dir: str) -> dict:
    """Resolve the model URI to a registry version and download its checkpoint into ``<output>/models``."""
    tracking.configure_tracking()
    model = registry.resolve_model(model_uri, Path(output_dir) / "models")
    if model["labels"] is None:  # a model saved without our signature: ask its checkpoint (imports torch)
        from crnn.inference import checkpoint_labels

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
    from scoring.prepare import loaded_model  # torch: imported by the runs that score a file, not by every run

    started = time.time()
    net = loaded_model(model["checkpoint"], device, model.get("onnx"))
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
    """Write this run's results and the library's current labels in ``formats`` (copies on S3); return the run summary.

    The summary's ``run_tables`` are the local files of this run's results (what its MLflow run uploads).
    """
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
    run_dir = Path(output_dir) / "runs" / planned["run_id"]
    summary["run_tables"] = [str(p) for p in outputs if isinstance(p, Path) and p.parent == run_dir]
    summary["uncertain"] = sum(bool(r["uncertain"]) for r in run_rows if r["status"] == "scored")
    task_logger().info(
        "scored %d, unchanged %d, failed %d, errors %d (retried next run)",
        *summary["counts"].values(),
        summary["errors"],
    )
    return summary


@task(name="start-scoring-run")
def start_scoring_run(request: dict, model: dict) -> dict:
    """Open this scoring run's MLflow run (params ``score.<field>``: the request, redacted; tags: model, flow run).

    Returns ``mlflow_run_id`` (``""`` when MLflow failed: a warning, and the scoring goes on) and
    ``started`` (epoch s). A run the flow does not finish is closed FAILED by :func:`end_failed_scoring_run`.
    """
    started, logger = time.time(), task_logger()
    tags = {"model.uri": model["uri"], "model.resolved": model["version"]}
    tags |= prefect_tags()
    flow_run_id = flow_run.get_id()
    try:
        tracking.configure_tracking()
        tags |= tracking.registered_model_tags(model["version"])
        # prefixed: `mlflow run -e score` logs its own -P values (e.g. `.5`) under the bare names, immutably
        params = {f"score.{k}": ",".join(v) if isinstance(v, list) else v for k, v in request.items()}
        name = f"score-{model['version'].replace('/', '-v')}-{(flow_run_id or uuid.uuid4().hex)[:8]}"
        run_id = tracking.start_run(SCORING_EXPERIMENT, name, params, tags)
    except Exception as exc:  # noqa: BLE001 - tracking never stops a scoring run
        logger.warning("MLflow run not started (%s: %s); scoring goes on without it", type(exc).__name__, exc)
        return {"mlflow_run_id": "", "started": started}
    announce_run(run_id, "mlflow-run-scoring", f"batch scoring with {model['version']}")
    return {"mlflow_run_id": run_id, "started": started}


@task(name="report-library")
def report_library(output_dir: str, model: dict, summary: dict, tracked: dict, uncertain_below: float) -> dict:
    """Rewrite the library report and its plots in ``output_dir`` from the whole state store; publish both artifacts.

    Prefect artifacts ``library-report`` (the report) and ``batch-score-summary`` (this run, with the
    library's totals). Returns the report's ``paths`` and the library's ``metrics``.
    """
    out, run_id = Path(output_dir), summary["run_id"]
    with LibraryStore(store_path(out)) as store:
        if tracked["mlflow_run_id"]:
            store.set_mlflow_run(run_id, tracked["mlflow_run_id"])
        library_rows = store.results(model_version=model["version"], seen_run=run_id)
        run_rows = store.results(run_id=run_id)
    stats = report.library_stats(library_rows)
    figures = _library_figures(stats, model, out, uncertain_below) if stats.files else {}
    run = {
        "run_id": run_id,
        "model_version": model["version"],
        "counts": summary["counts"],
        "mlflow_run_id": tracked["mlflow_run_id"],
        "updated": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    text = report.library_markdown(stats, run, plots={k: p.name for k, p in figures.items()})
    path = write_text_atomic(out / report.REPORT_NAME, text)
    create_markdown_artifact(text, key="library-report", description=f"Library report: {redact(str(path))}")
    create_markdown_artifact(results.summary_markdown(summary, run_rows, library=stats), key="batch-score-summary")
    task_logger().info("library report: %s (%s)", path, report.headline(summary["counts"]))
    return {"paths": [str(path), *map(str, figures.values())], "metrics": stats.metrics()}


def _library_figures(stats: report.LibraryStats, model: dict, out: Path, uncertain_below: float) -> dict[str, Path]:
    """The report's genre and confidence plots (matplotlib: imported only for a library that has files)."""
    from tasks import plots

    title = f"{model['version']}, {stats.scored} scored of {stats.files} files"
    return {
        "Genres": plots.genre_distribution_png(
            stats.genre_counts(model["labels"]), out / report.GENRES_PNG, f"Genres of the library ({title})"
        ),
        "Confidence": plots.confidence_histogram_png(
            stats.probabilities, uncertain_below, out / report.CONFIDENCE_PNG, f"Confidence ({title})"
        ),
    }


@task(name="log-scoring-run")
def log_scoring_run(tracked: dict, output_dir: str, summary: dict, library: dict) -> dict:
    """Log counts, throughput, the run's results tables and the library report to the MLflow run, and close it.

    Called after the results and the store are written: an MLflow failure is a warning and the run is
    marked FAILED, the batch is kept. Returns ``summary`` plus ``mlflow_run_id`` and ``mlflow_status``.
    """
    run_id, logger = tracked["mlflow_run_id"], task_logger()
    if not run_id:
        return summary | {"mlflow_run_id": "", "mlflow_status": "NOT_STARTED"}
    counts = summary["counts"]
    metrics = {f"batch/{k}": v for k, v in counts.items()} | {
        "batch/uncertain": summary["uncertain"],
        "batch/errors": summary["errors"],
        "batch/tracks_per_s": summary["tracks_per_s"],
        "batch/scoring_s": summary["scoring_s"],
        "batch/wall_s": time.time() - tracked["started"],
    }
    status = "FINISHED"
    try:
        tracking.log_metrics(run_id, metrics | library["metrics"])
        tracking.log_artifacts(run_id, summary["run_tables"], "results")
        tracking.log_artifacts(run_id, library["paths"], "library")
    except Exception as exc:  # noqa: BLE001 - results and store are already written
        status = "FAILED"
        logger.warning("MLflow logging failed (%s: %s); results are in %s", type(exc).__name__, exc, output_dir)
    try:
        tracking.end_run(run_id, status)
    except Exception as exc:  # noqa: BLE001
        logger.warning("MLflow run %s not closed (%s: %s)", run_id, type(exc).__name__, exc)
    return summary | {"mlflow_run_id": run_id, "mlflow_status": status}


def end_failed_scoring_run(flow: object, run: object, state: object) -> None:
    """Flow hook (failed or crashed): close the MLflow run of the Prefect flow run ``run`` FAILED (at most a warning)."""
    try:
        tracking.configure_tracking()
        tracking.end_flow_run_runs(SCORING_EXPERIMENT, str(run.id), "FAILED")
    except Exception as exc:  # noqa: BLE001 - the flow's own error is what matters
        task_logger().warning("MLflow run of flow run %s not closed: %s", run.id, exc)
