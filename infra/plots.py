"""Figures logged with runs (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


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
