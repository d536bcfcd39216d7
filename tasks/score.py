"""Batch scoring tasks: resolve the model, plan the run from the state store, score chunks, tag, export."""

from __future__ import annotations

import functools
import uuid
from collections import Counter
from dataclasses import asdict, fields
from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from crnn import GENRES
from crnn.audio import AudioDecodeError, file_sha256
from crnn.inference import load_checkpoint
from crnn.models import CRNN
from crnn.scoring import TrackPrediction, decode_for, prefetch, score_waveform
from crnn.train import resolve_device
from infra import registry, results, tags, tracking
from infra.library import LibraryFile, local_copy, scan_library, unsupported_reason
from infra.library_store import FAILED, SCORED, STORE_NAME, LibraryStore, plan
from tasks import task_logger

_FILE_FIELDS = tuple(f.name for f in fields(LibraryFile))


def store_path(output_dir: str) -> Path:
    """The state store of ``output_dir``."""
    return Path(output_dir) / STORE_NAME


@task(name="resolve-model", retries=2, retry_delay_seconds=5)
def resolve_model(model_uri: str, output_dir: str) -> dict:
    """Resolve the model URI to a registry version and download its checkpoint into ``<output>/models``."""
    tracking.configure_tracking()
    model = registry.resolve_model(model_uri, Path(output_dir) / "models")
    task_logger().info("%s resolved to %s", model_uri, model["version"])
    return model


@task(name="plan-scoring")
def plan_scoring(library: list[str], output_dir: str, model: dict, chunk_size: int, retry_failed: bool) -> dict:
    """List the library, drop files unchanged since they were scored by this model version, and chunk the rest."""
    files = scan_library(library)
    with LibraryStore(store_path(output_dir)) as store:
        todo, unchanged = plan(files, store.identities(model["version"]), retry_failed=retry_failed)
        run_id = str(flow_run.get_id() or uuid.uuid4())
        store.start_run(run_id, model["uri"], model["version"], library, len(todo))
    chunks = [todo[i : i + chunk_size] for i in range(0, len(todo), chunk_size)]
    task_logger().info(
        "%d files: %d unchanged since scored by %s, %d to check in %d chunks",
        len(files),
        unchanged,
        model["version"],
        len(todo),
        len(chunks),
    )
    return {"run_id": run_id, "files": len(files), "unchanged": unchanged, "todo": len(todo), "chunks": chunks}


@functools.lru_cache(maxsize=2)
def loaded_model(checkpoint: str, device: str) -> CRNN:
    """The checkpoint's model in eval mode, loaded once per worker process and device."""
    return load_checkpoint(checkpoint, resolve_device(device))[0]


def _prepare(entry: dict, model: CRNN, cache_dir: Path, max_duration_s: float | None) -> tuple:
    """Hash and decode one file (runs in the decode thread): ``(state, sha256, waveform, truncated)``.

    ``state`` is ``unchanged`` (same content as stored), ``decoded``, or a failure reason.
    """
    file = LibraryFile(**{k: entry[k] for k in _FILE_FIELDS})
    if file.is_s3 and file.etag and file.etag == entry.get("known_etag"):
        return "unchanged", entry.get("known_sha256"), None, False
    if reason := unsupported_reason(file):
        return reason, None, None, False
    local = local_copy(file, cache_dir)
    sha256 = file_sha256(local)
    if sha256 == entry.get("known_sha256"):
        return "unchanged", sha256, None, False
    try:
        waveform, truncated = decode_for(model, local, max_duration_s)
    except AudioDecodeError as exc:
        return exc.reason, sha256, None, False
    return "decoded", sha256, waveform, truncated


def prediction_row(p: TrackPrediction) -> dict:
    """The store/result columns of one prediction."""
    return {
        "status": SCORED,
        "genre": p.genre,
        "probability": round(p.probability, 4),
        "uncertain": p.uncertain,
        "top_k": [{"genre": g, "probability": round(q, 4)} for g, q in p.top_k],
        "probs": {g: round(float(q), 4) for g, q in zip(GENRES, p.probs)},
        "timeline": None if p.timeline is None else [asdict(s) for s in p.timeline],
        "duration_s": round(p.duration_s, 3),
        "truncated": p.truncated,
        "n_segments": p.n_segments,
    }


