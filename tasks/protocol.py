"""The evaluation protocol's tasks: plan the evaluations, open parent/nested MLflow runs, the baseline, speed, summary."""

from __future__ import annotations

import hashlib
import json
import platform
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from prefect import task

from crnn import protocol
from crnn.audio import load_audio
from crnn.baseline import baseline_segment_probs, fit_baseline, load_baseline, save_baseline
from crnn.config import FeatureConfig, PipelineConfig, flatten, zoo_entry
from crnn.dataset import label_list, read_manifest, write_csv_atomic
from crnn.evaluate import evaluate_segment_probs, scorable
from crnn.features import log_mel_librosa
from crnn.inference import load_checkpoint, predict_file
from crnn.train import resolve_device
from infra import tracking
from tasks import task_logger
from tasks.evaluate import log_evaluation
from tasks.features import load_split_features
from tasks.split import SPLIT_TABLE_COLUMNS
from tasks.tracking import announce_run, prefect_tags

SPEED_TRACKS = 20
"""Whole tracks of the training collection decoded and scored to measure tracks per second."""


def _row(track, split: str) -> tuple:
    return (track.track_id, track.genre, split, track.path, track.sha256, f"{track.duration_s:.3f}")


@task(name="plan-protocol")
def plan_protocol(
    manifest_csv: str, cross_manifest_csv: str, folds: int, val_fraction: float, seed: int, out_dir: str
) -> dict:
    """Write one split table per evaluation (cross-artist, fold-1..k) and one of all tracks; return their paths and the labels."""
    tracks, cross = read_manifest(Path(manifest_csv)), read_manifest(Path(cross_manifest_csv))
    shared = {t.sha256 for t in tracks} & {t.sha256 for t in cross} | {t.track_id for t in tracks} & {
        t.track_id for t in cross
    }
    if shared:
        raise ValueError(
            f"{cross_manifest_csv}: {len(shared)} cross-artist clips are (or are cut from) training tracks, e.g. {sorted(shared)[0]}"
        )
    ids, genres = [t.track_id for t in tracks], [t.genre for t in tracks]
    evaluations = [protocol.cross_artist(ids, genres, val_fraction=val_fraction, seed=seed)]
    evaluations += protocol.kfold(ids, genres, k=folds, val_fraction=val_fraction, seed=seed)
    key = hashlib.sha256(json.dumps([manifest_csv, cross_manifest_csv, folds, val_fraction, seed]).encode()).hexdigest()
    out = Path(out_dir) / f"protocol-{key[:10]}"
    planned = []
    for ev in evaluations:
        rows = [_row(t, ev.assignment[t.track_id]) for t in tracks]
        rows += [_row(t, "test") for t in cross] if ev.name == protocol.CROSS_ARTIST else []
        write_csv_atomic(out / f"{ev.name}.csv", SPLIT_TABLE_COLUMNS, rows)
        planned.append({"name": ev.name, "table": str(out / f"{ev.name}.csv")})
    write_csv_atomic(
        out / "all.csv", SPLIT_TABLE_COLUMNS, [_row(t, "train") for t in tracks] + [_row(t, "test") for t in cross]
    )
    task_logger().info("protocol: %d training tracks, %d cross-artist clips, %d folds", len(tracks), len(cross), folds)
    labels = list(label_list(t.genre for t in tracks + cross))
    return {
        "evaluations": planned,
        "all": str(out / "all.csv"),
        "tracks": len(tracks),
        "cross_tracks": len(cross),
        "labels": labels,
    }


def _params(cfg: PipelineConfig, model: str) -> dict:
    """The flattened config (a classical model: only its features and seed) with ``protocol.model``."""
    data = cfg.to_dict()
    if not zoo_entry(model).is_network:
        data = {"features": data["features"], "train": {"seed": cfg.train.seed}}
    return flatten(data) | {"protocol.model": model}


@task(name="start-protocol-run")
def start_protocol_run(
    cfg: PipelineConfig,
    model: str,
    info: dict,
    experiment: str,
    parent_run_id: str | None = None,
    name: str = "summary",
) -> str:
    """Open the parent run (``parent_run_id=None``) or a nested run for one evaluation; return its id.

    Named ``<model>-protocol-<short id>`` or ``<model>-<evaluation>-<short id>``; tagged with the model
    and the Prefect flow run.
    """
    tracking.configure_tracking()
    params = _params(cfg, model) | {f"protocol.{k}": v for k, v in info.items()}
    tags = {"protocol.evaluation": name, "protocol.kfold": protocol.KFOLD_CAVEAT, "torch": torch.__version__}
    tags |= {"python": platform.python_version(), "machine": platform.processor() or platform.machine()}
    tags |= {"architecture": model, "split": "protocol" if not parent_run_id else name} | prefect_tags()
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id
    run_name = f"{model}-{name}" if parent_run_id else f"{model}-protocol"
    run_id = tracking.start_run(experiment, run_name, params, tags, short_id=True)
    if not parent_run_id:
        announce_run(run_id, f"mlflow-run-protocol-{model}", f"protocol-flow {model}")
    return run_id


