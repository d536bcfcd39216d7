"""Model registration with champion/challenger promotion."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from prefect import task

from crnn.inference import checkpoint_labels
from infra import registry, tracking
from tasks import task_logger


@task(name="register-model")  # no retries: registering twice would create a second version
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
    labels = checkpoint_labels(checkpoint)
    model_uri = registry.log_model(run_id, checkpoint, labels)
    table = pd.read_csv(split_table)
    score = test_metrics[registry.SELECTION_METRIC]
    test = table[table["split"] == "test"]
    decision = registry.register_and_promote(model_uri, run_id, score, test, model_name, labels)
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
