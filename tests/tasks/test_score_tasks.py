"""The scoring tasks' own rules, called through ``.fn`` on tiny synthetic audio with a random model."""

from __future__ import annotations

from pathlib import Path

import pytest

from crnn.config import PipelineConfig
from crnn.inference import build_model, checkpoint_state
from crnn.train import save_checkpoint
from infra.library import scan_library
from infra.library_store import LibraryStore
from tasks import score

OPTIONS = {"top_k": 3, "uncertain_below": 0.5, "timeline": False, "max_duration_s": 600.0}


@pytest.fixture
def model(tmp_path: Path) -> dict:
    cfg = PipelineConfig()
    path = tmp_path / "model.pt"
    save_checkpoint(checkpoint_state(build_model(cfg).eval(), cfg), path)
    return {"uri": "models:/genre-crnn/1", "version": "genre-crnn/1", "checkpoint": str(path)}


@pytest.fixture
def library(write_tone) -> Path:
    for i in range(3):
        write_tone(f"music/tone{i}.wav", 220.0 * (i + 1), seconds=2.0)
    return Path(write_tone("music/tone0.wav", 220.0, seconds=2.0)).parent


def _plan(library: Path, out: Path, model: dict, **kw) -> dict:
    args = {"options": OPTIONS, "chunk_size": 10, "retry_failed": False, "rescore": False} | kw
    return score.plan_scoring.fn([str(library)], str(out), model, **args)


def _chunk(planned: dict, out: Path, model: dict) -> dict:
    counts = score.score_chunk.fn(planned["chunks"][0], model, str(out), planned["run_id"], OPTIONS, "cpu")
    return {k: v for k, v in counts.items() if k not in ("started", "finished")}


def test_a_file_that_vanishes_mid_run_is_not_recorded_and_is_tried_again(library, model, tmp_path) -> None:
    out = tmp_path / "scores"
    planned = _plan(library, out, model)
    (library / "tone1.wav").unlink()  # listed, then gone before its chunk reads it
    assert _chunk(planned, out, model) == {"scored": 2, "errors": 1}
    with LibraryStore(out / "library.sqlite") as store:
        assert {Path(r["path"]).name for r in store.results()} == {"tone0.wav", "tone2.wav"}


def test_bad_options_fail_before_any_file_is_touched(library, model, tmp_path) -> None:
    with pytest.raises(ValueError, match="top_k"):
        _plan(library, tmp_path / "scores", model, options=OPTIONS | {"top_k": 0})
    with LibraryStore(tmp_path / "scores" / "library.sqlite") as store:
        assert store.results() == []


def test_rescore_plans_every_file_again(library, model, tmp_path) -> None:
    out = tmp_path / "scores"
    _chunk(_plan(library, out, model), out, model)
    assert _plan(library, out, model)["todo"] == 0
    again = _plan(library, out, model, rescore=True)
    assert again["todo"] == 3 and _chunk(again, out, model) == {"scored": 3}


def test_files_gone_from_the_library_drop_out_of_its_listing(library, model, tmp_path) -> None:
    out = tmp_path / "scores"
    _chunk(_plan(library, out, model), out, model)
    (library / "tone2.wav").unlink()
    planned = _plan(library, out, model)
    with LibraryStore(out / "library.sqlite") as store:
        listed = store.results(model_version=model["version"], seen_run=planned["run_id"])
    assert sorted(Path(r["path"]).name for r in listed) == ["tone0.wav", "tone1.wav"]
    assert len(scan_library([str(library)])) == 2


def test_too_short_audio_is_a_recorded_failure(write_tone, model, tmp_path) -> None:
    short = write_tone("short/blip.wav", 440.0, seconds=0.3)
    out = tmp_path / "scores"
    planned = _plan(short.parent, out, model)
    assert _chunk(planned, out, model) == {"failed": 1}
    with LibraryStore(out / "library.sqlite") as store:
        (row,) = store.results()
    assert row["status"] == "failed" and "shorter than min_segment_s" in row["reason"]
