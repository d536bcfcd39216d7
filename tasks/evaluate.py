"""Test-split evaluation: segment and track accuracy, macro-F1, per-genre report, confusion matrix."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task

from crnn.calibration import expected_calibration_error, reliability, selective_accuracy
from crnn.config import UNCERTAIN_BELOW
from crnn.evaluate import TrackEvaluation, evaluate_tracks
from crnn.inference import load_checkpoint
from crnn.train import resolve_device
from infra import tracking
from tasks import plots, task_logger
from tasks.features import load_split_features


def per_genre_table(report, names: Sequence[str]) -> pd.DataFrame:
    """Per-genre precision, recall, F1 and support as a table (``names``: the class names, in label order)."""
    return pd.DataFrame(
        {
            "genre": list(names),
            "precision": report.precision,
            "recall": report.recall,
            "f1": report.f1,
            "support": report.support,
        }
    )


def calibration_metrics(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """``test/ece``, and at scoring's default threshold ``test/selective_accuracy`` (tags written) and ``test/uncertain_share``."""
    selective, uncertain = selective_accuracy(probs, labels, UNCERTAIN_BELOW)
    return {
        "test/ece": expected_calibration_error(probs, labels),
        "test/selective_accuracy": selective,
        "test/uncertain_share": uncertain,
    }


@task(name="evaluate-test")
def evaluate_test(
    split_table: str, cache_root: str, checkpoint: str, run_id: str, out_dir: str, device: str = "auto"
) -> dict:
    """Score the test split only; log ``test/*`` metrics, the confusion matrix PNG and reports; return the metrics."""
    tracking.configure_tracking()
    model, cfg = load_checkpoint(checkpoint, resolve_device(device))
    names = cfg.model.labels  # the classes the checkpoint predicts
    mels, labels, ids = load_split_features(split_table, cache_root, cfg.features, "test", names)
    return log_evaluation(evaluate_tracks(model, mels, labels, cfg.features), ids, labels, run_id, out_dir, names)


PER_GENRE_CSV, PER_GENRE_TABLE = "per_genre.csv", "per_genre.json"
"""Run artifacts at the root (the compare view lists root files): per-genre precision, recall, F1 and support
as CSV and as an MLflow table; the confusion matrix and reliability diagram sit beside them."""


def log_evaluation(
    result: TrackEvaluation, ids: list[str], labels: list[int], run_id: str, out_dir: str, names: Sequence[str]
) -> dict:
    """Log ``test/*`` metrics (accuracy, macro-F1, calibration), the per-genre table, confusion matrix, reliability diagram, reports.

    ``labels`` are class indices into ``names``. Per-genre precision and recall are one table artifact
    (:data:`PER_GENRE_CSV`, :data:`PER_GENRE_TABLE`), not metrics, so the learning curves lead the run's
    charts; the returned dict still holds them (``test/precision/<genre>``, ``test/recall/<genre>``).
    """
    if len(result.scored) < len(ids):
        task_logger().warning("skipped %d test tracks shorter than min_segment_s", len(ids) - len(result.scored))
    track, segment = result.track, result.segment
    ids, labels = [ids[i] for i in result.scored], [labels[i] for i in result.scored]
    track_pred = result.predictions
    metrics = {
        "test/track_accuracy": track.accuracy,
        "test/macro_f1": track.macro_f1,
        "test/segment_accuracy": segment.accuracy,
        "test/segment_macro_f1": segment.macro_f1,
    }
    metrics |= calibration_metrics(result.probs, np.asarray(labels))
    tracking.log_metrics(run_id, metrics)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    png = plots.confusion_matrix_png(
        track.confusion,
        list(names),
        out / "confusion_matrix.png",
        f"test tracks (n={len(labels)}), accuracy {track.accuracy:.1%}",
    )
    diagram = plots.reliability_png(
        reliability(result.probs, np.asarray(labels)),
        out / "reliability_diagram.png",
        f"test tracks (n={len(labels)}), ECE {metrics['test/ece']:.3f}",
    )
    per_genre = per_genre_table(track, names)
    per_genre.to_csv(out / PER_GENRE_CSV, index=False)
    tracking.log_table(run_id, per_genre, PER_GENRE_TABLE)
    preds = pd.DataFrame(
        {
            "track_id": ids,
            "true": [names[y] for y in labels],
            "predicted": [names[p] for p in track_pred],
            "probability": result.probs.max(axis=1).round(4),
        }
    )
    preds.to_csv(out / "test_predictions.csv", index=False)
    (out / "test_metrics.json").write_text(json.dumps(metrics, indent=2))
    for f in (png, diagram, out / PER_GENRE_CSV):
        tracking.log_artifact(run_id, f)
    for f in (out / "test_predictions.csv", out / "test_metrics.json"):
        tracking.log_artifact(run_id, f, "evaluation")
    task_logger().info(
        "test: track accuracy %.3f, macro-F1 %.3f, segment accuracy %.3f (%d tracks)",
        track.accuracy,
        track.macro_f1,
        segment.accuracy,
        len(labels),
    )
    metrics |= {f"test/precision/{g}": float(p) for g, p in zip(names, track.precision)}
    return metrics | {f"test/recall/{g}": float(r) for g, r in zip(names, track.recall)}
