"""``protocol-flow``: one model under the evaluation protocol (cross-artist + stratified k-fold), in nested MLflow runs."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, unmapped

from crnn.config import (
    ModelConfig,
    PipelineConfig,
    SplitConfig,
    TrainConfig,
    protocol_config,
    zoo_entry,
)
from flows.runners import task_runner
from infra.tracking import DEFAULT_EXPERIMENT
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

_M, _T, _S = ModelConfig(), TrainConfig(), SplitConfig()
TRAIN_SOURCE = "../shared/data/gtzan_mini"
"""The training collection on these machines: GTZAN tracks 00000-00012 of every genre (few artists)."""
CROSS_ARTIST_SOURCE = "../shared/data/gtzan_excerpts"
"""The cross-artist clips on these machines: 2-3 s excerpts of GTZAN tracks 00031-00040 (mostly other artists)."""


RUN_OPTIONS = frozenset(
    {"source", "cross_artist", "work_dir", "model", "folds", "device", "feature_backend", "experiment"}
)
"""protocol-flow parameters that are not part of the evaluated model's :class:`PipelineConfig`."""


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
def protocol_flow(
    source: str = TRAIN_SOURCE,
    cross_artist: str = CROSS_ARTIST_SOURCE,
    work_dir: str = "work",
    model: str = _M.architecture,
    folds: int = 5,
    val_fraction: float = _S.val_fraction,
    sample_rate: int | None = None,
    n_fft: int | None = None,
    hop_length: int | None = None,
    n_mels: int | None = None,
    segment_s: float | None = None,
    overlap_s: float | None = None,
    max_segments: int | None = None,
    epochs: int = _T.epochs,
    batch_size: int = _T.batch_size,
    learning_rate: float = _T.learning_rate,
    patience: int = _T.patience,
    freq_mask: int = _T.freq_mask,
    time_mask: int = _T.time_mask,
    mixup_alpha: float = _T.mixup_alpha,
    pretrained: str = _M.pretrained,
    pretrained_lr_scale: float = _T.pretrained_lr_scale,
    seed: int = _T.seed,
    device: str = "auto",
    feature_backend: str = "auto",
    experiment: str = DEFAULT_EXPERIMENT,
) -> dict:
    """Evaluate ``model`` (a zoo architecture or ``mfcc-logreg``): train on ``source``, test on ``cross_artist``, then k-fold.

    The parent MLflow run holds the summary (``cross_artist/*``, ``kfold/*_mean``/``_std``,
    ``train_seconds``, ``speed/tracks_per_s``); each evaluation is a nested run with ``test/*``.
    """
    options = {k: v for k, v in locals().items() if k not in RUN_OPTIONS}
    cfg = protocol_config(model, **options)
    work = Path(work_dir)
    dataset, cross = download_dataset(source, str(work)), download_dataset(cross_artist, str(work))
    plan = plan_protocol(dataset["manifest"], cross["manifest"], folds, val_fraction, seed, str(work / "protocol"))
    cfg = cfg.with_labels(plan["labels"])  # the classes come from the data
    cache_root = str(work / "features")
    planned = plan_log_mels(plan["all"], cfg.features, cache_root)
    chunks = compute_log_mels.map(
        planned["chunks"], cfg=unmapped(cfg.features), cache_root=unmapped(cache_root),
        backend=unmapped(feature_backend), device=unmapped(device),
    )  # fmt: skip
    summarize_log_mels(planned, chunks, feature_backend, device)
    info = {"source": source, "cross_artist": cross_artist, "folds": folds, "val_fraction": val_fraction}
    info |= {"tracks": plan["tracks"], "cross_artist_clips": plan["cross_tracks"], "device": device}
    parent = start_protocol_run(cfg, model, info, experiment)
    context = {"info": info, "experiment": experiment, "device": device, "manifest": dataset["manifest"]}
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
