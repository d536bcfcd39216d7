"""Open and close the MLflow run that every training task logs into."""

from __future__ import annotations

import platform

import torch
from prefect import task

from crnn.config import PipelineConfig, flatten
from infra import tracking


@task(name="start-mlflow-run")
def start_mlflow_run(
    cfg: PipelineConfig, source: str, experiment: str, split: dict, dataset: dict, features: dict, device: str
) -> str:
    """Create the run with the flattened config, data facts and environment as params; log the split datasets; return the run id."""
    tracking.configure_tracking()
    params = flatten(cfg.to_dict()) | {
        "data.source": source,
        "data.tracks": dataset["n_tracks"],
        "data.excluded": dataset["n_excluded"],
        "split.method_used": split["method"],
        **{f"split.{k}_tracks": v for k, v in split["counts"].items()},
        "device.requested": device,
        "cache.log_mels_computed": features["computed"],
        "cache.log_mels_reused": features["cached"],
        "cache.feature_backend": features["backend"],
    }
    tags = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cuda_available": str(torch.cuda.is_available()),
    }
    run_id = tracking.start_run(experiment, f"train-{cfg.model.rnn_type}-{split['method']}", params, tags)
    tracking.log_split_datasets(run_id, split["table"], source)
    tracking.log_artifact(run_id, split["table"], tracking.SPLIT_ARTIFACT_DIR)
    tracking.log_artifact(run_id, dataset["exclusions"], tracking.SPLIT_ARTIFACT_DIR)
    return run_id


@task(name="end-mlflow-run")
def end_mlflow_run(run_id: str, status: str = "FINISHED") -> None:
    """Mark the run finished (or failed)."""
    tracking.configure_tracking()
    tracking.end_run(run_id, status)
