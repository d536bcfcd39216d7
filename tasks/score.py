"""Batch scoring tasks: resolve the model, plan the run from the state store, score chunks, tag, export."""

from __future__ import annotations

import functools
import threading
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from crnn.audio import AudioDecodeError, file_sha256, non_regular_reason
from crnn.config import check_scoring_options
from crnn.inference import checkpoint_labels, load_checkpoint
from crnn.models import GenreNet
from crnn.scoring import (
    NonFiniteError,
    SilentError,
    TooShortError,
    TrackPrediction,
    decode_for,
    prefetch,
    score_waveform,
)
from crnn.train import resolve_device
from infra import registry, results, tags, tracking
from infra.library import LibraryFile, local_copy, scan_library, unsupported_reason
from infra.library_store import FAILED, SCORED, STORE_NAME, LibraryStore, plan
from infra.redact import redact, reveal
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
    model["labels"] = list(checkpoint_labels(model["checkpoint"]))  # the result columns
    task_logger().info("%s resolved to %s", model_uri, model["version"])
    return model


@task(name="plan-scoring")
def plan_scoring(
    library: list[str], output_dir: str, model: dict, options: dict, chunk_size: int, retry_failed: bool, rescore: bool
) -> dict:
    """Check the options, list the library, drop files unchanged since this model version scored them, chunk the rest."""
    check_options(**options)
    library = [reveal(r) for r in library]
    files = scan_library(library)
    run_id = str(flow_run.get_id() or uuid.uuid4())
    with LibraryStore(store_path(output_dir)) as store:
        known = {} if rescore else store.identities(model["version"])
        todo, unchanged = plan(files, known, retry_failed=retry_failed)
        store.start_run(run_id, model["uri"], model["version"], [redact(r) for r in library], len(todo))
        store.mark_seen([f.path for f in files], model["version"], run_id)
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


def check_options(top_k: int, uncertain_below: float, timeline: bool, max_duration_s: float | None) -> None:
    """Raise ``ValueError`` for options no file could be scored with (before any file is touched)."""
    check_scoring_options(top_k, uncertain_below, max_duration_s)


_load_lock = threading.Lock()


@functools.lru_cache(maxsize=2)
def _load(checkpoint: str, device: str) -> GenreNet:
    return load_checkpoint(checkpoint, resolve_device(device))[0]


def loaded_model(checkpoint: str, device: str) -> GenreNet:
    """The checkpoint's model in eval mode, loaded once per worker process and device (threads wait for it)."""
    with _load_lock:
        return _load(checkpoint, device)


@dataclass
class Prepared:
    """One file after the decode thread: ``state`` is ``unchanged``, ``decoded`` or ``failed`` (with ``reason``).

    Attributes:
        waveform: mono samples in [-1, 1] at the model's rate, shape (time,), when ``decoded``.
    """

    state: str
    sha256: str | None = None
    reason: str | None = None
    waveform: np.ndarray | None = None
    truncated: bool = False


def _prepare(
    file: LibraryFile, hints: dict, model: GenreNet, cache_dir: Path, max_duration_s: float | None
) -> Prepared:
    """Hash and decode one file; :class:`Prepared`. I/O errors propagate (nothing is recorded: retried next run)."""
    if file.is_s3 and file.etag and file.etag == hints.get("known_etag"):
        return Prepared("unchanged", hints.get("known_sha256"))
    if reason := unsupported_reason(file):
        return Prepared(FAILED, reason=reason)
    local = local_copy(file, cache_dir)
    if reason := non_regular_reason(local):  # replaced by a FIFO or device since it was listed
        return Prepared(FAILED, reason=reason)
    try:
        sha256 = file_sha256(local)
        if sha256 == hints.get("known_sha256"):
            return Prepared("unchanged", sha256)
        try:
            waveform, truncated = decode_for(model, local, max_duration_s)
        except AudioDecodeError as exc:
            return Prepared(FAILED, sha256, exc.reason)
        return Prepared("decoded", sha256, waveform=waveform, truncated=truncated)
    finally:
        if file.is_s3:  # the cached copy is only needed until it is decoded
            local.unlink(missing_ok=True)


