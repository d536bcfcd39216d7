"""Figures the evaluate and scoring tasks log with their runs (matplotlib, headless): presentation, not infrastructure or a stage."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from crnn.atomic import atomic_path  # noqa: E402


def confusion_matrix_png(confusion: np.ndarray, labels: Sequence[str], path: str | Path, title: str) -> Path:
    """Draw a (C, C) count matrix (rows true, columns predicted) with counts in the cells; write a PNG."""
    fig, ax = plt.subplots(figsize=(7, 6), dpi=110)
    im = ax.imshow(confusion, cmap="Blues")
    ax.set(
        xticks=range(len(labels)), yticks=range(len(labels)), xlabel="predicted genre", ylabel="true genre", title=title
    )
    ax.set_xticklabels(labels, rotation=45, ha="right")
    ax.set_yticklabels(labels)
    threshold = confusion.max() / 2 if confusion.size else 0
    for (i, j), v in np.ndenumerate(confusion):
        ax.text(j, i, int(v), ha="center", va="center", color="white" if v > threshold else "black", fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def reliability_png(bins: Sequence, path: str | Path, title: str) -> Path:
    """Reliability diagram from :func:`crnn.calibration.reliability` bins: accuracy per confidence bin against the diagonal.

    Bar width is the bin, bar height its accuracy; the dots mark the bins' mean confidence and
    the numbers their example counts. A calibrated model's bars meet the diagonal.
    """
    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=110)
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
    filled = [b for b in bins if b.count]
    ax.bar(
        [b.low for b in filled],
        [b.accuracy for b in filled],
        width=[b.high - b.low for b in filled],
        align="edge",
        edgecolor="black",
        color="tab:blue",
        alpha=0.7,
        label="accuracy",
    )
    ax.scatter([b.confidence for b in filled], [b.accuracy for b in filled], color="tab:red", zorder=3, s=12)
    for b in filled:
        ax.text((b.low + b.high) / 2, min(b.accuracy + 0.02, 0.97), str(b.count), ha="center", fontsize=7)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="top probability (confidence)", ylabel="accuracy", title=title)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def _save_atomic(fig: plt.Figure, path: str | Path) -> Path:
    """Save ``fig`` as a PNG at ``path`` atomically (readers of a report never see half an image) and close it."""
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)


def genre_distribution_png(genres: Mapping[str, int], path: str | Path, title: str) -> Path:
    """Bar chart of tracks per genre (``genre -> count``, drawn in the order given); write a PNG atomically."""
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    names, counts = list(genres), list(genres.values())
    bars = ax.bar(names, counts, color="tab:blue")
    ax.bar_label(bars, fontsize=8)
    ax.set(xlabel="genre", ylabel="tracks", title=title)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    if not any(counts):
        ax.text(0.5, 0.5, "no scored tracks yet", ha="center", va="center", transform=ax.transAxes)
    ax.tick_params(axis="x", labelrotation=45)
    fig.tight_layout()
    return _save_atomic(fig, path)


def confidence_histogram_png(
    probabilities: Sequence[float], uncertain_below: float | None, path: str | Path, title: str, bins: int = 20
) -> Path:
    """Histogram of top probabilities (0-1) in ``bins`` equal bins, the uncertain threshold as a line; write a PNG."""
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    ax.hist(probabilities, bins=bins, range=(0, 1), color="tab:green", edgecolor="black")
    if uncertain_below is not None:
        ax.axvline(uncertain_below, color="tab:red", linestyle="--", label=f"uncertain below {uncertain_below:g}")
        ax.legend(loc="upper left", fontsize=8)
    ax.set(xlim=(0, 1), xlabel="top probability (confidence)", ylabel="tracks", title=title)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    return _save_atomic(fig, path)
