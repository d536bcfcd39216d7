"""``batch-score-flow``: label a music library with the registered model, incrementally."""

from __future__ import annotations

from prefect import flow, unmapped

from crnn.requests import ScoreRequest
from flows.parameters import Deployed
from flows.runners import task_runner
from tasks.score import (
    end_failed_scoring_run,
    export_results,
    log_scoring_run,
    plan_scoring,
    report_library,
    resolve_model,
    score_chunk,
    start_scoring_run,
    write_genre_tags,
)

CHUNK_WORKERS = 2
"""score-chunk tasks that run at once in one process (each decodes in its own thread; torch uses the cores)."""


@flow(
    name="batch-score-flow",
    log_prints=True,
    task_runner=task_runner(CHUNK_WORKERS),
    on_failure=[end_failed_scoring_run],
    on_crashed=[end_failed_scoring_run],
)
def batch_score_flow(request: Deployed[ScoreRequest]) -> dict:
    """Score new or changed files under ``request.library`` (folders or s3:// prefixes), as one MLflow run.

    Results and the state store are written first, then the library report, then the MLflow run's
    metrics and artifacts. Returns counts, throughput, outputs and the MLflow run id and status.
    """
    library, output_dir, options = request.library, request.output_dir, request.scoring_options()
    model = resolve_model(request.model_uri, output_dir)
    tracked = start_scoring_run(request.model_dump(), model)
    planned = plan_scoring(
        library, output_dir, model, options, request.chunk_size, request.retry_failed, request.rescore, request.formats
    )
    chunks = score_chunk.map(
        planned["chunks"],
        model=unmapped(model),
        output_dir=unmapped(output_dir),
        run_id=unmapped(planned["run_id"]),
        options=unmapped(options),
        device=unmapped(request.device),
    )
    if request.tags != "off":
        write_genre_tags(output_dir, model, planned["run_id"], request.tags, library, wait_for=[chunks])
    summary = export_results(
        output_dir, model, planned, chunks, library, request.formats, request.results_uri, wait_for=[chunks]
    )
    report = report_library(output_dir, model, summary, tracked, request.uncertain_below)
    return log_scoring_run(tracked, output_dir, summary, report)
