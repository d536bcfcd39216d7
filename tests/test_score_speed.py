"""bench.score_speed: the mixed-format library it builds, its summary arithmetic, its errors, and one quick run."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from bench.score_speed import MODES, Measure, agreement, main, summarize
from bench.transcode import mixed_library
from crnn.audio import load_audio
from tests.conftest import ROOT, readme_command, user_shell_env


@pytest.fixture
def sources(tmp_path: Path) -> Path:
    """Three 4 s mono WAVs at 22.05 kHz (a seeded tone plus noise each), in one folder."""
    folder, rng = tmp_path / "sources", np.random.default_rng(0)
    folder.mkdir()
    t = np.arange(4 * 22050) / 22050
    for name, freq in (("blues", 220.0), ("jazz", 440.0), ("rock", 880.0)):
        y = 0.3 * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(t.size)
        sf.write(folder / f"{name}.00000.wav", y.astype(np.float32), 22050)
    return folder


def test_the_library_mixes_formats_and_rates_per_copy_resumes_and_is_cached(sources: Path, tmp_path: Path) -> None:
    wavs = sorted(sources.glob("*.wav"))
    root = tmp_path / "lib"
    manifest = mixed_library(wavs, root, 6, [2], workers=2)
    names = [f["path"] for f in manifest["files"]]
    assert len(names) == 7 and names[-1].startswith("long/")
    copies = [n for n in names if "blues" in n]  # tracks 0 and 3: one source, two different formats
    assert len(copies) == 2 and Path(copies[0]).suffix != Path(copies[1]).suffix
    assert {Path(n).suffix for n in names[:6]} == {".flac", ".mp3", ".m4a", ".wav"}
    rates = set()
    for entry in manifest["files"]:
        path = root / entry["path"]
        with av.open(str(path)) as f:
            rates.add(f.streams.audio[0].rate)
            assert f.streams.audio[0].channels == 2
        assert load_audio(path, 16000).size / 16000 == pytest.approx(entry["seconds"], abs=0.1)
    assert rates == {44100, 48000}
    assert manifest["files"][-1]["seconds"] == pytest.approx(8.0, abs=0.01)  # two 4 s sources
    assert not list(root.rglob(".*"))  # no temporary files left
    (root / names[2]).unlink()  # an interrupted build: one file missing, no manifest yet
    root.with_suffix(".json").unlink()
    mtime = (root / names[0]).stat().st_mtime_ns
    assert mixed_library(wavs, root, 6, [2]) == manifest
    assert (root / names[2]).exists() and (root / names[0]).stat().st_mtime_ns == mtime  # kept, not rewritten
    assert json.loads(root.with_suffix(".json").read_text()) == manifest


def _measure(mode: str, rnd: int, wall: float, genres: dict | None = None) -> Measure:
    files = 0 if mode == "startup" else 4
    rss = 900.0 if mode in ("startup", "score") else float("nan")
    return Measure("m", mode, rnd, files, files, 120.0 * bool(files), wall, rss, genres or {})


def test_summary_takes_medians_and_ratios_of_tracks_per_second() -> None:
    walls = {"startup": 5.0, "score": 2.0, "core": 1.0, "naive": 8.0, "decode": 0.5}
    score = {"a": "jazz", "b": "rock", "c": "pop", "d": "rock"}
    naive = {"a": "jazz", "b": "rock", "c": "jazz", "d": "rock"}
    measures = [
        _measure(mode, rnd, wall * (1, 3, 1.1)[rnd], {"score": score, "core": score, "naive": naive}.get(mode))
        for rnd in range(3)
        for mode, wall in walls.items()
    ]
    rows, ratios = summarize(measures)
    by_mode = {r["mode"]: r for r in rows}
    assert list(by_mode) == list(MODES)
    assert by_mode["score"]["wall_s"] == 2.2 and by_mode["score"]["tracks_per_s"] == round(4 / 2.2, 2)
    assert by_mode["score"]["realtime_x"] == round(120 / 2.2, 1) and by_mode["score"]["peak_rss_mb"] == 900
    assert by_mode["startup"]["tracks_per_s"] is None and by_mode["core"]["peak_rss_mb"] is None
    (r,) = ratios
    assert r["startup_s"] == 5.5
    assert (r["score_vs_naive"], r["score_vs_core"], r["core_vs_decode"]) == (4.0, 0.5, 0.5)
    assert (r["same_genre_score_naive"], r["same_genre_score_core"]) == (0.75, 1.0)
    assert agreement({}, naive) == 0.0


def test_errors_are_one_line_and_name_the_option(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--skip-build", "--work-dir", str(tmp_path), "--architectures", "crnn-attention"])
    assert "--skip-build: no library built in" in str(exc.value.code)
    with pytest.raises(SystemExit):
        main(["--architectures", "crnn-attention,nope"])
    assert "--architectures: unknown nope" in capsys.readouterr().err


@pytest.mark.slow
def test_the_readme_command_in_quick_mode_times_every_mode(sources: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    options = f" --quick --architectures crnn-attention --source {sources} --work-dir {tmp_path / 'w'} --out {out}"
    cmd = readme_command("-m bench.score_speed") + options
    done = subprocess.run(cmd, shell=True, cwd=ROOT, env=user_shell_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ratios of tracks/s" in done.stdout and "Traceback" not in done.stderr
    with open(out / "score_speed.csv") as f:
        rows = {r["mode"]: r for r in csv.DictReader(f)}
    assert list(rows) == list(MODES)
    for mode in ("score", "core", "naive", "decode"):
        assert rows[mode]["files"] == rows[mode]["scored"] == "7", rows[mode]
        assert float(rows[mode]["tracks_per_s"]) > 0 and float(rows[mode]["realtime_x"]) > 0
    assert float(rows["startup"]["wall_s"]) > 0 and rows["startup"]["tracks_per_s"] == ""  # no files, no speed
    assert 100 < float(rows["score"]["peak_rss_mb"]) < 8000  # torch alone is more than 100 MiB
    with open(out / "score_speed_ratios.csv") as f:
        (ratios,) = csv.DictReader(f)
    assert float(ratios["same_genre_score_core"]) == 1.0  # same functions, same checkpoint
    assert 0 <= float(ratios["same_genre_score_naive"]) <= 1
    assert "| score |" in (out / "score_speed.md").read_text()