@task(name="score-chunk")
def score_chunk(
    files: list[dict],
    model: dict,
    output_dir: str,
    run_id: str,
    top_k: int = 3,
    uncertain_below: float = 0.5,
    timeline: bool = False,
    max_duration_s: float | None = 600.0,
    device: str = "auto",
) -> dict:
    """Score one chunk of files (decoding the next file while the model scores this one); each row is committed at once."""
    logger = task_logger()
    net = loaded_model(model["checkpoint"], device)
    options = {"top_k": top_k, "uncertain_below": uncertain_below, "timeline": timeline}
    cache = Path(output_dir) / "s3-cache"
    counts: Counter[str] = Counter()
    with LibraryStore(store_path(output_dir)) as store:
        for entry, prepared in prefetch(lambda e: _prepare(e, net, cache, max_duration_s), files):
            file = LibraryFile(**{k: entry[k] for k in _FILE_FIELDS})
            if isinstance(prepared, Exception):  # I/O errors (vanished file, S3 download): retried next run
                prepared = (f"{type(prepared).__name__}: {prepared}", None, None, False)
            state, sha256, waveform, truncated = prepared
            if state == "unchanged":
                store.update_identity(file.path, model["version"], file.size, file.mtime_ns, sha256)
            elif state == "decoded":
                try:
                    row = prediction_row(score_waveform(net, waveform, truncated, **options))
                except ValueError as exc:  # shorter than one segment
                    row = {"status": FAILED, "reason": str(exc)}
                store.record(file, sha256, model, run_id, row)
                state = row["status"]
            else:
                store.record(file, sha256, model, run_id, {"status": FAILED, "reason": state})
                logger.warning("%s: %s", file.path, state)
                state = FAILED
            counts[state] += 1
    return dict(counts)


@task(name="write-genre-tags")
def write_genre_tags(output_dir: str, model: dict, mode: str) -> dict:
    """Write (or, in ``dry-run`` mode, report) the genre tag of every confidently scored local file."""
    logger = task_logger()
    counts: Counter[str] = Counter()
    with LibraryStore(store_path(output_dir)) as store:
        for row in store.results(model_version=model["version"]):
            if row["status"] != SCORED:
                continue
            value = tags.GENRE_TAG_VALUES[row["genre"]]
            if row["tag_status"] == f"written: {value}":
                continue
            status = _tag_one(row, value, mode)
            if status.startswith("written"):
                path = Path(row["path"])
                st = path.stat()
                store.update_identity(row["path"], model["version"], st.st_size, st.st_mtime_ns, file_sha256(path))
            store.set_tag_status(row["path"], model["version"], status)
            counts[status.split(":")[0]] += 1
    logger.info("genre tags (%s): %s", mode, dict(counts))
    return dict(counts)


def _tag_one(row: dict, value: str, mode: str) -> str:
    if row["path"].startswith("s3://"):
        return "skipped: S3 objects are not tagged"
    if row["uncertain"]:
        return f"skipped: uncertain ({row['probability']:.2f})"
    try:
        current = tags.read_genre(row["path"])
        if current == value:
            return f"written: {value}"  # already carries it
        if mode == "dry-run":
            return f"dry-run: would write {value} (now: {current or 'none'})"
        return f"written: {tags.write_genre(row['path'], row['genre'])}"
    except (tags.TagError, OSError) as exc:
        return f"skipped: {exc}"


@task(name="export-results")
def export_results(
    output_dir: str, model: dict, planned: dict, counts: list[dict], library: list[str], scoring_s: float, parquet: bool
) -> dict:
    """Write this run's results and the whole library's labels (CSV, JSON Lines), and a markdown summary artifact."""
    run_id, out = planned["run_id"], Path(output_dir)
    total = Counter({"unchanged": planned["unchanged"]})
    for c in counts:
        total.update(c)
    summary_counts = {k: total[k] for k in (SCORED, "unchanged", FAILED)}
    with LibraryStore(store_path(output_dir)) as store:
        run_rows = store.results(run_id=run_id)
        library_rows = store.results(model_version=model["version"])
        store.finish_run(run_id, summary_counts)
    outputs = results.write_results(run_rows, out / "runs" / run_id / "results", parquet=parquet)
    outputs += results.write_results(library_rows, out / "library", parquet=parquet)
    if any(r.get("timeline") for r in run_rows):
        outputs.append(results.write_timeline(run_rows, out / "runs" / run_id / "timeline.csv"))
    summary = {
        "run_id": run_id,
        "library": library,
        "model_uri": model["uri"],
        "model_version": model["version"],
        "files": planned["files"],
        "counts": summary_counts,
        "scoring_s": scoring_s,
        "tracks_per_s": summary_counts[SCORED] / scoring_s if scoring_s > 0 else 0.0,
        "outputs": [str(p) for p in outputs],
    }
    create_markdown_artifact(results.summary_markdown(summary, run_rows), key="batch-score-summary")
    task_logger().info("scored %(scored)d, unchanged %(unchanged)d, failed %(failed)d", summary_counts)
    return summary
