"""``train-flow``: download -> split -> log-mel features -> training (any zoo architecture) -> test evaluation -> registration."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, unmapped

from crnn.config import ModelConfig, PipelineConfig, SplitConfig, TrainConfig
from flows.runners import task_runner
from infra.registry import MODEL_NAME
from infra.sources import GTZAN_URL
from infra.tracking import DEFAULT_EXPERIMENT
from tasks.download import download_dataset
from tasks.evaluate import evaluate_test
from tasks.features import compute_log_mels, plan_log_mels, summarize_log_mels
from tasks.pretrained import prepare_pretrained
from tasks.register import register_model
from tasks.split import split_tracks
from tasks.tracking import end_mlflow_run, start_mlflow_run
from tasks.train import train_crnn

_M, _T, _S = ModelConfig(), TrainConfig(), SplitConfig()
FEATURE_THREADS = 2
"""compute-log-mels tasks that run at once in the flow's process (without Dask)."""
RUN_OPTIONS = frozenset({"source", "sha256", "work_dir", "device", "feature_backend", "experiment", "model_name"})
"""train-flow parameters that are not part of the frozen :class:`PipelineConfig`."""


@flow(name="train-flow", log_prints=True, task_runner=task_runner(FEATURE_THREADS))
def train_flow(
    source: str = GTZAN_URL,
    sha256: str = "",
    work_dir: str = "work",
    split: str = _S.method,
    val_fraction: float = _S.val_fraction,
    test_fraction: float = _S.test_fraction,
    architecture: str = _M.architecture,
    sample_rate: int | None = None,
    n_fft: int | None = None,
    hop_length: int | None = None,
    n_mels: int | None = None,
    segment_s: float | None = None,
    overlap_s: float | None = None,
    max_segments: int | None = None,
    rnn_type: str = _M.rnn_type,
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
    model_name: str = MODEL_NAME,
) -> dict:
    """Train, evaluate and register one zoo architecture; return the run id, test metrics and the registry decision.

    Feature parameters left at ``None`` take the architecture's seed preprocessing
    (its entry in ``crnn.catalog.ZOO``).
    """
    options = {k: v for k, v in locals().items() if k not in RUN_OPTIONS}
    cfg = PipelineConfig.from_options(**options)  # every other parameter is a config field
    work = Path(work_dir)
    dataset = download_dataset(source, str(work), sha256)
    split_info = split_tracks(dataset["manifest"], cfg.split, str(Path(dataset["manifest"]).parent))
    cfg = cfg.with_labels(split_info["labels"])  # the classes come from the data
    planned = plan_log_mels(split_info["table"], cfg.features, str(work / "features"))
    chunks = compute_log_mels.map(
        planned["chunks"],
        cfg=unmapped(cfg.features),
        cache_root=unmapped(str(work / "features")),
        backend=unmapped(feature_backend),
        device=unmapped(device),
    )
    features = summarize_log_mels(planned, chunks, feature_backend, device)
    weights = prepare_pretrained(cfg, str(work))
    run_id = start_mlflow_run(cfg, source, experiment, split_info, dataset, features, device)
    run_dir = str(work / "runs" / run_id)
    try:
        trained = train_crnn(split_info["table"], str(work / "features"), cfg, run_id, run_dir, device, weights)
        metrics = evaluate_test(
            split_info["table"], str(work / "features"), trained["checkpoint"], run_id, run_dir, device
        )
        registered = register_model(run_id, trained["checkpoint"], split_info["table"], metrics, run_dir, model_name)
    except BaseException:
        end_mlflow_run(run_id, "FAILED")
        raise
    end_mlflow_run(run_id)
    return {"run_id": run_id, "features": features, "training": trained, "test": metrics, "registry": registered}
