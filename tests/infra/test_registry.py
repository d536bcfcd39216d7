"""Champion/challenger promotion against a real SQLite model registry."""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from infra import registry


class _Constant(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return pd.DataFrame({"genre": ["rock"] * len(model_input)})


def _logged_model() -> tuple[str, str]:
    with mlflow.start_run() as run:
        info = mlflow.pyfunc.log_model(name="model", python_model=_Constant(), pip_requirements=["mlflow"])
    return info.model_uri, run.info.run_id


def _aliases() -> dict[str, str]:
    client = MlflowClient()
    return {
        a: str(client.get_model_version_by_alias(registry.MODEL_NAME, a).version) for a in ("champion", "challenger")
    }


def test_champion_moves_only_to_a_better_version_on_the_same_split(mlflow_store) -> None:
    rescored: list[str] = []

    def rescore(uri: str) -> float:
        rescored.append(uri)
        return 0.5

    first = registry.register_and_promote(*_logged_model(), score=0.6, split_digest="A", rescore_champion=rescore)
    assert first.promoted and first.reason == "no champion yet"
    assert _aliases() == {"champion": "1", "challenger": "1"}

    worse = registry.register_and_promote(*_logged_model(), score=0.55, split_digest="A", rescore_champion=rescore)
    assert not worse.promoted and worse.champion_score == pytest.approx(0.6)
    assert "recorded on the same split" in worse.reason
    assert _aliases() == {"champion": "1", "challenger": "2"}

    tie = registry.register_and_promote(*_logged_model(), score=0.6, split_digest="A", rescore_champion=rescore)
    assert not tie.promoted  # it must beat the champion, not equal it

    better = registry.register_and_promote(*_logged_model(), score=0.7, split_digest="A", rescore_champion=rescore)
    assert better.promoted and _aliases() == {"champion": "4", "challenger": "4"}
    assert rescored == []  # every comparison so far used the recorded score

    other_split = registry.register_and_promote(
        *_logged_model(), score=0.52, split_digest="B", rescore_champion=rescore
    )
    assert rescored == ["models:/genre-crnn/4"] and "re-scored on this split" in other_split.reason
    assert other_split.promoted  # 0.52 beats the champion's 0.5 on split B
    tags = MlflowClient().get_model_version(registry.MODEL_NAME, other_split.version).tags
    assert tags["split_digest"] == "B" and tags["promotion_decision"] == other_split.reason


def test_signature_accepts_paths_or_waveforms() -> None:
    names = {c.name: c.required for c in registry.signature().inputs.inputs}
    assert names == {"path": False, "waveform": False, "sample_rate": False}
    outputs = [c.name for c in registry.signature().outputs.inputs]
    assert outputs[0] == "genre" and len(outputs) == 11
