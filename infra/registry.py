"""MLflow Model Registry adapter: log the pyfunc model, register it, champion/challenger aliases."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types.schema import Array, ColSpec, Schema

from crnn import GENRES

log = logging.getLogger(__name__)

MODEL_NAME = "genre-crnn"
CHAMPION, CHALLENGER = "champion", "challenger"
SELECTION_METRIC = "test/track_accuracy"
_PROJECT_ROOT = Path(__file__).resolve().parent.parent


def signature() -> ModelSignature:
    """Input: ``path`` or ``waveform`` + ``sample_rate`` (Hz); output: ``genre`` and ``prob_<genre>``."""
    inputs = Schema(
        [
            ColSpec("string", "path", required=False),
            ColSpec(Array("double"), "waveform", required=False),
            ColSpec("long", "sample_rate", required=False),
        ]
    )
    outputs = Schema([ColSpec("string", "genre")] + [ColSpec("double", f"prob_{g}") for g in GENRES])
    return ModelSignature(inputs=inputs, outputs=outputs)


def input_example() -> pd.DataFrame:
    """One 1.5 s, 8 kHz waveform (a 440 Hz tone): small, and exercises resampling."""
    t = np.arange(12000) / 8000
    return pd.DataFrame({"waveform": [0.1 * np.sin(2 * np.pi * 440 * t)], "sample_rate": [8000]})


def pip_requirements() -> list[str]:
    """Pinned runtime requirements of the served model (versions of this environment)."""
    from importlib.metadata import version

    pkgs = ["torch", "torchaudio", "numpy", "pandas", "soundfile", "librosa", "mlflow"]
    return [f"{p}=={version(p)}" for p in pkgs]


def log_model(run_id: str, checkpoint: str | Path) -> str:
    """Log the pyfunc model (code: ``crnn/``; artifact: the checkpoint) to the run; return its URI."""
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(_PROJECT_ROOT / "infra" / "genre_model.py"),
            artifacts={"checkpoint": str(checkpoint)},
            code_paths=[str(_PROJECT_ROOT / "crnn")],
            signature=signature(),
            input_example=input_example(),
            pip_requirements=pip_requirements(),
        )
    return info.model_uri


@dataclass(frozen=True)
class Decision:
    """Outcome of champion/challenger: the new version, whether it was promoted, and why."""

    version: str
    promoted: bool
    challenger_score: float
    champion_version: str | None
    champion_score: float | None
    reason: str


def _champion(client: MlflowClient, name: str):
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def register_and_promote(
    model_uri: str,
    run_id: str,
    score: float,
    split_digest: str,
    rescore_champion: Callable[[str], float],
    name: str = MODEL_NAME,
) -> Decision:
    """Register ``model_uri`` (alias ``challenger``) and promote it to ``champion`` if it earns it.

    It is promoted when its ``score`` (test track accuracy) beats the champion's on the same
    split, or when there is no champion.

    The champion's score is read from its version tags when they were measured on the same split
    (``split_digest``); otherwise ``rescore_champion(model_uri)`` measures it on this split.
    """
    client = MlflowClient()
    version = str(mlflow.register_model(model_uri, name).version)
    tags = {"run_id": run_id, SELECTION_METRIC: f"{score:.6f}", "split_digest": split_digest}
    for k, v in tags.items():
        client.set_model_version_tag(name, version, k, v)
    client.set_registered_model_alias(name, CHALLENGER, version)
    current = _champion(client, name)
    if current is None:
        decision = Decision(version, True, score, None, None, "no champion yet")
    else:
        if current.tags.get("split_digest") == split_digest and SELECTION_METRIC in current.tags:
            champ_score, how = float(current.tags[SELECTION_METRIC]), "recorded on the same split"
        else:
            champ_score, how = rescore_champion(f"models:/{name}/{current.version}"), "re-scored on this split"
        better = score > champ_score
        verdict = "beats" if better else "does not beat"
        reason = f"{SELECTION_METRIC} {score:.4f} {verdict} champion v{current.version}'s {champ_score:.4f} ({how})"
        decision = Decision(version, better, score, str(current.version), champ_score, reason)
    if decision.promoted:
        client.set_registered_model_alias(name, CHAMPION, version)
    client.set_model_version_tag(name, version, "promotion_decision", decision.reason)
    log.info("model %s v%s: %s", name, version, decision.reason)
    return decision


def decision_dict(decision: Decision) -> dict:
    """Plain-dict form for logging."""
    return asdict(decision)
