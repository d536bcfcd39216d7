"""batch-score-flow end to end: its MLflow run and library report on tiny synthetic audio (fast); real tracks
transcoded into every supported format, with broken files (slow)."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from bench.transcode import ALL_FORMATS, BROKEN_FILES, transcode, write_broken
from crnn.audio import load_audio
from crnn.requests import ScoreRequest
from flows.batch_score_flow import batch_score_flow
from infra import registry
from scoring import tags

ROOT = Path(__file__).resolve().parents[1]
TRACKS = ("blues.00000", "classical.00001", "metal.00002")
BROKEN = BROKEN_FILES
N_GOOD = len(TRACKS) * (1 + len(ALL_FORMATS))  # the WAV and one copy per other format


@pytest.fixture(scope="module")
def library_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    mini = Path(os.environ.get("GENRE_CRNN_SHARED", ROOT.parent / "shared")) / "data" / "gtzan_mini" / "genres"
    if not mini.is_dir():
        pytest.skip(f"real data not found at {mini}")
    root = tmp_path_factory.mktemp("library")
    for track in TRACKS:
        transcode(mini / track.split(".")[0] / f"{track}.wav", root / "music" / track.split(".")[0])
    write_broken(root / "music" / "incoming", root / "music" / "blues" / "blues.00000.wav")
    return root / "music"


@pytest.fixture
def library(library_template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the transcoded library (tests tag and modify files)."""
    return Path(shutil.copytree(library_template, tmp_path / "music", symlinks=True))


def _score(library: Path, out: Path, **options) -> dict:
    return batch_score_flow(ScoreRequest(library=[str(library)], output_dir=str(out), **options))


def _rows(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "library.csv").set_index("path")


@pytest.mark.slow
def test_every_format_is_scored_and_every_bad_file_has_a_reason(prefect_harness, use_champion, library, tmp_path):
    out = tmp_path / "scores"
    result = _score(library, out, timeline=True, formats=["csv", "jsonl", "parquet"])

    assert result["model_version"] == "genre-crnn/1"
    assert result["counts"] == {"scored": N_GOOD, "unchanged": 0, "failed": len(BROKEN)}
    rows = _rows(out)
    assert len(rows) == N_GOOD + len(BROKEN) and not any(".DS_Store" in p for p in rows.index)
    for name, reason in BROKEN.items():
        row = rows.loc[str(library / "incoming" / name)]
        assert row.status == "failed" and reason in row.reason, (name, row.reason)
    scored = rows[rows.status == "scored"]
    assert (scored.model_version == "genre-crnn/1").all() and scored.reason.isna().all()
    for track in TRACKS:
        same = scored[[Path(p).name.startswith(track + ".") for p in scored.index]]
        assert len(same) == 1 + len(ALL_FORMATS)
        probs = same[[c for c in same.columns if c.startswith("prob_")]].to_numpy()
        wav = same.loc[str(library / track.split(".")[0] / f"{track}.wav")]
        # Every codec, channel layout and rate gives about the same answer as the original WAV.
        assert np.abs(probs - probs[list(same.index).index(wav.name)]).max() < 0.15, track
        top_two = wav.top_k.split()[:2]  # the small test model's top genres can be close: allow either
        assert all(any(t.startswith(g + ":") for t in top_two) for g in same.genre), same.genre.to_dict()
        assert np.allclose(same.duration_s, 30.0, atol=0.1) and (same.n_segments == wav.n_segments).all()

    run_dir = out / "runs" / result["run_id"]
    assert {p.name for p in run_dir.iterdir()} == {"results.csv", "results.jsonl", "results.parquet", "timeline.csv"}
    jsonl = pd.read_json(run_dir / "results.jsonl", lines=True)
    first = jsonl[jsonl.status == "scored"].iloc[0]
    assert len(first.top_k) == 3 and first.top_k[0]["genre"] == first.genre
    assert len(first.timeline) == first.n_segments and first.timeline[-1]["end_s"] <= first.duration_s + 1e-6
    assert len(pd.read_parquet(run_dir / "results.parquet")) == len(rows)