@task(name="train-baseline")
def train_baseline(
    split_table: str, cache_root: str, cfg: FeatureConfig, seed: int, run_id: str, out_dir: str, labels: Sequence[str]
) -> dict:
    """Fit the MFCC/log-mel statistics + logistic regression baseline on the train split's segment crops (classes: ``labels``)."""
    tracking.configure_tracking()
    mels, labels, _ = load_split_features(split_table, cache_root, cfg, "train", labels)
    start = time.perf_counter()
    model = fit_baseline(mels, labels, cfg, seed=seed)
    seconds = time.perf_counter() - start
    path = Path(out_dir) / "baseline.pkl"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_baseline(model, cfg, path)
    classifier = model[-1]
    parameters = int(classifier.coef_.size + classifier.intercept_.size)
    tracking.log_params(run_id, {"model.parameters": parameters, "train.result.train_seconds": round(seconds, 1)})
    return {"checkpoint": str(path), "train_seconds": round(seconds, 1), "parameters": parameters}


@task(name="evaluate-baseline")
def evaluate_baseline(
    split_table: str, cache_root: str, checkpoint: str, run_id: str, out_dir: str, names: Sequence[str]
) -> dict:
    """Score the test split with the baseline (classes: ``names``); log the same ``test/*`` metrics and artifacts as evaluate-test."""
    tracking.configure_tracking()
    model, cfg = load_baseline(checkpoint)
    mels, labels, ids = load_split_features(split_table, cache_root, cfg, "test", names)
    scored = scorable(mels, cfg)
    probs = [baseline_segment_probs(model, mels[i], cfg, len(names)) for i in scored]
    result = evaluate_segment_probs(probs, [labels[i] for i in scored], scored, len(names))
    return log_evaluation(result, ids, labels, run_id, out_dir, names)


@task(name="measure-scoring-speed")
def measure_scoring_speed(
    checkpoint: str, model: str, manifest_csv: str, run_id: str, device: str = "auto", n_classes: int = 10
) -> float:
    """Decode and score whole tracks one by one (as batch-score-flow does); log and return ``speed/tracks_per_s``.

    ``n_classes`` is the baseline's output size (a network's comes from its checkpoint).
    """
    tracking.configure_tracking()
    paths = [t.path for t in read_manifest(Path(manifest_csv))][:SPEED_TRACKS]
    if not zoo_entry(model).is_network:
        clf, cfg = load_baseline(checkpoint)

        def score(path: str) -> np.ndarray:
            return baseline_segment_probs(clf, log_mel_librosa(load_audio(path, cfg.sample_rate), cfg), cfg, n_classes)

    else:
        net, _ = load_checkpoint(checkpoint, resolve_device(device))

        def score(path: str) -> np.ndarray:
            return predict_file(net, path)[0]

    score(paths[0])  # warm-up: first-call allocations and kernel selection
    start = time.perf_counter()
    for path in paths:
        score(path)
    speed = len(paths) / (time.perf_counter() - start)
    tracking.log_metrics(run_id, {"speed/tracks_per_s": speed})
    return speed


@task(name="summarize-protocol")
def summarize_protocol(parent_run_id: str, model: str, results: list[dict], out_dir: str) -> dict:
    """Log the summary metrics (cross-artist, k-fold mean and std, training time, speed) to the parent run; return them."""
    tracking.configure_tracking()
    cross = next(r for r in results if r["name"] == protocol.CROSS_ARTIST)
    folds = [r["test"] for r in results if r["name"] != protocol.CROSS_ARTIST]
    summary = protocol.summarize(cross["test"], folds)
    summary |= {"train_seconds": cross["training"]["train_seconds"], "speed/tracks_per_s": cross["speed"]}
    tracking.log_metrics(parent_run_id, summary)
    tracking.log_params(parent_run_id, {"model.parameters": cross["training"]["parameters"]})
    path = Path(out_dir) / f"protocol-{model}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"model": model, "parameters": cross["training"]["parameters"], "folds": len(folds), **summary}
    path.write_text(json.dumps(record, indent=2))
    tracking.log_artifact(parent_run_id, path, "protocol")
    pd.DataFrame([{"evaluation": r["name"], "run_id": r["run_id"], **r["test"]} for r in results]).to_csv(
        Path(out_dir) / f"protocol-{model}-evaluations.csv", index=False
    )
    tracking.log_artifact(parent_run_id, Path(out_dir) / f"protocol-{model}-evaluations.csv", "protocol")
    task_logger().info(
        "%s: cross-artist accuracy %.3f, macro-F1 %.3f; k-fold track accuracy %.3f ± %.3f (artist-confounded)",
        model,
        summary["cross_artist/accuracy"],
        summary["cross_artist/macro_f1"],
        summary["kfold/track_accuracy_mean"],
        summary["kfold/track_accuracy_std"],
    )
    return {"run_id": parent_run_id, **record}
