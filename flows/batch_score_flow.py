"""``batch-score-flow``: label a music library with the registered model, incrementally."""

from __future__ import annotations

import time

from prefect import flow, unmapped

from infra.registry import MODEL_NAME
from tasks.score import export_results, plan_scoring, resolve_model, score_chunk, write_genre_tags

DEFAULT_MODEL_URI = f"models:/{MODEL_NAME}@champion"
TAG_MODES = ("off", "dry-run", "write")


@flow(name="batch-score-flow", log_prints=True)
def batch_score_flow(
    library: list[str],
    output_dir: str = "scores",
    model_uri: str = DEFAULT_MODEL_URI,
    top_k: int = 3,
    uncertain_below: float = 0.5,
    timeline: bool = False,
    max_duration_s: float = 600.0,
    chunk_size: int = 32,
    tags: str = "off",
    retry_failed: bool = False,
    parquet: bool = False,
    device: str = "auto",
) -> dict:
    """Score new or changed files under ``library`` (folders or s3:// prefixes); return counts, throughput and outputs."""
    if tags not in TAG_MODES:
        raise ValueError(f"tags must be one of {TAG_MODES}, got {tags!r}")
    model = resolve_model(model_uri, output_dir)
    planned = plan_scoring(library, output_dir, model, chunk_size, retry_failed)
    start = time.perf_counter()
    chunks = score_chunk.map(
        planned["chunks"],
        model=unmapped(model),
        output_dir=unmapped(output_dir),
        run_id=unmapped(planned["run_id"]),
        top_k=unmapped(top_k),
        uncertain_below=unmapped(uncertain_below),
        timeline=unmapped(timeline),
        max_duration_s=unmapped(max_duration_s or None),
        device=unmapped(device),
    )
    counts = chunks.result()
    scoring_s = time.perf_counter() - start
    if tags != "off":
        write_genre_tags(output_dir, model, tags)
    return export_results(output_dir, model, planned, counts, library, scoring_s, parquet)