def prediction_row(p: TrackPrediction) -> dict:
    """The store/result columns of one prediction."""
    return {
        "status": SCORED,
        "genre": p.genre,
        "probability": round(p.probability, 4),
        "uncertain": p.uncertain,
        "top_k": [{"genre": g, "probability": round(q, 4)} for g, q in p.top_k],
        "probs": {g: round(float(q), 4) for g, q in zip(p.labels, p.probs)},
        "timeline": None if p.timeline is None else [asdict(s) for s in p.timeline],
        "duration_s": round(p.duration_s, 3),
        "truncated": p.truncated,
        "n_segments": p.n_segments,
    }


def _score_one(net: GenreNet, prepared: Prepared, options: dict) -> dict:
    """The row to record for a decoded file: its prediction, or a failure when it is too short or silent."""
    try:
        return prediction_row(score_waveform(net, prepared.waveform, prepared.truncated, **options))
    except (TooShortError, SilentError, NonFiniteError) as exc:
        return {"status": FAILED, "reason": str(exc)}


@task(name="score-chunk")
def score_chunk(
    files: list[dict],
    model: dict,
    output_dir: str,
    run_id: str,
    options: dict,
    device: str = "auto",
) -> dict:
    """Score one chunk of files (decoding the next file while the model scores this one); each row is committed at once.

    A file that cannot be scored is recorded with its reason; an unexpected error (I/O, out of memory)
    is logged and not recorded, so the next run tries that file again.
    """
    logger, started = task_logger(), time.time()
    net = loaded_model(model["checkpoint"], device)
    options = dict(options)  # shared by the chunks of this run: never mutate
    max_s = options.pop("max_duration_s", None) or None  # 0: whole file
    cache = Path(output_dir) / "s3-cache"
    counts: Counter[str] = Counter()
    entries = [(LibraryFile(**{k: e[k] for k in _FILE_FIELDS}), e) for e in files]
    with LibraryStore(store_path(output_dir)) as store:
        for (file, _), prepared in prefetch(lambda fe: _prepare(fe[0], fe[1], net, cache, max_s), entries):
            try:
                if isinstance(prepared, Exception):
                    raise prepared
                if prepared.state == "unchanged":
                    store.update_identity(
                        file.path, model["version"], file.size, file.mtime_ns, prepared.sha256, file.etag
                    )
                    counts["unchanged"] += 1
                    continue
                row = _score_one(net, prepared, options) if prepared.state == "decoded" else None
                row = row or {"status": FAILED, "reason": prepared.reason}
                store.record(file, prepared.sha256, model, run_id, row)
                if row["status"] == FAILED:
                    logger.warning("%s: %s", file.path, row["reason"])
                counts[row["status"]] += 1
            except Exception as exc:  # noqa: BLE001 - one file never stops the batch
                logger.error("%s: %s: %s (not recorded; retried next run)", file.path, type(exc).__name__, exc)
                counts["errors"] += 1
    return dict(counts) | {"started": started, "finished": time.time()}


