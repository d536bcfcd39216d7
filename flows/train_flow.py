"""``train-flow``: download -> split -> log-mel features -> training (any zoo architecture) -> test evaluation -> registration."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, unmapped

from crnn.requests import TrainRequest
from flows.parameters import Deployed
from flows.runners import task_runner
from tasks.download import download_dataset
from tasks.evaluate import evaluate_test
from tasks.features import compute_log_mels, plan_log_mels, summarize_log_mels
from tasks.pretrained import prepare_pretrained
from tasks.register import register_model
from tasks.split import split_tracks
from tasks.tracking import end_mlflow_run, start_mlflow_run
from tasks.train import train_crnn

FEATURE_THREADS = 2
"""compute-log-mels tasks that run at once in the flow's process (without Dask)."""


@flow(name="train-flow", log_prints=True, task_runner=task_runner(FEATURE_THREADS))
def train_flow(request: Deployed[TrainRequest]) -> dict:
    """Train, evaluate and register one zoo architecture; return the run id, test metrics and the registry decision.

    Feature fields left at ``None`` take the architecture's seed preprocessing
    (its entry in ``crnn.catalog.ZOO``).
    """
    cfg = request.pipeline_config()
    source, device, backend = request.source, request.device, request.feature_backend
    work = Path(request.work_dir)
    layout = request.options("source_layout", "label_map", "min_tracks_per_label")
    dataset = download_dataset(source, str(work), request.sha256, **layout)
    split_info = split_tracks(dataset["manifest"], cfg.split, str(Path(dataset["manifest"]).parent))
    cfg = cfg.with_labels(split_info["labels"])  # the classes come from the data
    planned = plan_log_mels(split_info["table"], cfg.features, str(work / "features"))
    chunks = compute_log_mels.map(
        planned["chunks"],
        cfg=unmapped(cfg.features),
        cache_root=unmapped(str(work / "features")),
        backend=unmapped(backend),
        device=unmapped(device),
    )
    features = summarize_log_mels(planned, chunks, backend, device)
    weights = prepare_pretrained(cfg, str(work))
    run_id = start_mlflow_run(cfg, source, request.experiment, split_info, dataset, features, device)
    run_dir = str(work / "runs" / run_id)
    try:
        trained = train_crnn(split_info["table"], str(work / "features"), cfg, run_id, run_dir, device, weights)
        metrics = evaluate_test(
            split_info["table"], str(work / "features"), trained["checkpoint"], run_id, run_dir, device
        )
        registered = register_model(
            run_id, trained["checkpoint"], split_info["table"], metrics, run_dir, request.model_name
        )
    except BaseException:
        end_mlflow_run(run_id, "FAILED")
        raise
    end_mlflow_run(run_id)
    return {"run_id": run_id, "features": features, "training": trained, "test": metrics, "registry": registered}
