"""Open and close the MLflow run that every training task logs into, and link it with its Prefect flow run."""

from __future__ import annotations

import os
import platform

from prefect import runtime, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.utilities.urls import url_for

from crnn.config import PipelineConfig, flatten
from infra import tracking
from infra.redact import redact
from infra.tracking import PREFECT_FLOW_RUN_TAG, PREFECT_FLOW_RUN_URL_TAG
from tasks import task_logger


def prefect_tags() -> dict[str, str]:
    """Tags linking an MLflow run to the Prefect flow run in progress; ``{}`` outside a flow.

    Its id, and its UI page when ``$PREFECT_API_URL`` names a server (a temporary local API is gone
    after the run: no URL).
    """
    flow_run_id = runtime.flow_run.id
    if not flow_run_id:
        return {}
    tags = {PREFECT_FLOW_RUN_TAG: str(flow_run_id)}
    if os.environ.get("PREFECT_API_URL") and (url := url_for("flow-run", obj_id=flow_run_id)):
        tags[PREFECT_FLOW_RUN_URL_TAG] = url
    return tags


def announce_run(run_id: str, key: str, title: str) -> None:
    """Log where the MLflow run is and leave it as a Prefect artifact under ``key`` (lowercase, digits, dashes).

    A link artifact to the run's UI page when tracking goes to an ``http(s)://`` server, else a Markdown
    artifact naming the (redacted) tracking URI and the run id (``mlflow ui`` shows it from there).
    """
    url = tracking.run_url(run_id)
    if url:
        task_logger().info("%s: MLflow run %s", title, url)
        if runtime.flow_run.id:
            create_link_artifact(url, link_text=f"{title}: MLflow run {run_id}", key=key, description=title)
        return
    store = redact(tracking.configure_tracking())
    task_logger().info("%s: MLflow run %s in %s", title, run_id, store)
    if runtime.flow_run.id:
        markdown = f"**{title}**: MLflow run `{run_id}` in tracking store `{store}` (open it with `mlflow ui`)."
        create_markdown_artifact(markdown, key=key, description=title)


@task(name="start-mlflow-run")
def start_mlflow_run(
    cfg: PipelineConfig, source: str, experiment: str, split: dict, dataset: dict, features: dict, device: str
) -> str:
    """Create the run ``<architecture>-<split>-<short id>``; log the split datasets; return the run id.

    Params: the flattened config, data facts and environment; tags: architecture, split and the
    Prefect flow run. Its address goes to the Prefect log and an artifact (:func:`announce_run`).
    """
    import torch  # a training run has it loaded; batch scoring imports this module without needing it

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
        "architecture": cfg.model.architecture,
        "split": split["method"],
    } | prefect_tags()
    name = f"{cfg.model.architecture}-{split['method']}"
    run_id = tracking.start_run(experiment, name, params, tags, short_id=True)
    tracking.log_split_datasets(run_id, split["table"], source)
    tracking.log_artifact(run_id, split["table"], tracking.SPLIT_ARTIFACT_DIR)
    tracking.log_artifact(run_id, dataset["exclusions"], tracking.SPLIT_ARTIFACT_DIR)
    announce_run(run_id, f"mlflow-run-{cfg.model.architecture}", f"train-flow {name}")
    return run_id


@task(name="end-mlflow-run")
def end_mlflow_run(run_id: str, status: str = "FINISHED") -> None:
    """Mark the run finished (or failed)."""
    tracking.configure_tracking()
    tracking.end_run(run_id, status)
