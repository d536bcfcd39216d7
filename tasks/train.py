"""Training of any zoo architecture with per-epoch MLflow metrics."""

from __future__ import annotations

import time
from pathlib import Path

from prefect import task
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from crnn.config import PipelineConfig
from crnn.inference import build_model, checkpoint_state
from crnn.models import count_parameters
from crnn.train import SegmentDataset, fit, resolve_device, save_checkpoint, seed_everything
from infra import tracking
from tasks import task_logger
from tasks.features import load_split_features


def progress_key(architecture: str) -> str:
    """Key of the training progress artifact, so the Prefect Artifacts page lists it.

    One key per architecture; each training adds a version under it.
    """
    return f"train-progress-{architecture}"


@task(name="train-crnn")
def train_crnn(
    split_table: str,
    cache_root: str,
    cfg: PipelineConfig,
    run_id: str,
    out_dir: str,
    device: str = "auto",
    pretrained_weights: str | None = None,
) -> dict:
    """Train on the train split with early stopping on val; log ``train/*``, ``val/*`` per epoch; return the checkpoint path.

    ``pretrained_weights`` (from prepare-pretrained-weights) is loaded into the model first.
    """
    tracking.configure_tracking()
    logger = task_logger()
    dev = resolve_device(device)
    seed_everything(cfg.train.seed)
    train_x, train_y, _ = load_split_features(split_table, cache_root, cfg.features, "train", cfg.model.labels)
    val_x, val_y, _ = load_split_features(split_table, cache_root, cfg.features, "val", cfg.model.labels)
    train_set = SegmentDataset(train_x, train_y, cfg.features, jitter=True)
    val_set = SegmentDataset(val_x, val_y, cfg.features)
    model = build_model(cfg)
    if pretrained_weights:
        model.load_pretrained(pretrained_weights)
    tracking.log_params(
        run_id,
        {
            "device.used": str(dev),
            "model.parameters": count_parameters(model),
            "data.train_segments": len(train_set),
            "data.val_segments": len(val_set),
        },
    )

    progress = create_progress_artifact(
        0.0,
        key=progress_key(cfg.model.architecture),
        description=f"train-crnn {cfg.model.architecture}, MLflow run {run_id}: epochs of {cfg.train.epochs} "
        "(early stopping may end sooner)",
    )
    start = time.perf_counter()

    def on_epoch_end(epoch: int, metrics: dict[str, float]) -> None:
        tracking.log_metrics(run_id, metrics, step=epoch)
        update_progress_artifact(progress, 100.0 * epoch / cfg.train.epochs)
        per_epoch = (time.perf_counter() - start) / epoch
        values = " ".join(f"{k}={v:.4f}" for k, v in metrics.items())
        logger.info(
            "epoch %d/%d (%.0f s/epoch, at most %.0f s left): %s",
            epoch,
            cfg.train.epochs,
            per_epoch,
            per_epoch * (cfg.train.epochs - epoch),
            values,
        )

    result = fit(model, train_set, val_set, cfg.train, device=dev, on_epoch_end=on_epoch_end)
    seconds = time.perf_counter() - start
    update_progress_artifact(progress, 100.0)
    checkpoint = Path(out_dir) / "best.pt"
    save_checkpoint(checkpoint_state(model.cpu(), cfg), checkpoint)
    summary = {
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "epochs_run": len(result.history),
        "train_seconds": round(seconds, 1),
    }
    tracking.log_params(run_id, {f"train.result.{k}": v for k, v in summary.items()})
    tracking.log_metrics(
        run_id,
        {
            "best/val_loss": result.best_metrics["val/loss"],
            "best/val_accuracy": result.best_metrics["val/accuracy"],
            "calibration/temperature": result.temperature,
        },
    )
    logger.info("training done in %.1f s; best epoch %d", seconds, result.best_epoch)
    return {"checkpoint": str(checkpoint), "parameters": count_parameters(model), **summary}
