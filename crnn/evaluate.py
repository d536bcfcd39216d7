"""Evaluation: segment and track predictions, accuracy, macro-F1, per-genre report, confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from crnn.config import FeatureConfig
from crnn.inference import predict_segments  # the one inference path (settings, batching)


@torch.inference_mode()
def track_probs(segment_probs: np.ndarray) -> np.ndarray:
    """Track probabilities: the mean of its segment probabilities, (n_segments, C) -> (C,)."""
    return segment_probs.mean(axis=0)


@dataclass(frozen=True)
class Report:
    """Classification metrics.

    Attributes:
        accuracy: share of correct predictions, in [0, 1].
        macro_f1: unweighted mean of per-class F1, in [0, 1].
        precision, recall, f1: per class, shape (n_classes,); 0 where undefined.
        support: true examples per class, shape (n_classes,).
        confusion: counts, shape (n_classes, n_classes), rows = true class, columns = predicted.
    """

    accuracy: float
    macro_f1: float
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    support: np.ndarray
    confusion: np.ndarray


def classification_report(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> Report:
    """Accuracy, macro-F1, per-class precision/recall/F1 and the confusion matrix.

    Classes absent from both ``y_true`` and ``y_pred`` count with F1 = 0 in the macro mean,
    as in scikit-learn's ``f1_score(average="macro", labels=range(n_classes), zero_division=0)``.

    Raises:
        ValueError: inputs of different lengths, empty, or labels outside [0, n_classes).
    """
    t, p = np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)
    if t.shape != p.shape or t.size == 0:
        raise ValueError(f"y_true and y_pred must be non-empty and equally long, got {t.size} and {p.size}")
    if min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= n_classes:
        raise ValueError(f"labels must lie in [0, {n_classes})")
    confusion = np.zeros((n_classes, n_classes), dtype=int)
    np.add.at(confusion, (t, p), 1)
    tp = np.diag(confusion).astype(float)
    predicted, support = confusion.sum(axis=0), confusion.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros(n_classes), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(n_classes), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(n_classes), where=denom > 0)
    return Report(float(tp.sum() / t.size), float(f1.mean()), precision, recall, f1, support, confusion)


@dataclass(frozen=True)
class TrackEvaluation:
    """Result of :func:`evaluate_tracks`.

    Attributes:
        track: report over tracks (track = mean of its segment probabilities).
        segment: report over all segments of the scored tracks.
        predictions: predicted class per scored track.
        scored: indices (into the inputs) of the tracks scored; shorter ones are left out.
        probs: track probabilities of the scored tracks, shape (n_scored, n_classes).
    """

    track: Report
    segment: Report
    predictions: list[int]
    scored: list[int]
    probs: np.ndarray


def evaluate_tracks(
    model: nn.Module, log_mels: Sequence[np.ndarray], labels: Sequence[int], cfg: FeatureConfig
) -> TrackEvaluation:
    """Segment- and track-level metrics of ``model`` on whole tracks.

    Args:
        model: a :class:`crnn.models.GenreNet` in eval mode.
        log_mels: one per track, shape (n_mels, frames_i), in dB.
        labels: true class per track.
        cfg: segmentation; tracks shorter than ``cfg.min_segment_s`` are not scored.

    Returns:
        The :class:`TrackEvaluation`.

    Raises:
        ValueError: no track is long enough to score.
    """
    scored = scorable(log_mels, cfg)
    seg_probs = [predict_segments(model, torch.from_numpy(log_mels[i]), cfg) for i in scored]
    return evaluate_segment_probs(seg_probs, [labels[i] for i in scored], scored, model.model_cfg.n_classes)


def scorable(log_mels: Sequence[np.ndarray], cfg: FeatureConfig) -> list[int]:
    """Indices of the tracks at least ``cfg.min_segment_s`` long.

    Raises:
        ValueError: none is.
    """
    scored = [i for i, m in enumerate(log_mels) if m.shape[1] >= cfg.min_frames]
    if not scored:
        raise ValueError(f"none of the {len(log_mels)} tracks is at least min_segment_s={cfg.min_segment_s} s long")
    return scored


def evaluate_segment_probs(
    seg_probs: Sequence[np.ndarray], truth: Sequence[int], scored: Sequence[int], n_classes: int
) -> TrackEvaluation:
    """Track- and segment-level reports from each scored track's segment probabilities (n_segments_i, n_classes)."""
    probs = np.stack([track_probs(p) for p in seg_probs])  # (n_scored, n_classes)
    predictions = [int(p.argmax()) for p in probs]
    seg_true = np.concatenate([np.full(len(p), y) for y, p in zip(truth, seg_probs)])
    seg_pred = np.concatenate([p.argmax(axis=1) for p in seg_probs])
    return TrackEvaluation(
        track=classification_report(truth, predictions, n_classes),
        segment=classification_report(seg_true, seg_pred, n_classes),
        predictions=predictions,
        scored=list(scored),
        probs=probs,
    )
