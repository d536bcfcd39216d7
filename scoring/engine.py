"""The batch-scoring engine: plan a run from the state store, score files, apply the tag policy, export.

Each function does one step of ``batch-score-flow`` against the state store of an output folder;
``tasks/score.py`` wraps them in Prefect tasks. Rows are committed one file at a time, so a killed
run loses at most the file in flight and a rerun resumes.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import TYPE_CHECKING

from crnn.audio import file_sha256
from scoring import results, tags
from scoring.library import LibraryFile, scan_library
from scoring.store import FAILED, SCORED, LibraryStore, plan, store_path

if TYPE_CHECKING:  # torch: imported by score_files, so that planning and export (an empty run) start without it
    from crnn.models import GenreNet
    from crnn.scoring import TrackPrediction
    from scoring.prepare import Prepared

_FILE_FIELDS = tuple(f.name for f in fields(LibraryFile))
_log = logging.getLogger(__name__)


def plan_run(
    library: Sequence[str],
    output_dir: str | Path,
    model: dict,
    run_id: str,
    *,
    chunk_size: int,
    retry_failed: bool = False,
    rescore: bool = False,
    shown_roots: Sequence[str] | None = None,
) -> dict:
    """List ``library``, record the run, and chunk the files that this model version has not scored as they are.

    Args:
        library: local folders or ``s3://bucket/prefix`` roots (real URIs, secrets included).
        output_dir: folder of the state store.
        model: ``uri`` and ``version`` of the resolved model.
        run_id: this run's id (the flow run's).
        chunk_size: files per chunk (one ``score-chunk`` task each).
        retry_failed: plan files that failed before and did not change.
        rescore: plan every file, whatever the store says.
        shown_roots: the roots as recorded in the store (redacted); default ``library``.

    Returns:
        ``run_id``, ``files`` (count listed), ``unchanged``, ``todo`` (count) and ``chunks`` (lists of
        :meth:`LibraryFile.to_dict` plus known hashes).

    Raises:
        LibraryError: a root cannot be listed.
    """
    files = scan_library(library)
    with LibraryStore(store_path(output_dir)) as store:
        known = {} if rescore else store.identities(model["version"])
        todo, unchanged = plan(files, known, retry_failed=retry_failed)
        store.start_run(run_id, model["uri"], model["version"], list(shown_roots or library), len(todo))
        store.mark_seen([f.path for f in files], model["version"], run_id)
    chunks = [todo[i : i + chunk_size] for i in range(0, len(todo), chunk_size)]
    return {"run_id": run_id, "files": len(files), "unchanged": unchanged, "todo": len(todo), "chunks": chunks}


def prediction_row(p: TrackPrediction) -> dict:
    """The store/result columns of one prediction (probabilities rounded to 4 digits, duration in s to 3)."""
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


def _row(net: GenreNet, prepared: Prepared, options: dict) -> dict:
    """The row to record for a decoded or failed file: its prediction, or a failure with its reason."""
    from crnn.scoring import NonFiniteError, SilentError, TooShortError, score_waveform
    from scoring.prepare import PrepState

    if prepared.state is PrepState.DECODED:
        try:
            return prediction_row(score_waveform(net, prepared.waveform, prepared.truncated, **options))
        except (TooShortError, SilentError, NonFiniteError) as exc:
            return {"status": FAILED, "reason": str(exc)}
    return {"status": FAILED, "reason": prepared.reason}


def score_files(
    entries: Sequence[dict],
    net: GenreNet,
    store: LibraryStore,
    model: dict,
    run_id: str,
    options: dict,
    cache_dir: Path,
    logger: logging.Logger | logging.LoggerAdapter = _log,
) -> Counter[str]:
    """Score planned files (decoding the next while the model scores this one), committing each row at once.

    Args:
        entries: items of a chunk of :func:`plan_run`.
        net: the model, in eval mode (:func:`scoring.prepare.loaded_model`).
        store: the output folder's state store.
        model: ``uri`` and ``version`` recorded with every row.
        run_id: this run's id.
        options: ``top_k``, ``uncertain_below``, ``timeline``, ``max_duration_s`` (s; 0 or ``None``: whole file).
        cache_dir: download folder of S3 objects.
        logger: where failures are logged (the task's run logger).

    Returns:
        Counts of ``scored``, ``failed``, ``unchanged`` and ``errors`` (unexpected errors, e.g. I/O:
        logged, not recorded, so the next run tries the file again).
    """
    from crnn.scoring import prefetch
    from scoring.prepare import PrepState, prepare

    options = dict(options)  # shared by the chunks of this run: never mutate
    max_s = options.pop("max_duration_s", None) or None
    counts: Counter[str] = Counter()
    pairs = [(LibraryFile(**{k: e[k] for k in _FILE_FIELDS}), e) for e in entries]
    for (file, _), prepared in prefetch(lambda fe: prepare(fe[0], fe[1], net, cache_dir, max_s), pairs):
        try:
            if isinstance(prepared, Exception):
                raise prepared
            if prepared.state is PrepState.UNCHANGED:
                store.update_identity(file.path, model["version"], file.size, file.mtime_ns, prepared.sha256, file.etag)
                counts["unchanged"] += 1
                continue
            row = _row(net, prepared, options)
            store.record(file, prepared.sha256, model, run_id, row)
            if row["status"] == FAILED:
                logger.warning("%s: %s", file.path, row["reason"])
            counts[row["status"]] += 1
        except Exception as exc:  # noqa: BLE001 - one file never stops the batch
            logger.error("%s: %s: %s (not recorded; retried next run)", file.path, type(exc).__name__, exc)
            counts["errors"] += 1
    return counts


def tag_decision(row: dict, value: str, mode: str, library: Sequence[str]) -> str:
    """The tag policy for one scored row: write, keep the file's own tag, report or skip, as a ``tag_status`` text.

    ``write`` replaces a different genre tag and records the value it replaced; ``fill-missing`` writes
    only to files without one (``kept-existing`` otherwise); ``dry-run`` reports what ``write`` would do.
    S3 objects and uncertain tracks are skipped; so is a file whose real path leaves the local
    ``library`` roots or that is unsafe to rewrite (the reason is the status). See :class:`tags.TagOutcome`.
    """
    if row["path"].startswith("s3://"):
        return tags.TagOutcome("skipped", "S3 objects are not tagged").status
    if row["uncertain"]:
        return tags.TagOutcome("skipped", f"uncertain ({row['probability']:.2f})").status
    roots = [r for r in library if not r.startswith("s3://")]
    try:
        current = tags.read_genre(row["path"])
        if mode == "fill-missing" and current is not None:
            return tags.TagOutcome("kept-existing", existing=current).status  # never rewritten, so not checked
        tags.check_writable(Path(row["path"]).resolve(), roots)  # also in dry-run: report what write would refuse
        if current == value:
            return tags.TagOutcome("written", value).status  # already carries it
        if mode == "dry-run":
            return tags.TagOutcome("dry-run", value, current).status
        return tags.TagOutcome("written", tags.write_genre(row["path"], row["genre"], roots=roots), current).status
    except (tags.TagError, OSError) as exc:
        return tags.TagOutcome("skipped", str(exc)).status


def tag_files(
    store: LibraryStore,
    model_version: str,
    run_id: str,
    mode: str,
    library: Sequence[str],
    logger: logging.Logger | logging.LoggerAdapter = _log,
) -> Counter[str]:
    """Apply :func:`tag_decision` to every scored row of this run's library; record each ``tag_status``.

    In ``write`` and ``fill-missing`` modes, temporary copies a killed run left are removed first, and a
    tagged file's new identity is stored so the next run does not rescore it. One file's error becomes its
    ``tag_status``; the others are still tagged.

    Returns:
        Counts by action (:data:`scoring.tags.TAG_ACTIONS`).
    """
    if mode in ("write", "fill-missing"):
        for stale in tags.remove_stale_copies(library):
            logger.warning("removed %s, a temporary copy left by an interrupted tag run", stale)
    counts: Counter[str] = Counter()
    for row in store.results(model_version=model_version, seen_run=run_id):
        if row["status"] != SCORED:
            continue
        value = tags.tag_value(row["genre"])
        done = tags.TagOutcome.parse(row["tag_status"])
        if done.action == "written" and done.detail == value:
            continue  # a rerun keeps what it wrote, and the value it replaced
        try:
            status = tag_decision(row, value, mode, library)
            if status.startswith("written"):
                path = Path(row["path"])
                st = path.stat()
                sha256 = file_sha256(path)
                store.update_identity(row["path"], model_version, st.st_size, st.st_mtime_ns, sha256)
        except Exception as exc:  # noqa: BLE001 - one file never stops the others
            status = tags.TagOutcome("failed", f"{type(exc).__name__}: {exc}").status
            logger.error("%s: tagging %s", row["path"], status)
        store.set_tag_status(row["path"], model_version, status)
        counts[status.split(":")[0]] += 1
    return counts


def export_run(
    output_dir: str | Path,
    model: dict,
    planned: dict,
    counts: Sequence[dict],
    *,
    formats: str | Sequence[str] = results.DEFAULT_FORMATS,
) -> tuple[dict, list[dict], list[Path]]:
    """Close the run in the store and write its results and the library's current labels in ``formats``.

    Writes ``runs/<run_id>/results.<ext>`` (this run's files), ``library.<ext>`` (every file of this
    run's library with this model version's label) and, with a timeline, ``runs/<run_id>/timeline.csv``.

    Args:
        output_dir: the output folder (state store and tables).
        model: ``uri``, ``version`` and ``labels`` (the result columns, in order) of the model.
        planned: :func:`plan_run`'s result.
        counts: :func:`score_files`' counts per chunk, with ``started``/``finished`` (epoch s).
        formats: names of :data:`scoring.results.FORMATS` (``"csv,jsonl"`` or a list).

    Returns:
        ``(summary, run_rows, paths)``: counts (``scored``, ``unchanged``, ``failed``), ``errors``,
        ``scoring_s`` (s), ``tracks_per_s``; the run's rows; the files written.
    """
    run_id, out = planned["run_id"], Path(output_dir)
    total = Counter({"unchanged": planned["unchanged"]})
    for c in counts:
        total.update({k: v for k, v in c.items() if k not in ("started", "finished")})
    summary_counts = {k: total[k] for k in (SCORED, "unchanged", FAILED)}
    scoring_s = max((c["finished"] for c in counts), default=0.0) - min((c["started"] for c in counts), default=0.0)
    with LibraryStore(store_path(out)) as store:
        run_rows = store.results(run_id=run_id)
        library_rows = store.results(model_version=model["version"], seen_run=run_id)
        store.finish_run(run_id, summary_counts | {"errors": total["errors"]})
    labels = model["labels"]
    paths = results.write_results(run_rows, out / "runs" / run_id / "results", labels=labels, formats=formats)
    paths += results.write_results(library_rows, out / "library", labels=labels, formats=formats)
    if any(r.get("timeline") for r in run_rows):
        paths.append(results.write_timeline(run_rows, out / "runs" / run_id / "timeline.csv"))
    summary = {
        "counts": summary_counts,
        "errors": total["errors"],
        "scoring_s": scoring_s,
        "tracks_per_s": summary_counts[SCORED] / scoring_s if scoring_s > 0 else 0.0,
    }
    return summary, run_rows, paths
