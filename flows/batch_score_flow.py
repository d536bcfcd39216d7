"""``batch-score-flow``: label a music library with the registered model, incrementally."""

from __future__ import annotations

from typing import Literal

from prefect import flow, unmapped

from crnn.config import UNCERTAIN_BELOW
from flows.runners import task_runner
from infra.registry import MODEL_NAME
from scoring.results import DEFAULT_FORMATS
from tasks.score import export_results, plan_scoring, resolve_model, score_chunk, write_genre_tags

DEFAULT_MODEL_URI = f"models:/{MODEL_NAME}@champion"
RESULT_FORMATS = list(DEFAULT_FORMATS)
"""Results tables written by default (names of ``scoring.results.FORMATS``)."""
CHUNK_WORKERS = 2
"""score-chunk tasks that run at once in one process (each decodes in its own thread; torch uses the cores)."""


@flow(name="batch-score-flow", log_prints=True, task_runner=task_runner(CHUNK_WORKERS))
def batch_score_flow(
    library: list[str],
    output_dir: str = "scores",
    model_uri: str = DEFAULT_MODEL_URI,
    top_k: int = 3,
    uncertain_below: float = UNCERTAIN_BELOW,
    timeline: bool = False,
    max_duration_s: float = 600.0,
    chunk_size: int = 32,
    tags: Literal["off", "dry-run", "write"] = "off",
    retry_failed: bool = False,
    rescore: bool = False,
    formats: list[str] = RESULT_FORMATS,
    results_uri: str = "",
    device: str = "auto",
) -> dict:
    """Score new or changed files under ``library`` (folders or s3:// prefixes); return counts, throughput and outputs."""
    options = {
        "top_k": top_k,
        "uncertain_below": uncertain_below,
        "timeline": timeline,
        "max_duration_s": max_duration_s,
    }
    model = resolve_model(model_uri, output_dir)
    planned = plan_scoring(library, output_dir, model, options, chunk_size, retry_failed, rescore, formats)
    chunks = score_chunk.map(
        planned["chunks"],
        model=unmapped(model),
        output_dir=unmapped(output_dir),
        run_id=unmapped(planned["run_id"]),
        options=unmapped(options),
        device=unmapped(device),
    )
    if tags != "off":
        write_genre_tags(output_dir, model, planned["run_id"], tags, library, wait_for=[chunks])
    return export_results(output_dir, model, planned, chunks, library, formats, results_uri, wait_for=[chunks])
