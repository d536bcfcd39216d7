"""Model registration with champion/challenger promotion."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import mlflow
import pandas as pd
from prefect import task

from infra import registry, tracking
from tasks import task_logger


def test_split_digest(split_table: str) -> str:
    """Content digest of the test split (track ids and audio hashes): equal digests mean the same test set."""
    df = pd.read_csv(split_table)
    test = df[df["split"] == "test"].sort_values("track_id")
    return hashlib.sha256("\n".join(test["track_id"] + ":" + test["sha256"]).encode()).hexdigest()[:16]


def _rescorer(split_table: str):
    df = pd.read_csv(split_table)
    test = df[df["split"] == "test"]

    def rescore(model_uri: str) -> float:
        out = mlflow.pyfunc.load_model(model_uri).predict(pd.DataFrame({"path": test["path"].tolist()}))
        return float((out["genre"].to_numpy() == test["genre"].to_numpy()).mean())

    return rescore


@task(name="register-model", retries=1, retry_delay_seconds=5)
def register_model(
    run_id: str,
    checkpoint: str,
    split_table: str,
    test_metrics: dict,
    out_dir: str,
    model_name: str = registry.MODEL_NAME,
) -> dict:
    """Log the pyfunc model, register a version (alias ``challenger``) and promote it if it beats the champion."""
    tracking.configure_tracking()
    model_uri = registry.log_model(run_id, checkpoint)
    decision = registry.register_and_promote(
        model_uri,
        run_id,
        test_metrics[registry.SELECTION_METRIC],
        test_split_digest(split_table),
        _rescorer(split_table),
        model_name,
    )
    record = registry.decision_dict(decision)
    path = Path(out_dir) / "promotion_decision.json"
    path.write_text(json.dumps(record, indent=2))
    tracking.log_artifact(run_id, path, "registry")
    tracking.set_tags(
        run_id,
        {
            "registry.version": decision.version,
            "registry.promoted": str(decision.promoted),
            "registry.decision": decision.reason,
        },
    )
    task_logger().info("registered %s v%s; %s", model_name, decision.version, decision.reason)
    return {"model_uri": model_uri, "name": model_name, **record}
