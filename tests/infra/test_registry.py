"""Champion/challenger promotion against a real SQLite model registry."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient

from crnn import GENRES
from infra import registry


class _AlwaysRock(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return pd.DataFrame({"genre": ["rock"] * len(model_input)})


def _split(train: list[str], test: list[tuple[str, str]]) -> pd.DataFrame:
    """A split table: train tracks by name, test tracks as (name, genre)."""
    rows = [(t, "rock", "train", f"/audio/{t}.wav", f"sha-{t}") for t in train]
    rows += [(t, g, "test", f"/audio/{t}.wav", f"sha-{t}") for t, g in test]
    return pd.DataFrame(rows, columns=["track_id", "genre", "split", "path", "sha256"])


def _register(split: pd.DataFrame, score: float, tmp_path) -> registry.Decision:
    with mlflow.start_run() as run:
        info = mlflow.pyfunc.log_model(name="model", python_model=_AlwaysRock(), pip_requirements=["mlflow"])
        table = tmp_path / "split-stratified-x.csv"
        split.to_csv(table, index=False)
        mlflow.log_artifact(str(table), registry.SPLIT_ARTIFACT_DIR)
    test = split[split["split"] == "test"]
    return registry.register_and_promote(info.model_uri, run.info.run_id, score, test, registry.MODEL_NAME, GENRES)


def _aliases() -> dict[str, str]:
    client = MlflowClient()
    return {
        a: str(client.get_model_version_by_alias(registry.MODEL_NAME, a).version) for a in ("champion", "challenger")
    }


def test_champion_moves_only_to_a_better_version_on_the_same_split(mlflow_store, tmp_path) -> None:
    a = _split(["a1", "a2"], [("t1", "rock"), ("t2", "blues")])
    first = _register(a, 0.6, tmp_path)
    assert first.promoted and first.reason == "v1 is the first version: promoted to champion"
    assert _aliases() == {"champion": "1", "challenger": "1"}

    worse = _register(a, 0.55, tmp_path)
    assert not worse.promoted and worse.champion_score == 0.6 and "recorded on the same test split" in worse.reason
    assert _aliases() == {"champion": "1", "challenger": "2"}

    assert not _register(a, 0.6, tmp_path).promoted  # it must beat the champion, not equal it
    better = _register(a, 0.7, tmp_path)
    assert better.promoted and _aliases() == {"champion": "4", "challenger": "4"}
    tags = MlflowClient().get_model_version(registry.MODEL_NAME, better.version).tags
    assert tags["promotion_decision"] == better.reason and tags["split_digest"] == registry.test_split_digest(
        a[a.split == "test"]
    )


def test_another_split_rescores_both_models_only_on_tracks_the_champion_never_saw(mlflow_store, tmp_path) -> None:
    _register(_split(["a1", "a2"], [("t1", "rock"), ("t2", "blues")]), 0.9, tmp_path)

    # New test tracks the champion never trained on: both are re-scored through their pyfunc
    # (both always answer "rock": 1 of 2 right), so the challenger's own 0.99 is not used.
    fresh = _register(_split(["b1"], [("t3", "rock"), ("t4", "jazz")]), 0.99, tmp_path)
    assert "both re-scored" in fresh.reason
    assert (fresh.challenger_score, fresh.champion_score, fresh.promoted) == (0.5, 0.5, False)

    # Test tracks the champion trained on: not comparable, the champion stays.
    leaky = _register(_split(["t1"], [("a1", "rock"), ("a2", "rock")]), 1.0, tmp_path)
    assert not leaky.promoted and leaky.champion_score is None
    assert "trained or validated on 2 of the 2 test tracks" in leaky.reason
    assert _aliases()["champion"] == "1"


def test_signature_accepts_paths_or_waveforms() -> None:
    names = {c.name: c.required for c in registry.signature(GENRES).inputs.inputs}
    assert names == {"path": False, "waveform": False, "sample_rate": False}
    outputs = [c.name for c in registry.signature(GENRES).outputs.inputs]
    assert outputs[0] == "genre" and len(outputs) == 11
    custom = [c.name for c in registry.signature(("hum", "tone", "noise")).outputs.inputs]
    assert custom == ["genre", "prob_hum", "prob_tone", "prob_noise"]


def test_resolve_model_by_alias_version_and_run_uri(mlflow_store, tmp_path) -> None:
    with mlflow.start_run() as run:
        info = mlflow.pyfunc.log_model(
            name="model", python_model=_AlwaysRock(), artifacts={"checkpoint": __file__}, pip_requirements=["mlflow"]
        )
    version = mlflow.register_model(info.model_uri, registry.MODEL_NAME).version
    MlflowClient().set_registered_model_alias(registry.MODEL_NAME, "champion", version)
    by_alias = registry.resolve_model("models:/genre-crnn@champion", tmp_path / "cache")
    assert by_alias["version"] == f"genre-crnn/{version}" and by_alias["uri"] == "models:/genre-crnn@champion"
    assert Path(by_alias["checkpoint"]).read_bytes() == Path(__file__).read_bytes()
    assert registry.resolve_model(f"models:/genre-crnn/{version}", tmp_path / "cache")["version"] == by_alias["version"]
    by_run = registry.resolve_model(f"runs:/{run.info.run_id}/model", tmp_path / "cache")
    assert by_run["version"].startswith(f"runs:/{run.info.run_id}/model#sha256=")
    assert Path(by_run["checkpoint"]).is_file()


def test_a_version_with_other_labels_does_not_replace_a_gtzan_champion(mlflow_store, tmp_path) -> None:
    a = _split(["a1"], [("t1", "rock")])
    _register(a, 0.5, tmp_path)
    with mlflow.start_run() as run:
        info = mlflow.pyfunc.log_model(name="model", python_model=_AlwaysRock(), pip_requirements=["mlflow"])
    labels = ("hum", "tone", "noise")
    other = registry.register_and_promote(
        info.model_uri, run.info.run_id, 1.0, a[a.split == "test"], "genre-crnn", labels
    )
    assert not other.promoted and "predicts other labels" in other.reason and _aliases()["champion"] == "1"
    version = MlflowClient().get_model_version(registry.MODEL_NAME, other.version)
    assert registry.version_labels(version) == ("hum", "tone", "noise")


def test_versions_registered_before_labels_were_tagged_predict_gtzan_genres() -> None:
    assert registry.version_labels(SimpleNamespace(tags={})) == GENRES


def test_a_version_carries_its_architecture_split_metrics_and_the_cross_artist_figure(mlflow_store, tmp_path) -> None:
    """Version tags from the training run, plus the latest finished protocol summary of its architecture."""
    with mlflow.start_run(run_name="protocol") as protocol:
        mlflow.log_param("protocol.model", "cnn-lstm")
        mlflow.set_tag("protocol.evaluation", "summary")
        mlflow.log_metric("cross_artist/accuracy", 0.41)
    with mlflow.start_run() as run:
        mlflow.set_tags({"architecture": "cnn-lstm", "split": "stratified"})
        mlflow.log_metrics({"test/track_accuracy": 0.5, "test/macro_f1": 0.4567891})
        info = mlflow.pyfunc.log_model(name="model", python_model=_AlwaysRock(), pip_requirements=["mlflow"])
    a = _split(["a1"], [("t1", "rock")])
    decision = registry.register_and_promote(
        info.model_uri, run.info.run_id, 0.5, a[a.split == "test"], "genre-crnn", GENRES
    )
    tags = MlflowClient().get_model_version(registry.MODEL_NAME, decision.version).tags
    assert tags["architecture"] == "cnn-lstm" and tags["split"] == "stratified"
    assert tags["test/macro_f1"] == "0.4568" and tags["test/track_accuracy"] == "0.500000"  # the compared score
    assert tags[registry.CROSS_ARTIST_TAG] == "0.4100" and protocol.info.run_id in tags[registry.CROSS_ARTIST_RUN_TAG]
    assert registry.architecture_cross_artist(run.info.experiment_id, "crnn-gru") == {}  # never evaluated: no tag
