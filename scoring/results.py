"""Results tables of batch scoring in a registry of formats (CSV, JSON Lines, Parquet), written atomically; the run summary."""

from __future__ import annotations

import functools
import json
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from crnn.requests import DEFAULT_RESULT_FORMATS
from infra.storage import atomic_path, s3_client
from scoring.report import REPORT_NAME, LibraryStats, headline
from scoring.store import RESULT_COLUMNS, SCORED
from scoring.tags import TagOutcome

ResultsWriter = Callable[["ResultRows", Path], None]
"""Writes the rows to a (temporary) file path; the caller makes it atomic."""

FORMATS: dict[str, ResultsWriter] = {}
"""Results formats by name; the name is also the file suffix (``results.<name>``). Add one with :func:`results_format`."""

DEFAULT_FORMATS = DEFAULT_RESULT_FORMATS
"""What ``score`` writes unless told otherwise (declared with the score request's options)."""


def results_format(name: str) -> Callable[[ResultsWriter], ResultsWriter]:
    """Register the decorated ``writer(rows, path)`` as results format ``name`` (lower-case letters and digits)."""

    def register(writer: ResultsWriter) -> ResultsWriter:
        FORMATS[name] = writer
        return writer

    return register


def parse_formats(formats: str | Sequence[str]) -> tuple[str, ...]:
    """``"csv,jsonl"`` or ``["csv", "jsonl"]`` -> known format names, without repeats, in the order given.

    Raises:
        ValueError: an unknown name (the message lists the known ones), or no format at all.
    """
    names = [n.strip().lower() for n in (formats.split(",") if isinstance(formats, str) else formats)]
    names = list(dict.fromkeys(n for n in names if n))
    unknown = [n for n in names if n not in FORMATS]
    if unknown or not names:
        what = f"unknown format {', '.join(unknown)}" if unknown else "no format given"
        raise ValueError(f"{what}; known: {','.join(FORMATS)}")
    return tuple(names)


class ResultRows:
    """Rows of the state store (:meth:`scoring.store.LibraryStore.results`) and, built once, their flat table."""

    def __init__(self, rows: Sequence[dict], labels: Sequence[str]) -> None:
        self.rows, self.labels = rows, labels

    @functools.cached_property
    def table(self) -> pd.DataFrame:
        """One row per file: :data:`RESULT_COLUMNS`, the tag columns (:func:`tag_columns`), ``top_k`` as ``genre:prob`` words, ``prob_<label>`` columns (the model's labels, in its order)."""
        table = pd.DataFrame([_flat(r, self.labels) for r in self.rows], columns=list(_flat({}, self.labels).keys()))
        return table.astype({c: "Int64" for c in ("n_segments", "size", "mtime_ns")})  # integers, blank when failed


def _atomic(path: Path, write: Callable[[str], None]) -> Path:
    """Write through ``write(tmp_path)`` and commit atomically to ``path`` (mode 0644: results are read by others)."""
    with atomic_path(path, suffix="") as tmp:
        write(str(tmp))
    return path


def tag_columns(row: dict) -> dict:
    """The ``tag_action`` and ``tag_existing`` columns of a row, read from its ``tag_status``.

    ``tag_action`` is one of :data:`scoring.tags.TAG_ACTIONS` (blank for a file that failed to score);
    ``tag_existing`` is the genre tag the file had, where the tag policy read one.
    """
    if row.get("status") != SCORED:
        return {"tag_action": None, "tag_existing": None}
    outcome = TagOutcome.parse(row.get("tag_status"))
    return {"tag_action": outcome.action, "tag_existing": outcome.existing}


def _flat(row: dict, labels: Sequence[str]) -> dict:
    """A CSV row: ``top_k`` as ``genre:prob`` words, ``probs`` as ``prob_<label>`` columns, no timeline."""
    flat = {k: row.get(k) for k in RESULT_COLUMNS} | tag_columns(row)
    flat["top_k"] = " ".join(f"{t['genre']}:{t['probability']:.4f}" for t in row.get("top_k") or [])
    probs = row.get("probs") or {}
    flat |= {f"prob_{g}": probs.get(g) for g in labels}
    return flat


@results_format("csv")
def _csv(rows: ResultRows, path: Path) -> None:
    """Flat columns, comma-separated, with a header row."""
    rows.table.to_csv(path, index=False)


