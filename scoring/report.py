"""The library report: what the whole library looks like to the current model, from the state store.

Rebuilt by every scoring run, a rerun that scores nothing included, from the rows of the library as
that run listed it (the rows of ``library.csv``): genre counts and shares, the confidence summary, the
uncertain share, the failed files with their reasons. Pure Python: the plots are drawn by the caller
(``tasks/plots.py``) and linked here by relative path.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from scoring.store import FAILED, SCORED

REPORT_NAME = "library_report.md"
"""The report's file name in the output folder."""
GENRES_PNG, CONFIDENCE_PNG = "library_genres.png", "library_confidence.png"
"""The plots the report embeds, beside it in the output folder."""
MAX_FAILURES = 20
"""Failed files listed in the report (the rest are counted; ``library.csv`` has them all)."""


@dataclass(frozen=True)
class LibraryStats:
    """Counts and confidence of one library's rows (one row per file, one model version).

    Attributes:
        files: rows in all.
        genres: ``genre -> scored files``, most common first.
        probabilities: top probability (0-1) of every scored file, in row order.
        uncertain: scored files flagged uncertain.
        failures: ``(path, reason)`` of every failed file, by path.
        model_versions: versions that labelled the rows (one, unless rows of several are passed).
        last_scored: latest ``scored_at`` (ISO 8601, UTC), ``None`` without rows.
    """

    files: int
    genres: dict[str, int]
    probabilities: list[float]
    uncertain: int
    failures: list[tuple[str, str]] = field(default_factory=list)
    model_versions: list[str] = field(default_factory=list)
    last_scored: str | None = None

    @property
    def scored(self) -> int:
        """Files with a genre."""
        return len(self.probabilities)

    @property
    def uncertain_share(self) -> float:
        """Uncertain files over scored files (0 when nothing is scored)."""
        return self.uncertain / self.scored if self.scored else 0.0

    def genre_counts(self, labels: Sequence[str]) -> dict[str, int]:
        """Tracks per genre with every one of the model's ``labels`` (0 when none), most common first."""
        counts = dict.fromkeys(labels, 0) | self.genres
        return dict(sorted(counts.items(), key=lambda kv: -kv[1]))

    def confidence(self) -> dict[str, float]:
        """``mean``, ``min``, ``p25``, ``median``, ``p75``, ``max`` of the top probabilities (empty when none)."""
        p = sorted(self.probabilities)
        if not p:
            return {}
        q1, q2, q3 = statistics.quantiles(p, n=4, method="inclusive") if len(p) > 1 else (p[0],) * 3
        return {"mean": statistics.fmean(p), "min": p[0], "p25": q1, "median": q2, "p75": q3, "max": p[-1]}

    def metrics(self) -> dict[str, float]:
        """The library's numbers as MLflow metrics (``library/...``)."""
        return {
            "library/files": self.files,
            "library/scored": self.scored,
            "library/failed": len(self.failures),
            "library/uncertain": self.uncertain,
            "library/uncertain_share": self.uncertain_share,
        } | {f"library/confidence_{k}": v for k, v in self.confidence().items()}


def library_stats(rows: Sequence[Mapping]) -> LibraryStats:
    """Summarise state-store rows (:meth:`scoring.store.LibraryStore.results`) of one library."""
    scored = [r for r in rows if r["status"] == SCORED]
    failures = sorted((r["path"], r["reason"] or "") for r in rows if r["status"] == FAILED)
    return LibraryStats(
        files=len(rows),
        genres=dict(Counter(r["genre"] for r in scored).most_common()),
        probabilities=[float(r["probability"]) for r in scored],
        uncertain=sum(bool(r["uncertain"]) for r in scored),
        failures=failures,
        model_versions=sorted({r["model_version"] for r in rows}),
        last_scored=max((r["scored_at"] for r in rows), default=None),
    )


def headline(counts: Mapping[str, int]) -> str:
    """``"3 new, 12 unchanged, 1 failed"``: what one run did (``scored``/``unchanged``/``failed`` counts)."""
    return f"{counts['scored']} new, {counts['unchanged']} unchanged, {counts['failed']} failed"


def library_markdown(
    stats: LibraryStats,
    run: Mapping,
    *,
    plots: Mapping[str, str] | None = None,
    max_failures: int = MAX_FAILURES,
) -> str:
    """The library report as Markdown.

    Args:
        stats: the library (:func:`library_stats`).
        run: the run that wrote the report: ``run_id``, ``model_version``, ``counts``, ``updated`` (ISO time),
            optional ``mlflow_run_id``.
        plots: ``title -> relative path`` of images to embed (e.g. ``{"Genres": "library_genres.png"}``).
        max_failures: failed files listed; the rest are counted.
    """
    lines = [
        f"# Library report: {run['model_version']}",
        "",
        f"Updated {run['updated']} by scoring run `{run['run_id']}` ({headline(run['counts'])})"
        + (f", MLflow run `{run['mlflow_run_id']}`" if run.get("mlflow_run_id") else "")
        + ".  ",
        f"Model version: **{', '.join(stats.model_versions) or run['model_version']}**; "
        f"last file scored: {stats.last_scored or 'never'}.",
        "",
        "| files | scored | uncertain | failed |",
        "| ---: | ---: | ---: | ---: |",
        f"| {stats.files} | {stats.scored} | {stats.uncertain} ({stats.uncertain_share:.1%} of scored) "
        f"| {len(stats.failures)} |",
    ]
    lines += _genre_table(stats) + _confidence_lines(stats)
    lines += [line for title, path in (plots or {}).items() for line in ("", f"![{title}]({path})")]
    lines += _failure_lines(stats, max_failures)
    return "\n".join(lines) + "\n"


def _genre_table(stats: LibraryStats) -> list[str]:
    if not stats.genres:
        return ["", "No file of the library has a genre yet."]
    lines = ["", "## Genres", "", "| genre | tracks | share |", "| --- | ---: | ---: |"]
    return lines + [f"| {g} | {n} | {n / stats.scored:.1%} |" for g, n in stats.genres.items()]


def _confidence_lines(stats: LibraryStats) -> list[str]:
    c = stats.confidence()
    if not c:
        return []
    head = " | ".join(c)
    return [
        "",
        "## Confidence (top probability)",
        "",
        f"| {head} |",
        "| " + " | ".join("---:" for _ in c) + " |",
        "| " + " | ".join(f"{v:.3f}" for v in c.values()) + " |",
    ]


def _failure_lines(stats: LibraryStats, max_failures: int) -> list[str]:
    if not stats.failures:
        return []
    lines = ["", f"## Failed files ({len(stats.failures)})", "", "| file | reason |", "| --- | --- |"]
    lines += [f"| `{path}` | {reason} |" for path, reason in stats.failures[:max_failures]]
    if len(stats.failures) > max_failures:
        lines.append(f"| … | {len(stats.failures) - max_failures} more in `library.csv` |")
    return lines