@pytest.mark.slow
def test_rerun_scores_only_new_or_changed_files(prefect_harness, use_champion, library, tmp_path):
    out = tmp_path / "scores"
    _score(library, out)
    again = _score(library, out)
    assert again["counts"] == {"scored": 0, "unchanged": N_GOOD + len(BROKEN), "failed": 0}

    touched = library / "blues" / "blues.00000.flac"
    os.utime(touched, ns=(time.time_ns(), time.time_ns() + 10**9))  # new mtime, same bytes
    changed = library / "metal" / "metal.00002.wav"
    shutil.copy(library / "classical" / "classical.00001.wav", changed)  # new content
    shutil.copy(library / "blues" / "blues.00000.mp3", library / "incoming" / "new.mp3")
    third = _score(library, out)
    assert third["counts"] == {"scored": 2, "unchanged": N_GOOD + len(BROKEN) - 1, "failed": 0}
    rows = _rows(out)
    assert rows.loc[str(changed)].genre == rows.loc[str(library / "classical" / "classical.00001.wav")].genre
    assert rows.loc[str(touched)].run_id != third["run_id"]  # not rescored, only its mtime recorded
    assert len(pd.read_csv(out / "runs" / third["run_id"] / "results.csv")) == 2

    retried = _score(library, out, retry_failed=True)
    assert retried["counts"] == {"scored": 0, "unchanged": N_GOOD + 1, "failed": len(BROKEN)}


@pytest.mark.slow
def test_a_new_champion_rescores_the_library(prefect_harness, use_champion, library, tmp_path):
    out = tmp_path / "scores"
    _score(library, out)
    client = MlflowClient()
    v1 = client.get_model_version_by_alias(registry.MODEL_NAME, "champion")
    v2 = mlflow.register_model(v1.source, registry.MODEL_NAME).version
    client.set_registered_model_alias(registry.MODEL_NAME, "champion", v2)
    try:
        result = _score(library, out)
    finally:
        client.set_registered_model_alias(registry.MODEL_NAME, "champion", v1.version)
    assert result["model_version"] == f"genre-crnn/{v2}"
    assert result["counts"]["scored"] == N_GOOD and result["counts"]["unchanged"] == 0
    assert (_rows(out).model_version == f"genre-crnn/{v2}").all()
    # The old version's rows stay in the store: pinning v1 again costs nothing.
    pinned = _score(library, out, model_uri="models:/genre-crnn/1")
    assert pinned["counts"]["scored"] == 0 and pinned["model_version"] == "genre-crnn/1"


@pytest.mark.slow
def test_genre_tags_are_written_only_on_request_and_never_touch_the_audio(
    prefect_harness, use_champion, library, tmp_path
):
    out = tmp_path / "scores"
    audio = {p: load_audio(p, 22050) for p in library.rglob("*.*") if p.parent.name == "metal"}
    dry = _score(library, out, tags="dry-run")
    assert dry["counts"]["scored"] == N_GOOD
    assert all(tags.read_genre(p) is None for p in audio if p.suffix != ".au")  # dry run wrote nothing

    written = _score(library, out, tags="write")
    assert written["counts"]["scored"] == 0  # tagging changes size and mtime, not what needs scoring
    rows = _rows(out)
    for path, before in audio.items():
        row = rows.loc[str(path)]
        if path.suffix == ".au":
            assert row.tag_status.startswith("skipped:") and ("no tag support" in row.tag_status or row.uncertain)
            continue
        if row.uncertain:
            assert row.tag_status.startswith("skipped: uncertain")
            continue
        assert tags.read_genre(path) == tags.GENRE_TAG_VALUES[row.genre] and row.tag_status.startswith("written")
        assert np.array_equal(load_audio(path, 22050), before), path
    assert not [p for p in library.rglob("*") if ".tagging-" in p.name]
    assert _score(library, out)["counts"]["scored"] == 0