@task(name="write-genre-tags")
def write_genre_tags(output_dir: str, model: dict, run_id: str, mode: str, library: list[str]) -> dict:
    """Write (or, in ``dry-run`` mode, report) the genre tag of every confidently scored local file of this run's library.

    Temporary copies a killed run left are removed first (``write`` mode); one file's error is recorded
    as its ``tag_status`` and the others are still tagged.
    """
    logger, library = task_logger(), [reveal(r) for r in library]
    if mode == "write":
        for stale in tags.remove_stale_copies(library):
            logger.warning("removed %s, a temporary copy left by an interrupted tag run", stale)
    counts: Counter[str] = Counter()
    with LibraryStore(store_path(output_dir)) as store:
        for row in store.results(model_version=model["version"], seen_run=run_id):
            if row["status"] != SCORED:
                continue
            value = tags.tag_value(row["genre"])
            if row["tag_status"] == f"written: {value}":
                continue
            try:
                status = _tag_one(row, value, mode, library)
                if status.startswith("written"):
                    path = Path(row["path"])
                    st = path.stat()
                    sha256 = file_sha256(path)
                    store.update_identity(row["path"], model["version"], st.st_size, st.st_mtime_ns, sha256)
            except Exception as exc:  # noqa: BLE001 - one file never stops the others
                status = f"failed: {type(exc).__name__}: {exc}"
                logger.error("%s: tagging %s", row["path"], status)
            store.set_tag_status(row["path"], model["version"], status)
            counts[status.split(":")[0]] += 1
    logger.info("genre tags (%s): %s", mode, dict(counts))
    return dict(counts)


def _tag_one(row: dict, value: str, mode: str, library: list[str]) -> str:
    if row["path"].startswith("s3://"):
        return "skipped: S3 objects are not tagged"
    if row["uncertain"]:
        return f"skipped: uncertain ({row['probability']:.2f})"
    roots = [r for r in library if not r.startswith("s3://")]
    try:
        tags.check_writable(Path(row["path"]).resolve(), roots)  # also in dry-run: report what write would refuse
        current = tags.read_genre(row["path"])
        if current == value:
            return f"written: {value}"  # already carries it
        if mode == "dry-run":
            return f"dry-run: would write {value} (now: {current or 'none'})"
        return f"written: {tags.write_genre(row['path'], row['genre'], roots=roots)}"
    except (tags.TagError, OSError) as exc:
        return f"skipped: {exc}"


@task(name="export-results")
def export_results(
    output_dir: str,
    model: dict,
    planned: dict,
    counts: list[dict],
    library: list[str],
    parquet: bool,
    results_uri: str = "",
) -> dict:
    """Write this run's results and the library's current labels (CSV, JSON Lines; copies on S3), and a summary artifact."""
    run_id, out = planned["run_id"], Path(output_dir)
    total = Counter({"unchanged": planned["unchanged"]})
    for c in counts:
        total.update({k: v for k, v in c.items() if k not in ("started", "finished")})
    summary_counts = {k: total[k] for k in (SCORED, "unchanged", FAILED)}
    scoring_s = max((c["finished"] for c in counts), default=0.0) - min((c["started"] for c in counts), default=0.0)
    with LibraryStore(store_path(output_dir)) as store:
        run_rows = store.results(run_id=run_id)
        library_rows = store.results(model_version=model["version"], seen_run=run_id)
        store.finish_run(run_id, summary_counts | {"errors": total["errors"]})
    labels = model["labels"]
    outputs = results.write_results(run_rows, out / "runs" / run_id / "results", labels=labels, parquet=parquet)
    outputs += results.write_results(library_rows, out / "library", labels=labels, parquet=parquet)
    if any(r.get("timeline") for r in run_rows):
        outputs.append(results.write_timeline(run_rows, out / "runs" / run_id / "timeline.csv"))
    if results_uri:
        outputs += results.publish(outputs, out, reveal(results_uri))
    summary = {
        "run_id": run_id,
        "library": [redact(r) for r in library],
        "model_uri": model["uri"],
        "model_version": model["version"],
        "files": planned["files"],
        "counts": summary_counts,
        "errors": total["errors"],
        "scoring_s": scoring_s,
        "tracks_per_s": summary_counts[SCORED] / scoring_s if scoring_s > 0 else 0.0,
        "outputs": [redact(str(p)) for p in outputs],
    }
    create_markdown_artifact(results.summary_markdown(summary, run_rows), key="batch-score-summary")
    task_logger().info(
        "scored %d, unchanged %d, failed %d, errors %d (retried next run)", *summary_counts.values(), total["errors"]
    )
    return summary
