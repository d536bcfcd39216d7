"""Calibrated probabilities: temperature scaling, expected calibration error, selective accuracy.

Temperature scaling (Guo, Pleiss, Sun and Weinberger, "On Calibration of Modern Neural
Networks", ICML 2017) divides every logit by one scalar T fitted on held-out data; it changes
no prediction, only how confident the probabilities are. T minimises the negative
log-likelihood of the validation *segments* (a validation split holds a few dozen tracks, most of
them right, which would push a track-level fit towards T -> 0), searched on a log-spaced grid,
which cannot diverge.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

TEMPERATURE_GRID = np.geomspace(0.05, 20.0, 241)
"""Candidate temperatures (unitless), log-spaced: a step of 2.5%."""

ECE_BINS = 10
"""Equal-width confidence bins of the expected calibration error and the reliability diagram."""


def nll(logits: Tensor, labels: Tensor, temperature: float) -> float:
    """Mean negative log-likelihood (in nats) of softmax(logits / temperature).

    Args:
        logits: shape (N, n_classes).
        labels: shape (N,), class indices.
        temperature: divides the logits, > 0.
    """
    return float(torch.nn.functional.cross_entropy(logits.double() / temperature, labels))


def fit_temperature(logits: Tensor, labels: Tensor) -> float:
    """The temperature of :data:`TEMPERATURE_GRID` with the lowest NLL (ties: the one closest to 1).

    Args:
        logits: validation segment logits at T = 1, shape (N, n_classes).
        labels: shape (N,), class indices.

    Raises:
        ValueError: no examples.
    """
    if not len(labels):
        raise ValueError("temperature scaling needs at least one validation segment")
    losses = np.array([nll(logits, labels, float(t)) for t in TEMPERATURE_GRID])
    best = np.flatnonzero(losses <= losses.min() + 1e-12)
    return float(TEMPERATURE_GRID[best[np.argmin(np.abs(np.log(TEMPERATURE_GRID[best])))]])


@dataclass(frozen=True)
class ReliabilityBin:
    """One confidence bin: range [low, high), examples, their mean top probability and accuracy."""

    low: float
    high: float
    count: int
    confidence: float
    accuracy: float


def reliability(probs: np.ndarray, labels: np.ndarray, n_bins: int = ECE_BINS) -> list[ReliabilityBin]:
    """Reliability diagram data: examples binned by top probability (the last bin includes 1.0).

    Args:
        probs: shape (N, n_classes), rows summing to 1.
        labels: shape (N,), class indices.
        n_bins: equal-width bins over [0, 1].
    """
    conf, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.digitize(conf, edges[1:-1], right=False), 0, n_bins - 1)
    out = []
    for b in range(n_bins):
        mask = index == b
        n = int(mask.sum())
        out.append(
            ReliabilityBin(
                float(edges[b]),
                float(edges[b + 1]),
                n,
                float(conf[mask].mean()) if n else float("nan"),
                float(correct[mask].mean()) if n else float("nan"),
            )
        )
    return out


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """ECE (Naeini et al. 2015): the count-weighted mean |accuracy - confidence| over confidence bins, in [0, 1]."""
    bins = reliability(probs, labels, n_bins)
    total = sum(b.count for b in bins)
    return float(sum(b.count * abs(b.accuracy - b.confidence) for b in bins if b.count) / max(total, 1))


def selective_accuracy(probs: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[float, float]:
    """Accuracy of the examples whose top probability is at least ``threshold``, and the share below it.

    This is what a library owner sees: the share of written tags that are right, and the share
    of tracks left ``uncertain`` (not tagged). The accuracy is NaN when every example is uncertain.

    Args:
        probs: shape (N, n_classes).
        labels: shape (N,), class indices.
        threshold: the scoring threshold ``uncertain_below``, in [0, 1].
    """
    confident = probs.max(axis=1) >= threshold
    accuracy = float((probs.argmax(axis=1) == labels)[confident].mean()) if confident.any() else float("nan")
    return accuracy, float(1.0 - confident.mean()) if len(labels) else 0.0