@results_format("jsonl")
def _jsonl(rows: ResultRows, path: Path) -> None:
    """One JSON object per line, nested values (``top_k``, ``probs``, ``timeline``) kept, and the tag columns."""
    lines = (json.dumps(r | tag_columns(r), ensure_ascii=False) + "\n" for r in rows.rows)
    path.write_text("".join(lines), encoding="utf-8")


@results_format("parquet")
def _parquet(rows: ResultRows, path: Path) -> None:
    """The flat table as Parquet (nullable integer columns stay integers)."""
    rows.table.to_parquet(path, index=False)


def write_results(
    rows: Sequence[dict], stem: Path, *, labels: Sequence[str], formats: str | Sequence[str] = DEFAULT_FORMATS
) -> list[Path]:
    """Write ``rows`` to ``<stem>.<format>`` for each of ``formats`` (see :data:`FORMATS`), each atomically.

    Flat formats get a ``prob_<label>`` column for each of the model's ``labels``, in its order.

    Raises:
        ValueError: an unknown format (nothing is written).

    Returns:
        The paths written, in the order of ``formats``.
    """
    names, table = parse_formats(formats), ResultRows(rows, labels)
    return [_atomic(stem.with_name(f"{stem.name}.{n}"), lambda tmp, n=n: FORMATS[n](table, Path(tmp))) for n in names]


def write_timeline(rows: Sequence[dict], path: Path) -> Path:
    """Per-segment predictions of ``rows`` as CSV: path, start_s, end_s, genre, probability."""
    records = [{"path": r["path"]} | seg for r in rows for seg in r.get("timeline") or []]
    table = pd.DataFrame(records, columns=["path", "start_s", "end_s", "genre", "probability"])
    return _atomic(path, lambda tmp: table.to_csv(tmp, index=False))


def summary_markdown(
    summary: dict, rows: Sequence[dict], max_failures: int = 20, library: LibraryStats | None = None
) -> str:
    """Markdown run summary: counts, throughput, genres of this run, the first failures with reasons.

    With ``library`` (:func:`scoring.report.library_stats`), also the library's totals, so a rerun that
    scores nothing still shows what the library holds.
    """
    c = summary["counts"]
    lines = [
        f"# batch-score-flow: {summary['model_version']}",
        "",
        f"**{headline(c)}**",
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
    if not rows:
        lines += [
            "",
            f"Nothing new to score: {c['unchanged']} files unchanged since {summary['model_version']} scored them.",
        ]
    if library is not None:
        lines += _library_totals(library, summary["model_version"])
    lines += ["", "Outputs: " + ", ".join(f"`{p}`" for p in summary["outputs"])]
    return "\n".join(lines)


def _library_totals(stats: LibraryStats, model_version: str) -> list[str]:
    lines = [
        "",
        f"## Library: {stats.files} files ({model_version})",
        "",
        f"{stats.scored} scored ({stats.uncertain} uncertain, {stats.uncertain_share:.1%}), "
        f"{len(stats.failures)} failed; full report in `{REPORT_NAME}` (Prefect artifact `library-report`).",
    ]
    if stats.genres:
        lines += ["", "| genre | tracks | share |", "| --- | ---: | ---: |"]
        lines += [f"| {g} | {n} | {n / stats.scored:.1%} |" for g, n in stats.genres.items()]
    return lines


def publish(paths: Sequence[Path], output_dir: Path, uri: str) -> list[str]:
    """Upload ``paths`` (files under ``output_dir``) to ``s3://bucket/prefix/<path relative to output_dir>``.

    Each object is written in one PUT, so readers see the old table or the new one, never half of it.

    Raises:
        LibraryError: ``uri`` is not ``s3://bucket[/prefix]``.
        OSError: an upload failed (the message names the object).
    """
    from botocore.exceptions import BotoCoreError, ClientError

    from scoring.library import split_library_uri

    bucket, prefix = split_library_uri(uri)
    keys = []
    for path in paths:
        key = "/".join(p for p in (prefix.strip("/"), Path(path).relative_to(output_dir).as_posix()) if p)
        try:
            s3_client().upload_file(str(path), bucket, key)
        except (BotoCoreError, ClientError) as exc:
            raise OSError(f"s3://{bucket}/{key}: upload failed ({exc})") from exc
        keys.append(f"s3://{bucket}/{key}")
    return keys
