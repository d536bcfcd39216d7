"""Results tables of batch scoring (CSV, JSON Lines, optional Parquet), written atomically, and the run summary."""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from infra.library_store import RESULT_COLUMNS


def _atomic(path: Path, write: Callable[[str], None]) -> Path:
    """Write through ``write(tmp_path)`` into a temporary file beside ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be read by others
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def _flat(row: dict, labels: Sequence[str]) -> dict:
    """A CSV row: ``top_k`` as ``genre:prob`` words, ``probs`` as ``prob_<label>`` columns, no timeline."""
    flat = {k: row.get(k) for k in RESULT_COLUMNS}
    flat["top_k"] = " ".join(f"{t['genre']}:{t['probability']:.4f}" for t in row.get("top_k") or [])
    probs = row.get("probs") or {}
    flat |= {f"prob_{g}": probs.get(g) for g in labels}
    return flat


def write_results(rows: Sequence[dict], stem: Path, *, labels: Sequence[str], parquet: bool = False) -> list[Path]:
    """Write ``rows`` to ``<stem>.csv`` and ``<stem>.jsonl`` (and ``<stem>.parquet``), each atomically.

    The JSON Lines file keeps nested values (``top_k``, ``probs``, ``timeline``); CSV and Parquet
    get flat columns (``prob_<label>`` for each of the model's ``labels``, in its order).

    Returns:
        The paths written.
    """
    table = pd.DataFrame([_flat(r, labels) for r in rows], columns=list(_flat({}, labels).keys()))
    table = table.astype({c: "Int64" for c in ("n_segments", "size", "mtime_ns")})  # integers, blank when failed
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    written = [
        _atomic(stem.with_suffix(".csv"), lambda tmp: table.to_csv(tmp, index=False)),
        _atomic(stem.with_suffix(".jsonl"), lambda tmp: Path(tmp).write_text(lines, encoding="utf-8")),
    ]
    if parquet:
        written.append(_atomic(stem.with_suffix(".parquet"), lambda tmp: table.to_parquet(tmp, index=False)))
    return written


def write_timeline(rows: Sequence[dict], path: Path) -> Path:
    """Per-segment predictions of ``rows`` as CSV: path, start_s, end_s, genre, probability."""
    records = [{"path": r["path"]} | seg for r in rows for seg in r.get("timeline") or []]
    table = pd.DataFrame(records, columns=["path", "start_s", "end_s", "genre", "probability"])
    return _atomic(path, lambda tmp: table.to_csv(tmp, index=False))


def summary_markdown(summary: dict, rows: Sequence[dict], max_failures: int = 20) -> str:
    """Markdown run summary: counts, throughput, genres of this run, and the first failures with reasons."""
    c = summary["counts"]
    lines = [
        f"# batch-score-flow: {summary['model_version']}",
        "",
        f"Library: {', '.join(f'`{r}`' for r in summary['library'])}  ",
        f"Model: `{summary['model_uri']}` → **{summary['model_version']}**  ",
        f"Scoring: {summary['scoring_s']:.1f} s, **{summary['tracks_per_s']:.2f} tracks/s**",
        "",
        "| scored | skipped (unchanged) | failed | files seen |",
        "| ---: | ---: | ---: | ---: |",
        f"| {c['scored']} | {c['unchanged']} | {c['failed']} | {summary['files']} |",
    ]
    genres = Counter(r["genre"] for r in rows if r["status"] == "scored")
    if genres:
        uncertain = Counter(r["genre"] for r in rows if r["status"] == "scored" and r["uncertain"])
        lines += ["", "| genre | tracks | uncertain |", "| --- | ---: | ---: |"]
        lines += [f"| {g} | {n} | {uncertain[g]} |" for g, n in genres.most_common()]
    failures = [r for r in rows if r["status"] == "failed"]
    if failures:
        lines += ["", f"## Failed files ({len(failures)})", "", "| file | reason |", "| --- | --- |"]
        lines += [f"| `{r['path']}` | {r['reason']} |" for r in failures[:max_failures]]
        if len(failures) > max_failures:
            lines.append(f"| … | {len(failures) - max_failures} more in the results table |")
    lines += ["", "Outputs: " + ", ".join(f"`{p}`" for p in summary["outputs"])]
    return "\n".join(lines)


def publish(paths: Sequence[Path], output_dir: Path, uri: str) -> list[str]:
    """Upload ``paths`` (files under ``output_dir``) to ``s3://bucket/prefix/<path relative to output_dir>``.

    Each object is written in one PUT, so readers see the old table or the new one, never half of it.

    Raises:
        LibraryError: ``uri`` is not ``s3://bucket[/prefix]``.
        OSError: an upload failed (the message names the object).
    """
    from botocore.exceptions import BotoCoreError, ClientError

    from infra.library import _s3_client, _split_s3

    bucket, prefix = _split_s3(uri)
    keys = []
    for path in paths:
        key = "/".join(p for p in (prefix.strip("/"), Path(path).relative_to(output_dir).as_posix()) if p)
        try:
            _s3_client().upload_file(str(path), bucket, key)
        except (BotoCoreError, ClientError) as exc:
            raise OSError(f"s3://{bucket}/{key}: upload failed ({exc})") from exc
        keys.append(f"s3://{bucket}/{key}")
    return keys
