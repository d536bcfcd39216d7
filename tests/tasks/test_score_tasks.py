"""The scoring tasks' own rules, called through ``.fn`` on tiny synthetic audio with a random model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from crnn.config import PipelineConfig
from crnn.inference import build_model, checkpoint_state
from crnn.train import save_checkpoint
from scoring.library import scan_library
from scoring.store import LibraryStore
from tasks import score

OPTIONS = {"top_k": 3, "uncertain_below": 0.5, "timeline": False, "max_duration_s": 600.0}


@pytest.fixture
def model(tmp_path: Path) -> dict:
    cfg = PipelineConfig.from_options(architecture="crnn-attention")
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


def test_tag_writing_refuses_unsafe_files_and_goes_on_after_an_error(write_tone, model, tmp_path, monkeypatch) -> None:
    """Streaming WAV, hardlink and symlink out of the library are skipped with a reason; an error is recorded."""
    import struct

    from scoring import tags

    music = tmp_path / "music"
    for name in ("good", "stream", "hard", "boom"):
        write_tone(f"music/{name}.wav", 330.0, seconds=2.0)
    data = bytearray((music / "stream.wav").read_bytes())
    data[4:8] = struct.pack("<I", 0xFFFFFFFF)  # streaming header: RIFF size unknown
    (music / "stream.wav").write_bytes(bytes(data))
    (tmp_path / "elsewhere").mkdir()
    os.link(music / "hard.wav", tmp_path / "elsewhere" / "hard.wav")
    outside = write_tone("elsewhere/target.wav", 330.0, seconds=2.0)
    (music / "link.wav").symlink_to(outside)
    stale = music / ".good.tagging-ab12cd_9.wav"
    stale.write_bytes(b"left by a killed run")
    before = {p: p.read_bytes() for p in (music / "stream.wav", outside, music / "hard.wav")}

    real_write = tags.write_genre

    def flaky(path, genre, **kw):
        if Path(path).name == "boom.wav":
            raise RuntimeError("disk on fire")
        return real_write(path, genre, **kw)

    monkeypatch.setattr(tags, "write_genre", flaky)
    out = tmp_path / "scores"
    planned = _plan(music, out, model)
    confident = OPTIONS | {"uncertain_below": 0.0}
    score.score_chunk.fn(planned["chunks"][0], model, str(out), planned["run_id"], confident, "cpu")
    counts = score.write_genre_tags.fn(str(out), model, planned["run_id"], "write", [str(music)])

    with LibraryStore(out / "library.sqlite") as store:
        status = {Path(r["path"]).name: r["tag_status"] for r in store.results()}
    assert status["good.wav"].startswith("written: ")
    assert "unknown size" in status["stream.wav"] and status["stream.wav"].startswith("skipped")
    assert "hardlinked (2 links)" in status["hard.wav"]
    assert "outside the library" in status["link.wav"]
    assert status["boom.wav"] == "failed: RuntimeError: disk on fire"
    assert counts == {"written": 1, "skipped": 3, "failed": 1}
    assert all(p.read_bytes() == b for p, b in before.items())
    assert (music / "hard.wav").stat().st_nlink == 2 and not stale.exists()


def test_fifo_device_text_and_1_hz_files_are_failed_rows(write_tone, model, tmp_path) -> None:
    """Non-regular files fail before opening, a 1 Hz header and a text .mp3 fail with their reasons; none hangs."""
    import struct

    music = tmp_path / "music"
    write_tone("music/ok.wav", 330.0, seconds=2.0)
    os.mkfifo(music / "pipe.flac")
    (music / "zero.wav").symlink_to("/dev/zero")
    (music / "notes.mp3").write_text("not a song\n" * 50)
    slow = bytearray(write_tone("music/slow.wav", 330.0, seconds=2.0).read_bytes())
    slow[24:28] = struct.pack("<I", 1)
    (music / "slow.wav").write_bytes(bytes(slow))
    out = tmp_path / "scores"
    planned = _plan(music, out, model)
    assert _chunk(planned, out, model) == {"scored": 1, "failed": 4}
    with LibraryStore(out / "library.sqlite") as store:
        reasons = {Path(r["path"]).name: r["reason"] for r in store.results()}
    assert reasons["pipe.flac"] == "not a regular file (a FIFO); not opened"
    assert reasons["zero.wav"] == "not a regular file (a character device); not opened"
    assert "not a decodable audio file" in reasons["notes.mp3"]
    assert "implausible sample rate 1 Hz" in reasons["slow.wav"]


def test_silence_and_dc_files_fail_as_silent_and_are_never_tagged(write_tone, model, tmp_path) -> None:
    """Generated silence, near-silence and DC fail with reason `silent`; a tone and noise are scored and tagged."""
    import numpy as np
    import soundfile as sf

    music, rate = tmp_path / "music", 44100
    music.mkdir()
    n = 2 * rate
    rng = np.random.default_rng(0)
    signals = {
        "silence.wav": np.zeros(n),
        "hush.flac": rng.normal(0, 3e-5, n),
        "dc.wav": np.full(n, 0.25),
        "noise.wav": rng.uniform(-0.3, 0.3, n),
    }
    for name, y in signals.items():
        sf.write(music / name, y.astype(np.float32), rate, subtype="PCM_24")
    write_tone("music/tone.wav", 440.0, seconds=2.0)
    out = tmp_path / "scores"
    planned = _plan(music, out, model)
    confident = OPTIONS | {"uncertain_below": 0.0}
    score.score_chunk.fn(planned["chunks"][0], model, str(out), planned["run_id"], confident, "cpu")
    score.write_genre_tags.fn(str(out), model, planned["run_id"], "write", [str(music)])
    with LibraryStore(out / "library.sqlite") as store:
        rows = {Path(r["path"]).name: r for r in store.results()}
    for name in ("silence.wav", "hush.flac", "dc.wav"):
        assert rows[name]["status"] == "failed" and rows[name]["reason"].startswith("silent"), name
        assert rows[name]["genre"] is None and rows[name]["tag_status"] is None, name
    for name in ("noise.wav", "tone.wav"):
        assert rows[name]["status"] == "scored" and rows[name]["tag_status"].startswith("written"), name