@pytest.mark.slow
def test_killed_run_resumes_where_it_stopped(use_champion, library, tmp_path):
    out = tmp_path / "scores"
    cmd = [sys.executable, str(ROOT / "typer_cli.py"), "score", "--library", str(library), "--output-dir", str(out)]
    env = os.environ | {"PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    proc = subprocess.Popen([*cmd, "--chunk-size", "4"], cwd=ROOT, env=env, start_new_session=True)
    store = out / "library.sqlite"
    deadline = time.monotonic() + 240
    done_before = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if store.exists():
            with sqlite3.connect(store, timeout=10) as db:
                try:
                    done_before = db.execute("SELECT COUNT(*) FROM files").fetchone()[0]
                except sqlite3.OperationalError:
                    done_before = 0
            if done_before >= 8:
                break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    with sqlite3.connect(store, timeout=10) as db:
        done_before = db.execute("SELECT COUNT(*) FROM files").fetchone()[0]
    assert 8 <= done_before < N_GOOD + len(BROKEN), "kill the run part-way"

    finished = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    rows = _rows(out)
    assert len(rows) == N_GOOD + len(BROKEN)
    with sqlite3.connect(store) as db:
        first_run = db.execute(
            "SELECT COUNT(*) FROM files WHERE run_id = (SELECT run_id FROM runs ORDER BY started_at LIMIT 1)"
        ).fetchone()[0]
    assert first_run == done_before  # nothing the killed run finished was scored again


@pytest.mark.slow
def test_s3_library(prefect_harness, use_champion, library, tmp_path, s3):
    s3.create_bucket(Bucket="music")
    for path in [
        library / "blues" / "blues.00000.mp3",
        library / "blues" / "blues.00000.m4a",
        library / "incoming" / "garbage.mp3",
    ]:
        s3.upload_file(str(path), "music", f"lib/{path.parent.name}/{path.name}")
    out = tmp_path / "scores"
    first = batch_score_flow(
        ScoreRequest(library=["s3://music/lib"], output_dir=str(out), results_uri="s3://music/results")
    )
    assert first["counts"] == {"scored": 2, "unchanged": 0, "failed": 1}
    published = {o["Key"] for o in s3.list_objects_v2(Bucket="music", Prefix="results/")["Contents"]}
    assert {
        "results/library.csv",
        "results/library.jsonl",
        f"results/runs/{first['run_id']}/results.csv",
    } <= published
    rows = _rows(out)
    assert set(rows.index) == {
        "s3://music/lib/blues/blues.00000.mp3",
        "s3://music/lib/blues/blues.00000.m4a",
        "s3://music/lib/incoming/garbage.mp3",
    }
    assert batch_score_flow(ScoreRequest(library=["s3://music/lib"], output_dir=str(out)))["counts"]["scored"] == 0


@pytest.mark.slow
def test_mlflow_run_score_entry_point(use_champion, library, tmp_path):
    """README's `mlflow run . -e score` labels a library in the project's uv-built environment."""
    from tests.conftest import readme_command, user_shell_env

    out = tmp_path / "scores"
    command = readme_command("mlflow run . --env-manager uv --experiment-name genre-crnn -e score")
    command = command.replace("library=$HOME/Music", f"library={library / 'classical'}").replace("top_k=5", "top_k=2")
    command += f" -P output_dir={out}"
    env = user_shell_env(PREFECT_HOME=str(tmp_path / "prefect"))
    done = subprocess.run(["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = _rows(out)
    assert len(rows) == 1 + len(ALL_FORMATS) and (rows.status == "scored").all()
    assert all(len(t.split()) == 2 for t in rows.top_k)


# --- The MLflow run and the library report of every scoring run (tiny synthetic audio, an untrained model) ---


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, str]:
    """A SQLite MLflow store whose ``genre-crnn`` v1 (champion) is an untrained CRNN; ``(uri, folder, logging run)``.

    Logging a model takes ~20 s here, so the tests of this module share one store.
    """
    from crnn import GENRES
    from crnn.config import PipelineConfig
    from crnn.inference import build_model, checkpoint_state
    from crnn.train import save_checkpoint

    root = tmp_path_factory.mktemp("tiny-store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    cfg = PipelineConfig.from_options()
    checkpoint = root / "untrained.pt"
    save_checkpoint(checkpoint_state(build_model(cfg).eval(), cfg), checkpoint)
    client = MlflowClient(uri, uri)
    exp = client.create_experiment("models", artifact_location=(root / "artifacts").as_uri())
    run_id = client.create_run(exp).info.run_id
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        version = mlflow.register_model(registry.log_model(run_id, checkpoint, GENRES), registry.MODEL_NAME).version
        client.set_registered_model_alias(registry.MODEL_NAME, registry.CHAMPION, version)
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
    return uri, root, run_id


@pytest.fixture
def tiny_champion(tiny_store: tuple[str, Path, str], monkeypatch: pytest.MonkeyPatch) -> str:
    """Point MLflow at :func:`tiny_store` (working directory too: new experiments keep artifacts there); the model's run id."""
    uri, root, run_id = tiny_store
    monkeypatch.chdir(root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    monkeypatch.setattr("infra.tracking._USER_REGISTRY_URI", uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    yield run_id
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


@pytest.fixture
def tones(write_tone) -> Path:
    """Three 2 s tones and a text file named .mp3 (a failure with a reason)."""
    for i in range(3):
        write_tone(f"tones/tone{i}.wav", 220.0 * (i + 1), seconds=2.0)
    (write_tone("tones/tone0.wav", 220.0, seconds=2.0).parent / "notes.mp3").write_text("not audio")
    return write_tone("tones/tone0.wav", 220.0, seconds=2.0).parent


def _scoring_runs(out: Path) -> list:
    """The MLflow scoring runs that wrote to ``out``, oldest first."""
    from crnn.requests import SCORING_EXPERIMENT

    exp = MlflowClient().get_experiment_by_name(SCORING_EXPERIMENT)
    query = f"params.`score.output_dir` = '{out}'"
    return MlflowClient().search_runs([exp.experiment_id], query, order_by=["attributes.start_time ASC"])


def _artifacts(run_id: str, folder: str) -> set[str]:
    return {Path(a.path).name for a in MlflowClient().list_artifacts(run_id, folder)}


def test_every_run_is_an_mlflow_run_and_rewrites_the_library_report(prefect_harness, tiny_champion, tones, tmp_path):
    from prefect.artifacts import Artifact

    out = tmp_path / "scores"
    first = _score(tones, out, uncertain_below=0.5)
    second = _score(tones, out, uncertain_below=0.5)
    assert first["counts"] == {"scored": 3, "unchanged": 0, "failed": 1}
    assert second["counts"] == {"scored": 0, "unchanged": 4, "failed": 0}

    runs = _scoring_runs(out)
    assert [r.info.run_id for r in runs] == [first["mlflow_run_id"], second["mlflow_run_id"]]
    for run, result in zip(runs, (first, second)):
        assert run.info.status == "FINISHED" and result["mlflow_status"] == "FINISHED"
        tags, metrics = run.data.tags, run.data.metrics
        assert tags["model.uri"] == "models:/genre-crnn@champion" and tags["model.resolved"] == "genre-crnn/1"
        assert (tags["model.name"], tags["model.version"], tags["model.run_id"]) == ("genre-crnn", "1", tiny_champion)
        assert tags["prefect.flow_run_id"] == result["run_id"]
        assert run.data.params["score.library"] == str(tones) and run.data.params["score.uncertain_below"] == "0.5"
        for k, v in result["counts"].items():
            assert metrics[f"batch/{k}"] == v
        assert metrics["batch/wall_s"] > 0 and "batch/tracks_per_s" in metrics and "batch/uncertain" in metrics
        assert metrics["library/files"] == 4 and metrics["library/scored"] == 3 and metrics["library/failed"] == 1
        assert _artifacts(run.info.run_id, "results") == {"results.csv", "results.jsonl"}
        assert _artifacts(run.info.run_id, "library") == {
            "library_report.md",
            "library_genres.png",
            "library_confidence.png",
        }
    assert runs[0].data.metrics["batch/tracks_per_s"] > 0
    first_table = mlflow.artifacts.download_artifacts(
        run_id=first["mlflow_run_id"], artifact_path="results/results.csv"
    )
    assert len(pd.read_csv(first_table)) == 4  # this run's rows, not the library's

    # The rerun scored nothing, yet its report (file and Prefect artifact) still shows the whole library.
    report = (out / "library_report.md").read_text()
    assert f"by scoring run `{second['run_id']}` (0 new, 4 unchanged, 0 failed)" in report
    assert f"MLflow run `{second['mlflow_run_id']}`" in report
    assert "| 4 | 3 |" in report and "notes.mp3" in report and "![Genres](library_genres.png)" in report
    assert (
        sum(int(line.split("|")[2]) for line in report.splitlines() if line.startswith("| ") and "%" in line[-9:]) == 3
    )
    for png in ("library_genres.png", "library_confidence.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert Artifact.get("library-report").data == report
    summary = Artifact.get("batch-score-summary").data
    assert "**0 new, 4 unchanged, 0 failed**" in summary and "## Library: 4 files (genre-crnn/1)" in summary
    with sqlite3.connect(out / "library.sqlite") as db:
        assert db.execute("SELECT mlflow_run_id FROM runs WHERE run_id = ?", (second["run_id"],)).fetchone() == (
            second["mlflow_run_id"],
        )


def test_a_failed_mlflow_upload_keeps_the_batch_and_marks_the_run_failed(
    prefect_harness, tiny_champion, tones, tmp_path, monkeypatch
):
    from infra import tracking

    def unreachable(*args, **kwargs):
        raise ConnectionError("artifact store unreachable")

    monkeypatch.setattr(tracking, "log_artifacts", unreachable)
    out = tmp_path / "scores"
    result = _score(tones, out)
    assert result["counts"]["scored"] == 3 and result["mlflow_status"] == "FAILED"
    assert len(_rows(out)) == 4 and (out / "library_report.md").exists()  # results, store and report are kept
    (run,) = _scoring_runs(out)
    assert run.info.run_id == result["mlflow_run_id"] and run.info.status == "FAILED"
    assert run.data.metrics["batch/scored"] == 3  # what was logged before the failure stays


def test_a_scoring_run_that_fails_closes_its_mlflow_run_failed(prefect_harness, tiny_champion, tmp_path):
    from scoring.library import LibraryError

    out = tmp_path / "scores"
    with pytest.raises(LibraryError):
        _score(tmp_path / "no-such-library", out)
    (run,) = _scoring_runs(out)
    assert run.info.status == "FAILED"
