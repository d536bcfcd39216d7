"""Tests for scoring.engine without Prefect: plan, score, export on tiny synthetic audio; the tag policy."""

from __future__ import annotations

from pathlib import Path

from crnn import GENRES
from crnn.config import PipelineConfig
from crnn.inference import build_model
from scoring import engine
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
