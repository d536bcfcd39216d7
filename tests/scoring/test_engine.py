"""Tests for scoring.engine without Prefect: plan, score, export on tiny synthetic audio; the tag policy."""

from __future__ import annotations

import csv
from pathlib import Path

from crnn import GENRES
from crnn.config import PipelineConfig
from crnn.inference import build_model
from scoring import engine, tags
from scoring.store import LibraryStore, store_path

OPTIONS = {"top_k": 3, "uncertain_below": 0.5, "timeline": False, "max_duration_s": 600.0}
MODEL = {"uri": "models:/genre-crnn/1", "version": "genre-crnn/1", "labels": list(GENRES)}


def _run(music: Path, out: Path, net, run_id: str) -> tuple[dict, dict]:
    planned = engine.plan_run([str(music)], out, MODEL, run_id, chunk_size=2)
    counts = []
    with LibraryStore(store_path(out)) as store:
        for chunk in planned["chunks"]:
            c = engine.score_files(chunk, net, store, MODEL, run_id, OPTIONS, out / "s3-cache")
            counts.append(dict(c) | {"started": 0.0, "finished": 1.0})
    summary, _, paths = engine.export_run(out, MODEL, planned, counts)
    return planned, summary | {"paths": sorted(p.relative_to(out).as_posix() for p in paths)}


def test_a_run_scores_new_files_and_a_rerun_does_no_work_twice(write_tone, tmp_path) -> None:
    for i in range(3):
        write_tone(f"music/t{i}.wav", 220.0 * (i + 1), seconds=2.0)
    (tmp_path / "music" / "notes.txt").write_text("not audio")
    net = build_model(PipelineConfig.from_options(architecture="crnn-attention")).eval()
    out = tmp_path / "scores"
    planned, summary = _run(tmp_path / "music", out, net, "run-1")
    assert (planned["files"], planned["todo"], len(planned["chunks"])) == (4, 4, 2)
    assert summary["counts"] == {"scored": 3, "unchanged": 0, "failed": 1} and summary["errors"] == 0
    assert summary["paths"] == ["library.csv", "library.jsonl", "runs/run-1/results.csv", "runs/run-1/results.jsonl"]
    again, summary = _run(tmp_path / "music", out, net, "run-2")
    assert again["todo"] == 0 and summary["counts"] == {"scored": 0, "unchanged": 4, "failed": 0}


def test_tag_policy_skips_s3_and_uncertain_tracks() -> None:
    s3 = {"path": "s3://b/a.mp3", "uncertain": False, "probability": 0.9, "genre": "rock"}
    assert engine.tag_decision(s3, "Rock", "write", ["s3://b"]) == "skipped: S3 objects are not tagged"
    unsure = {"path": "/m/a.mp3", "uncertain": True, "probability": 0.41, "genre": "rock"}
    assert engine.tag_decision(unsure, "Rock", "write", ["/m"]) == "skipped: uncertain (0.41)"


def _tagged_library(music: Path) -> dict[str, Path]:
    """Real files of three formats: one with the user's own genre, one without, one with a blank genre tag."""
    from tests.scoring.test_tags import set_tags, write_audio

    music.mkdir()
    files = {"own": music / "own.mp3", "none": music / "none.flac", "blank": music / "blank.m4a"}
    for path in files.values():
        write_audio(path)
    set_tags(files["own"], "Rock & Roll", "mine")
    set_tags(files["none"], None, "untagged")
    set_tags(files["blank"], " ", "blank genre")
    return files


def _scored(path: Path, genre: str = "jazz") -> dict:
    return {"path": str(path), "uncertain": False, "probability": 0.9, "genre": genre}


def test_fill_missing_keeps_a_users_genre_byte_for_byte_and_fills_the_others(tmp_path) -> None:
    files = _tagged_library(tmp_path / "music")
    before = files["own"].read_bytes()
    decide = {
        k: engine.tag_decision(_scored(p), "Jazz", "fill-missing", [str(tmp_path / "music")]) for k, p in files.items()
    }
    assert decide == {"own": "kept-existing: Rock & Roll", "none": "written: Jazz", "blank": "written: Jazz"}
    assert files["own"].read_bytes() == before
    assert [tags.read_genre(p) for p in files.values()] == ["Rock & Roll", "Jazz", "Jazz"]


def test_write_and_dry_run_record_the_genre_they_replace(tmp_path) -> None:
    files = _tagged_library(tmp_path / "music")
    roots = [str(tmp_path / "music")]
    before = files["own"].read_bytes()
    assert engine.tag_decision(_scored(files["own"]), "Jazz", "dry-run", roots) == (
        "dry-run: would write Jazz (now: Rock & Roll)"
    )
    assert (
        engine.tag_decision(_scored(files["none"]), "Jazz", "dry-run", roots) == "dry-run: would write Jazz (now: none)"
    )
    assert files["own"].read_bytes() == before
    assert engine.tag_decision(_scored(files["own"]), "Jazz", "write", roots) == "written: Jazz (replaced: Rock & Roll)"
    assert tags.read_genre(files["own"]) == "Jazz"
    assert engine.tag_decision(_scored(files["own"]), "Jazz", "write", roots) == "written: Jazz"  # already carries it


def test_tag_outcome_round_trips_through_its_status_text() -> None:
    for outcome in (
        tags.TagOutcome("written", "Hip-Hop", "Rap (live)"),
        tags.TagOutcome("written", "Jazz"),
        tags.TagOutcome("kept-existing", existing="Rock & Roll"),
        tags.TagOutcome("dry-run", "Jazz", "Rock"),
        tags.TagOutcome("dry-run", "Jazz"),
        tags.TagOutcome("skipped", "uncertain (0.41)"),
        tags.TagOutcome("failed", "OSError: disk full"),
    ):
        assert tags.TagOutcome.parse(outcome.status) == outcome, outcome.status
    assert tags.TagOutcome.parse(None) == tags.TagOutcome("off")


def test_tag_files_records_each_decision_and_a_rerun_keeps_the_replaced_value(tmp_path) -> None:
    from scoring.library import LibraryFile
    from scoring.results import write_results

    files = _tagged_library(tmp_path / "music")
    roots = [str(tmp_path / "music")]
    with LibraryStore(tmp_path / "library.sqlite") as store:
        for path in files.values():
            st = path.stat()
            row = {"status": "scored", "genre": "jazz", "probability": 0.9, "uncertain": False}
            store.record(LibraryFile(str(path), st.st_size, st.st_mtime_ns), None, MODEL, "run-1", row)
        store.mark_seen([str(p) for p in files.values()], MODEL["version"], "run-1")
        counts = engine.tag_files(store, MODEL["version"], "run-1", "write", roots)
        assert counts == {"written": 3}
        again = engine.tag_files(store, MODEL["version"], "run-1", "fill-missing", roots)
        assert again == {}  # nothing to do twice: what was written stays recorded
        rows = store.results()
    (path,) = write_results(rows, tmp_path / "results", labels=GENRES, formats="csv")
    table = {Path(r["path"]).name: r for r in csv.DictReader(path.open(newline=""))}
    assert (table["own.mp3"]["tag_action"], table["own.mp3"]["tag_existing"]) == ("written", "Rock & Roll")
    assert table["own.mp3"]["tag_status"] == "written: Jazz (replaced: Rock & Roll)"
    assert (table["none.flac"]["tag_action"], table["none.flac"]["tag_existing"]) == ("written", "")
