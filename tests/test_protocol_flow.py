"""End-to-end: every zoo architecture through train-flow, and protocol-flow's parent/nested MLflow runs, on real audio."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from crnn import GENRES
from crnn.requests import ProtocolRequest, TrainRequest
from infra.genre_model import paths_allowed

pytestmark = pytest.mark.slow

FAST = {"epochs": 1, "batch_size": 32, "patience": 1}


def slice_of(src: Path, dst: Path, per_genre: int) -> Path:
    """``per_genre`` real tracks of every genre of ``src``, as symlinks under ``dst/genres``."""
    for genre in GENRES:
        (dst / "genres" / genre).mkdir(parents=True)
        for track in sorted((src / genre).glob("*.wav"))[:per_genre]:
            (dst / "genres" / genre / track.name).symlink_to(track)
    return dst


@pytest.fixture
def mini_slice(gtzan_mini: Path, tmp_path: Path) -> Path:
    return slice_of(gtzan_mini, tmp_path / "mini", 4)  # 2 folds leave 2 tracks per genre for train + val


@pytest.fixture
def excerpts_slice(gtzan_excerpts: Path, tmp_path: Path) -> Path:
    return slice_of(gtzan_excerpts, tmp_path / "excerpts", 2)


@pytest.fixture(scope="module")
def work_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One work folder for the module's runs: the log-mels are cached by audio SHA-256 and spectral config.

    The protocol runs reuse what the architectures' runs computed for the same tracks (parallel-cnn-bilstm's,
    and crnn-attention's for mfcc-logreg), instead of decoding and transforming them again.
    """
    return tmp_path_factory.mktemp("work")


@pytest.mark.parametrize(
    "architecture", ["musicnn-crnn", "crnn-attention", "choi-crnn", "cnn-lstm", "parallel-cnn-bilstm"]
)
def test_architecture_trains_evaluates_registers_and_scores(
    prefect_harness, mlflow_store, mini_slice, work_dir, architecture: str
) -> None:
    from flows.train_flow import train_flow

    result = train_flow(TrainRequest(source=str(mini_slice), work_dir=str(work_dir), architecture=architecture, **FAST))
    run = MlflowClient().get_run(result["run_id"])
    assert run.data.params["model.architecture"] == architecture
    assert int(run.data.params["model.parameters"]) > 0
    assert {"test/track_accuracy", "test/macro_f1", "val/loss"} <= set(run.data.metrics)
    model = mlflow.pyfunc.load_model(f"models:/genre-crnn/{result['registry']['version']}")
    track = next((mini_slice / "genres" / "rock").glob("*.wav"))
    with paths_allowed(track.resolve().parent):  # the slice's files are symlinks into gtzan_mini
        out = model.predict(pd.DataFrame({"path": [str(track)]}))
    assert out["genre"].iloc[0] in GENRES
    assert abs(sum(out[f"prob_{g}"].iloc[0] for g in GENRES) - 1) < 1e-4


def test_protocol_flow_logs_a_parent_and_nested_runs_with_the_same_names_for_every_model(
    prefect_harness, mlflow_store, mini_slice, excerpts_slice, work_dir, tmp_path
) -> None:
    from flows.protocol_flow import protocol_flow

    client = MlflowClient()
    names = {}
    for model in ("mfcc-logreg", "parallel-cnn-bilstm"):
        summary = protocol_flow(ProtocolRequest(
            source=str(mini_slice), cross_artist=str(excerpts_slice), work_dir=str(work_dir),
            model=model, folds=2, **FAST,
        ))  # fmt: skip
        parent = client.get_run(summary["run_id"])
        assert parent.data.params["protocol.model"] == model and parent.data.params["protocol.folds"] == "2"
        assert "artist-confounded" in parent.data.tags["protocol.kfold"]
        assert 0 <= parent.data.metrics["cross_artist/accuracy"] <= 1
        assert parent.data.metrics["kfold/track_accuracy_std"] >= 0
        assert summary["parameters"] > 0 and summary["speed/tracks_per_s"] > 0
        names[model] = set(parent.data.metrics)
        children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
        assert sorted(c.data.tags["protocol.evaluation"] for c in children) == ["cross-artist", "fold-1", "fold-2"]
        for child in children:
            assert child.info.status == "FINISHED"
            assert {"test/track_accuracy", "test/macro_f1"} <= set(child.data.metrics)
            assert child.info.run_name.startswith(f"{model}-{child.data.tags['protocol.evaluation']}-")
        assert parent.info.run_name.startswith(f"{model}-protocol-")
        cross = next(c for c in children if c.data.tags["protocol.evaluation"] == "cross-artist")
        assert cross.data.metrics["test/track_accuracy"] == parent.data.metrics["cross_artist/accuracy"]
        artifacts = {a.path for a in client.list_artifacts(cross.info.run_id)}
        assert {"confusion_matrix.png", "per_genre.csv", "per_genre.json"} <= artifacts
        predictions = client.download_artifacts(cross.info.run_id, "evaluation/test_predictions.csv", str(tmp_path))
        assert len(Path(predictions).read_text().splitlines()) == 1 + 20  # every excerpt scored, none dropped
    assert names["mfcc-logreg"] == names["parallel-cnn-bilstm"]  # compare view lines up column by column


def test_protocol_refuses_a_cross_artist_set_cut_from_training_tracks(mini_slice, tmp_path) -> None:
    from tasks.download import download_dataset
    from tasks.protocol import plan_protocol

    manifest = download_dataset.fn(str(mini_slice), str(tmp_path / "work"))["manifest"]
    with pytest.raises(ValueError, match="cross-artist clips are .* training tracks"):
        plan_protocol.fn(manifest, manifest, 2, 0.2, 0, str(tmp_path / "plan"))
