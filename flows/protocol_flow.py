"""``protocol-flow``: one model under the evaluation protocol (cross-artist + stratified k-fold), in nested MLflow runs."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, unmapped

from crnn.config import PipelineConfig, zoo_entry
from crnn.requests import ProtocolRequest
from flows.parameters import Deployed
from flows.runners import task_runner
from tasks.download import download_dataset
from tasks.evaluate import evaluate_test
from tasks.features import compute_log_mels, plan_log_mels, summarize_log_mels
from tasks.pretrained import prepare_pretrained
from tasks.protocol import (
    evaluate_baseline,
    measure_scoring_speed,
    plan_protocol,
    start_protocol_run,
    summarize_protocol,
    train_baseline,
)
from tasks.tracking import end_mlflow_run
from tasks.train import train_crnn


@flow(name="protocol-evaluation", log_prints=True)
def protocol_evaluation(
    evaluation: dict, cfg: PipelineConfig, model: str, parent_run_id: str, cache_root: str, work_dir: str, context: dict
) -> dict:
    """Train and test one evaluation (cross-artist or one fold) in a nested run; return its test metrics."""
    name, table = evaluation["name"], evaluation["table"]
    run_id = start_protocol_run(cfg, model, context["info"], context["experiment"], parent_run_id, name)
    run_dir = str(Path(work_dir) / "runs" / run_id)
    device = context["device"]
    try:
        if not zoo_entry(model).is_network:
            labels = cfg.model.labels
            trained = train_baseline(table, cache_root, cfg.features, cfg.train.seed, run_id, run_dir, labels)
            test = evaluate_baseline(table, cache_root, trained["checkpoint"], run_id, run_dir, labels)
        else:
            trained = train_crnn(table, cache_root, cfg, run_id, run_dir, device, context["weights"])
            test = evaluate_test(table, cache_root, trained["checkpoint"], run_id, run_dir, device)
        speed = None
        if name == "cross-artist":
            speed = measure_scoring_speed(
                trained["checkpoint"], model, context["manifest"], run_id, device, cfg.model.n_classes
            )
    except BaseException:
        end_mlflow_run(run_id, "FAILED")
        raise
    end_mlflow_run(run_id)
    return {"name": name, "run_id": run_id, "test": test, "training": trained, "speed": speed}


@flow(name="protocol-flow", log_prints=True, task_runner=task_runner(2))
def protocol_flow(request: Deployed[ProtocolRequest]) -> dict:
    """Evaluate ``request.model`` (a zoo architecture or ``mfcc-logreg``): train on ``source``, test on ``cross_artist``, then k-fold.

    The parent MLflow run holds the summary (``cross_artist/*``, ``kfold/*_mean``/``_std``,
    ``train_seconds``, ``speed/tracks_per_s``); each evaluation is a nested run with ``test/*``.
    """
    cfg, model, device, backend = request.pipeline_config(), request.model, request.device, request.feature_backend
    source, cross_artist, folds, val_fraction = (
        request.source,
        request.cross_artist,
        request.folds,
        request.val_fraction,
    )
    work = Path(request.work_dir)
    dataset, cross = download_dataset(source, str(work)), download_dataset(cross_artist, str(work))
    plan = plan_protocol(
        dataset["manifest"], cross["manifest"], folds, val_fraction, request.seed, str(work / "protocol")
    )
    cfg = cfg.with_labels(plan["labels"])  # the classes come from the data
    cache_root = str(work / "features")
    planned = plan_log_mels(plan["all"], cfg.features, cache_root)
    chunks = compute_log_mels.map(
        planned["chunks"], cfg=unmapped(cfg.features), cache_root=unmapped(cache_root),
        backend=unmapped(backend), device=unmapped(device),
    )  # fmt: skip
    summarize_log_mels(planned, chunks, backend, device)
    info = {"source": source, "cross_artist": cross_artist, "folds": folds, "val_fraction": val_fraction}
    info |= {"tracks": plan["tracks"], "cross_artist_clips": plan["cross_tracks"], "device": device}
    parent = start_protocol_run(cfg, model, info, request.experiment)
    context = {"info": info, "experiment": request.experiment, "device": device, "manifest": dataset["manifest"]}
    context["weights"] = prepare_pretrained(cfg, str(work)) if zoo_entry(model).is_network else None
    try:
        results = [
            protocol_evaluation(ev, cfg, model, parent, cache_root, str(work), context) for ev in plan["evaluations"]
        ]
        summary = summarize_protocol(parent, model, results, str(work / "protocol"))
    except BaseException:
        end_mlflow_run(parent, "FAILED")
        raise
    end_mlflow_run(parent)
    return summary
