"""End-to-end: train-flow on a slice of real GTZAN audio against a temporary SQLite MLflow store."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from crnn import GENRES
from crnn.requests import TrainRequest

pytestmark = pytest.mark.slow

FAST = {"epochs": 1, "batch_size": 32, "patience": 1}


@pytest.fixture
def gtzan_slice(gtzan_mini: Path, tmp_path: Path) -> Path:
    """3 real tracks per genre (symlinks) plus a corrupt file and a macOS resource fork."""
    root = tmp_path / "slice" / "genres"
    for genre in GENRES:
        (root / genre).mkdir(parents=True)
        for src in sorted((gtzan_mini / genre).glob("*.wav"))[:3]:
            (root / genre / src.name).symlink_to(src)
    (root / "jazz" / "jazz.00054.wav").write_bytes(b"RIFF" + np.random.default_rng(0).bytes(4000))
    (root / "blues" / "._blues.00000.wav").write_bytes(b"\x00\x05\x16\x07" + b"\x00" * 60)
    return root.parent


def test_train_flow_registers_a_champion_and_reuses_features(
    prefect_harness, mlflow_store, gtzan_slice, gtzan_mini, tmp_path
):
    """One training (and a second run on its feature cache) checked from the run to the served champion."""
    from flows.train_flow import train_flow

    first = train_flow(TrainRequest(source=str(gtzan_slice), work_dir=str(tmp_path / "work"), **FAST))

    client = MlflowClient()
    run = client.get_run(first["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["features.n_mels"] == "96" and run.data.params["split.method_used"] == "stratified"
    assert run.data.params["data.tracks"] == "30" and run.data.params["data.excluded"] == "2"
    assert run.data.params["device.used"] == "cpu" and run.data.params["train.seed"] == "42"
    assert "mlflow.source.git.commit" in run.data.tags
    assert {"test/track_accuracy", "test/macro_f1", "test/segment_accuracy", "val/accuracy"} <= set(run.data.metrics)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == [1]
    assert {i.dataset.name for i in run.inputs.dataset_inputs} == {"gtzan-train", "gtzan-val", "gtzan-test"}
    assert run.info.run_name == f"musicnn-linear-stratified-{run.info.run_id[:8]}"
    assert run.data.tags["architecture"] == "musicnn-linear" and run.data.tags["prefect.flow_run_id"]
    assert not any("/precision/" in m or "/recall/" in m for m in run.data.metrics)  # one table, not 20 metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}  # the root: what the compare view lists
    assert {"confusion_matrix.png", "reliability_diagram.png", "per_genre.csv", "per_genre.json"} <= artifacts
    table = client.download_artifacts(run.info.run_id, "per_genre.json", str(tmp_path))
    assert '"genre"' in Path(table).read_text() and "rock" in Path(table).read_text()
    exclusions = pd.read_csv(
        tmp_path
        / "work"
        / "manifests"
        / next(iter(p.name for p in (tmp_path / "work" / "manifests").iterdir()))
        / "exclusions.csv"
    )
    assert {Path(p).name for p in exclusions["path"]} == {"jazz.00054.wav", "._blues.00000.wav"}

    champion = client.get_model_version_by_alias("genre-crnn", "champion")
    assert str(champion.version) == "1" and champion.run_id == first["run_id"]
    assert champion.tags["architecture"] == "musicnn-linear" and champion.tags["split"] == "stratified"
    assert float(champion.tags["test/macro_f1"]) == pytest.approx(run.data.metrics["test/macro_f1"], abs=1e-4)
    assert first["registry"]["reason"] == "v1 is the first version: promoted to champion"
    assert first["features"]["computed"] == 30

    # A second run with another seed: features come from the cache; the new test split holds
    # tracks the champion trained on, so the two cannot be compared and the champion stays.
    second = train_flow(TrainRequest(source=str(gtzan_slice), work_dir=str(tmp_path / "work"), seed=7, **FAST))
    assert second["features"] == second["features"] | {"computed": 0, "cached": 30}
    decision = second["registry"]
    assert decision["version"] == "2" and not decision["promoted"]
    assert "champion kept: champion v1 trained or validated on" in decision["reason"]
    assert str(client.get_model_version_by_alias("genre-crnn", "challenger").version) == "2"
    assert str(client.get_model_version_by_alias("genre-crnn", "champion").version) == "1"
    assert client.get_run(second["run_id"]).data.tags["registry.decision"] == decision["reason"]
    _champion_scores_paths_and_waveforms(gtzan_mini)


def _champion_scores_paths_and_waveforms(gtzan_mini: Path) -> None:
    """The registered champion, loaded as a pyfunc, gives the same scores for a file and for its waveform."""
    from mlflow.exceptions import MlflowException

    from crnn.audio import load_audio
    from infra.genre_model import paths_allowed

    model = mlflow.pyfunc.load_model("models:/genre-crnn@champion")
    track = gtzan_mini / "rock" / "rock.00009.wav"
    # Server files only when allowed (the loaded model's own copy of InvalidModelInput, an MlflowException)
    with pytest.raises(MlflowException, match="'path' input is disabled"):
        model.predict(pd.DataFrame({"path": [str(track)]}))
    with paths_allowed(gtzan_mini):
        by_path = model.predict(pd.DataFrame({"path": [str(track)]}))
    wave = load_audio(track, 22050)
    by_wave = model.predict(pd.DataFrame({"waveform": [wave.astype(np.float64)], "sample_rate": [22050]}))
    probs = [f"prob_{g}" for g in GENRES]
    assert list(by_path.columns) == ["genre", *probs]
    assert by_path[probs].sum(axis=1).iloc[0] == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(by_path[probs].to_numpy(), by_wave[probs].to_numpy(), atol=1e-5)
    assert by_path["genre"].iloc[0] == by_wave["genre"].iloc[0] in GENRES


def test_mlflow_run_main_entry_point(mlflow_store, gtzan_slice, tmp_path):
    """README's `mlflow run .` (main) trains in the project's uv-built environment into one run of `genre-crnn`."""
    import subprocess

    from tests.conftest import ROOT, readme_command, user_shell_env

    command = readme_command("mlflow run . --env-manager uv --experiment-name genre-crnn -P source=")
    command = command.replace("source=../shared/data/gtzan_mini", f"source={gtzan_slice}")  # a smaller slice
    command += f" -P work_dir={tmp_path / 'work'} -P epochs=1 -P patience=1"
    client = MlflowClient()
    exp = client.create_experiment("genre-crnn", artifact_location=(tmp_path / "artifacts").as_uri())
    # no PREFECT_API_URL, as a user runs it: the command starts and stops its temporary Prefect server
    env = user_shell_env(PREFECT_HOME=str(tmp_path / "prefect"))
    done = subprocess.run(["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = client.search_runs([exp])
    assert run.info.status == "FINISHED" and run.data.tags["mlflow.project.env"] == "uv"
    assert run.data.params["epochs"] == "1" and run.data.params["train.epochs"] == "1"  # MLproject's and ours
    assert "test/track_accuracy" in run.data.metrics and run.data.tags["registry.version"] == "1"

    # README's `mlflow models predict`: the registered model in an environment built from its own requirements
    import json

    t = np.arange(4 * 16000) / 16000
    tone = {"columns": ["waveform", "sample_rate"], "data": [[(0.1 * np.sin(2 * np.pi * 440 * t)).tolist(), 16000]]}
    (tmp_path / "clips.json").write_text(json.dumps({"dataframe_split": tone}))
    predict = readme_command("mlflow models predict -m models:/genre-crnn@champion")
    predict = predict.replace("-i clips.json", f"-i {tmp_path / 'clips.json'}")  # the user's file
    done = subprocess.run(["bash", "-c", predict], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "scoring with torch" not in done.stderr  # onnxruntime is in the model's environment: its classifier ran
    (row,) = json.loads(done.stdout[done.stdout.index("{") :])["predictions"]
    probs = [row[f"prob_{g}"] for g in GENRES]
    assert row["genre"] in GENRES and all(np.isfinite(probs)) and sum(probs) == pytest.approx(1.0, abs=1e-4)
