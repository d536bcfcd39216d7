"""Tests for scoring.report: library statistics and the library report, from state-store rows."""

from __future__ import annotations

import pytest

from scoring.report import headline, library_markdown, library_stats
from scoring.results import summary_markdown
from scoring.store import FAILED, SCORED


def row(
    path: str, genre: str | None = None, probability: float = 0.9, *, uncertain: bool = False, day: int = 1
) -> dict:
    common = {"path": path, "model_version": "genre-crnn/2", "scored_at": f"2026-01-0{day}T00:00:00"}
    if genre is None:
        return common | {"status": FAILED, "reason": f"{path} is broken", "genre": None, "probability": None}
    return common | {
        "status": SCORED,
        "reason": None,
        "genre": genre,
        "probability": probability,
        "uncertain": uncertain,
    }


ROWS = [
    row("/m/a.mp3", "jazz", 0.9),
    row("/m/bb.mp3", "jazz", 0.5, uncertain=True),
    row("/m/ccc.mp3", "rock", 0.7, day=6),
    row("/m/dddd.mp3", "jazz", 0.8),
    row("/m/zz.mp3"),
]
RUN = {"run_id": "r2", "model_version": "genre-crnn/2", "updated": "2026-02-01T00:00:00+00:00"}


def test_library_stats_count_genres_confidence_and_failures() -> None:
    stats = library_stats(ROWS)
    assert (stats.files, stats.scored, stats.uncertain) == (5, 4, 1)
    assert list(stats.genres.items()) == [("jazz", 3), ("rock", 1)]  # most common first
    assert list(stats.genre_counts(["blues", "rock", "jazz"]).items()) == [("jazz", 3), ("rock", 1), ("blues", 0)]
    assert stats.uncertain_share == pytest.approx(0.25)
    assert stats.failures == [("/m/zz.mp3", "/m/zz.mp3 is broken")]
    c = stats.confidence()
    assert (
        c["min"] == 0.5 and c["max"] == 0.9 and c["median"] == pytest.approx(0.75) and c["mean"] == pytest.approx(0.725)
    )
    assert stats.model_versions == ["genre-crnn/2"] and stats.last_scored == "2026-01-06T00:00:00"
    m = stats.metrics()
    assert m["library/files"] == 5 and m["library/failed"] == 1 and m["library/uncertain_share"] == pytest.approx(0.25)


def test_an_empty_library_has_no_confidence_and_a_zero_uncertain_share() -> None:
    stats = library_stats([])
    assert (stats.files, stats.scored, stats.uncertain_share, stats.confidence()) == (0, 0, 0.0, {})
    md = library_markdown(stats, RUN | {"counts": {"scored": 0, "unchanged": 0, "failed": 0}})
    assert "No file of the library has a genre yet." in md and "last file scored: never" in md
    assert library_stats([row("/m/a.mp3", "pop", 0.6)]).confidence()["p25"] == 0.6  # one value: every quantile


def test_library_markdown_lists_the_whole_library_after_a_run_that_scored_nothing() -> None:
    counts = {"scored": 0, "unchanged": 5, "failed": 0}
    md = library_markdown(
        library_stats(ROWS),
        RUN | {"counts": counts, "mlflow_run_id": "abc"},
        plots={"Genres": "library_genres.png", "Confidence": "library_confidence.png"},
    )
    assert md.startswith("# Library report: genre-crnn/2")
    assert "by scoring run `r2` (0 new, 5 unchanged, 0 failed), MLflow run `abc`" in md
    assert "| 5 | 4 | 1 (25.0% of scored) | 1 |" in md
    assert "| jazz | 3 | 75.0% |" in md and "| rock | 1 | 25.0% |" in md
    assert "| 0.725 | 0.500 |" in md  # mean, min
    assert "![Genres](library_genres.png)" in md and "![Confidence](library_confidence.png)" in md
    assert "## Failed files (1)" in md and "| `/m/zz.mp3` | /m/zz.mp3 is broken |" in md


def test_library_markdown_lists_the_first_failures_and_counts_the_rest() -> None:
    rows = [row(f"/m/bad{i:02d}.mp3") for i in range(7)]
    md = library_markdown(
        library_stats(rows), RUN | {"counts": {"scored": 0, "unchanged": 0, "failed": 7}}, max_failures=3
    )
    assert "bad02" in md and "bad03" not in md and "| … | 4 more in `library.csv` |" in md


def test_the_run_summary_of_a_run_that_scored_nothing_shows_the_library_totals() -> None:
    counts = {"scored": 0, "unchanged": 5, "failed": 0}
    summary = {
        "model_version": "genre-crnn/2",
        "model_uri": "models:/genre-crnn@champion",
        "library": ["/m"],
        "scoring_s": 0.0,
        "tracks_per_s": 0.0,
        "files": 5,
        "counts": counts,
        "outputs": ["out/library.csv"],
    }
    md = summary_markdown(summary, [], library=library_stats(ROWS))
    assert "**0 new, 5 unchanged, 0 failed**" in md and headline(counts) == "0 new, 5 unchanged, 0 failed"
    assert "Nothing new to score: 5 files unchanged since genre-crnn/2 scored them." in md
    assert "## Library: 5 files (genre-crnn/2)" in md and "| jazz | 3 | 75.0% |" in md
    assert "4 scored (1 uncertain, 25.0%), 1 failed" in md
    assert md.rstrip().endswith("Outputs: `out/library.csv`")
