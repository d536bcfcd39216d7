"""Tests for scoring.results: CSV / JSON Lines / Parquet results tables, the timeline table and the markdown summary."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest

from crnn import GENRES
from scoring.library import LibraryFile
from scoring.results import (
    FORMATS,
    parse_formats,
    results_format,
    summary_markdown,
    tag_columns,
    write_results,
    write_timeline,
)
from scoring.store import FAILED, RESULT_COLUMNS, SCORED, LibraryStore

MODEL = {"uri": "models:/genre-crnn@champion", "version": "v7"}
MTIME_NS = 1_700_000_000_123_456_789  # more digits than a float64 holds


def scored(genre: str, probability: float, *, uncertain: bool = False, timeline: bool = True) -> dict:
    other = "blues" if genre != "blues" else "rock"
    probs = dict.fromkeys(GENRES, 0.0) | {genre: probability, other: round(1 - probability, 4)}
    return {
        "status": SCORED,
        "genre": genre,
        "probability": probability,
        "uncertain": uncertain,
        "top_k": [{"genre": genre, "probability": probability}, {"genre": other, "probability": 1 - probability}],
        "probs": probs,
        "timeline": [
            {"start_s": 0.0, "end_s": 2.995, "genre": genre, "probability": 0.9},
            {"start_s": 1.509, "end_s": 4.2, "genre": other, "probability": 0.6},
        ]
        if timeline
        else None,
        "duration_s": 4.2,
        "truncated": False,
        "n_segments": 2,
    }


@pytest.fixture
def rows(tmp_path: Path) -> list[dict]:
    """Rows as the state store hands them out: two scored (one uncertain), one failed, one S3 without timeline."""
    with LibraryStore(tmp_path / "state" / "library.sqlite") as store:
        store.record(LibraryFile("/m/a.mp3", 1234, MTIME_NS), "aa" * 32, MODEL, "run", scored("jazz", 0.8125))
        store.record(
            LibraryFile("/m/b.flac", 99, MTIME_NS + 1), "bb" * 32, MODEL, "run", scored("rock", 0.41, uncertain=True)
        )
        store.record(
            LibraryFile("/m/c.mp3", 0, 5), None, MODEL, "run", {"status": FAILED, "reason": "zero-length file"}
        )
        store.record(
            LibraryFile("s3://lib/d.m4a", 77, 9, "etag"), "dd" * 32, MODEL, "run", scored("jazz", 0.9, timeline=False)
        )
        return store.results(run_id="run")


def test_write_results_files_and_no_leftovers(tmp_path: Path, rows: list[dict]) -> None:
    out = tmp_path / "runs" / "r1"
    written = write_results(rows, out / "results", labels=GENRES)
    assert written == [out / "results.csv", out / "results.jsonl"]
    assert sorted(p.name for p in out.iterdir()) == ["results.csv", "results.jsonl"]
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in written)
    written = write_results(rows, out / "results", labels=GENRES, formats="csv,jsonl,parquet")
    assert written[-1] == out / "results.parquet"
    assert sorted(p.name for p in out.iterdir()) == ["results.csv", "results.jsonl", "results.parquet"]


def test_csv_columns_and_values(tmp_path: Path, rows: list[dict]) -> None:
    (path, _) = write_results(rows, tmp_path / "results", labels=GENRES)
    with open(path, newline="") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == [*RESULT_COLUMNS, "tag_action", "tag_existing", *(f"prob_{g}" for g in GENRES)]
    assert [r["path"] for r in table] == [r["path"] for r in rows]
    a, b, c, d = table
    assert a["top_k"] == "jazz:0.8125 blues:0.1875"
    assert (a["prob_jazz"], a["prob_blues"], a["prob_pop"]) == ("0.8125", "0.1875", "0.0")
    assert (a["uncertain"], b["uncertain"], a["truncated"]) == ("False", "True", "False")
    # integer columns stay integers (exactly), and are blank where a failed row has none
    assert (a["n_segments"], a["size"], a["mtime_ns"]) == ("2", "1234", str(MTIME_NS))
    assert b["mtime_ns"] == str(MTIME_NS + 1)
    assert (c["status"], c["reason"], c["n_segments"], c["genre"], c["top_k"], c["prob_jazz"]) == (
        "failed",
        "zero-length file",
        "",
        "",
        "",
        "",
    )
    assert (c["size"], c["mtime_ns"]) == ("0", "5")
    assert "timeline" not in a and "probs" not in a
    assert d["sha256"] == "dd" * 32
    # no tag policy ran on the scored files; a failed file has no tag action
    assert [r["tag_action"] for r in table] == ["off", "off", "", "off"]


def test_jsonl_keeps_nested_values(tmp_path: Path, rows: list[dict]) -> None:
    (_, path) = write_results(rows, tmp_path / "results", labels=GENRES)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [r | tag_columns(r) for r in rows]
    first = json.loads(lines[0])
    assert first["top_k"][0] == {"genre": "jazz", "probability": 0.8125}
    assert first["timeline"][1]["end_s"] == 4.2 and first["probs"]["jazz"] == 0.8125
    assert first["mtime_ns"] == MTIME_NS


def test_parquet_types(tmp_path: Path, rows: list[dict]) -> None:
    pytest.importorskip("pyarrow")
    (path,) = write_results(rows, tmp_path / "results", labels=GENRES, formats=["parquet"])
    table = pd.read_parquet(path)
    assert len(table) == len(rows)
    assert str(table["n_segments"].dtype) == "Int64"
    assert table["n_segments"].isna().tolist() == [False, False, True, False]
    assert int(table["mtime_ns"][0]) == MTIME_NS
    assert table["prob_jazz"][0] == pytest.approx(0.8125)


def test_results_with_only_failures_and_with_no_rows(tmp_path: Path, rows: list[dict]) -> None:
    failed = [r for r in rows if r["status"] == FAILED]
    csv_path, jsonl_path = write_results(failed, tmp_path / "failed", labels=GENRES)
    table = pd.read_csv(csv_path)
    assert len(table) == 1 and table["n_segments"].isna().all()
    csv_path, jsonl_path = write_results([], tmp_path / "empty", labels=GENRES)
    assert csv_path.read_text().strip().split(",")[0] == "path"
    assert len(csv_path.read_text().strip().splitlines()) == 1
    assert jsonl_path.read_text() == ""


def test_write_results_replaces_previous_files(tmp_path: Path, rows: list[dict]) -> None:
    write_results(rows, tmp_path / "library", labels=GENRES)
    csv_path, jsonl_path = write_results(rows[:1], tmp_path / "library", labels=GENRES)
    assert len(pd.read_csv(csv_path)) == 1
    assert len(jsonl_path.read_text().splitlines()) == 1


def test_write_timeline_rows(tmp_path: Path, rows: list[dict]) -> None:
    path = write_timeline(rows, tmp_path / "run" / "timeline.csv")
    assert sorted(p.name for p in path.parent.iterdir()) == ["timeline.csv"]
    with open(path, newline="") as f:
        table = list(csv.DictReader(f))
    assert [(r["path"], r["genre"]) for r in table] == [
        ("/m/a.mp3", "jazz"),
        ("/m/a.mp3", "blues"),
        ("/m/b.flac", "rock"),
        ("/m/b.flac", "blues"),
    ]
    assert list(table[0]) == ["path", "start_s", "end_s", "genre", "probability"]
    assert (table[1]["start_s"], table[1]["end_s"], table[1]["probability"]) == ("1.509", "4.2", "0.6")


def test_write_timeline_without_segments(tmp_path: Path, rows: list[dict]) -> None:
    path = write_timeline(rows[2:], tmp_path / "timeline.csv")
    assert path.read_text().strip() == "path,start_s,end_s,genre,probability"


def summary(counts: dict, outputs: list[str] | None = None) -> dict:
    return {
        "model_version": "v7",
        "model_uri": MODEL["uri"],
        "library": ["/m", "s3://lib"],
        "scoring_s": 12.34,
        "tracks_per_s": 0.25,
        "files": sum(counts.values()),
        "counts": counts,
        "outputs": outputs or ["out/library.csv"],
    }


def test_summary_markdown_counts_genres_and_failures(rows: list[dict]) -> None:
    md = summary_markdown(summary({"scored": 3, "unchanged": 5, "failed": 1}), rows)
    assert md.startswith("# batch-score-flow: v7")
    assert "| 3 | 5 | 1 | 9 |" in md
    assert "`/m`, `s3://lib`" in md and "12.3 s" in md and "**0.25 tracks/s**" in md
    assert "| jazz | 2 | 0 |" in md and "| rock | 1 | 1 |" in md
    assert md.index("| jazz |") < md.index("| rock |")  # most common first
    assert "## Failed files (1)" in md
    assert "| `/m/c.mp3` | zero-length file |" in md
    assert "more in the results table" not in md
    assert md.rstrip().endswith("Outputs: `out/library.csv`")


def test_summary_markdown_truncates_failures(rows: list[dict]) -> None:
    failures = [{"path": f"/m/bad{i:02d}.mp3", "status": FAILED, "reason": f"reason {i}"} for i in range(25)]
    md = summary_markdown(summary({"scored": 0, "unchanged": 0, "failed": 25}), failures, max_failures=10)
    assert "## Failed files (25)" in md
    assert "| `/m/bad09.mp3` | reason 9 |" in md
    assert "bad10" not in md
    assert "| … | 15 more in the results table |" in md
    assert "| genre | tracks | uncertain |" not in md  # nothing scored
    exact = summary_markdown(summary({"scored": 0, "unchanged": 0, "failed": 25}), failures, max_failures=25)
    assert "more in the results table" not in exact and "bad24" in exact


def test_summary_markdown_without_failures(rows: list[dict]) -> None:
    ok = [r for r in rows if r["status"] == SCORED]
    md = summary_markdown(summary({"scored": 3, "unchanged": 0, "failed": 0}), ok)
    assert "Failed files" not in md
    assert "| jazz | 2 | 0 |" in md


def test_formats_are_parsed_against_the_registry() -> None:
    assert parse_formats("csv,jsonl") == ("csv", "jsonl")
    assert parse_formats(" Parquet , csv,,csv ") == ("parquet", "csv")
    assert parse_formats(["jsonl"]) == ("jsonl",)
    with pytest.raises(ValueError, match=r"^unknown format xlsx, html; known: csv,jsonl,parquet"):
        parse_formats("csv,xlsx,html")
    with pytest.raises(ValueError, match="no format given"):
        parse_formats(" , ")


def test_an_unknown_format_writes_nothing(tmp_path: Path, rows: list[dict]) -> None:
    with pytest.raises(ValueError, match="xlsx"):
        write_results(rows, tmp_path / "results", labels=GENRES, formats="csv,xlsx")
    assert [p.name for p in tmp_path.iterdir()] == ["state"]  # only the fixture's store


def test_a_registered_format_is_written_like_the_others(tmp_path: Path, rows: list[dict], monkeypatch) -> None:
    monkeypatch.setattr("scoring.results.FORMATS", dict(FORMATS))

    @results_format("tsv")
    def _tsv(table, path: Path) -> None:
        table.table.to_csv(path, sep="\t", index=False)

    (path,) = write_results(rows, tmp_path / "results", labels=GENRES, formats="tsv")
    assert path == tmp_path / "results.tsv" and path.read_text().startswith("path\tstatus\t")
    assert path.stat().st_mode & 0o777 == 0o644
