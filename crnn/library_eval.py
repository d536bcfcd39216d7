"""How good a model is on a user's own music: its predictions against the files' own genre tags, mapped to labels.

A file counts when it was scored and its genre tag maps to a label (:class:`crnn.labelmap.LabelMap`);
untagged files, tags the map does not know and files that failed to score are excluded and counted
by reason. A library label the model does not have cannot be predicted: its tracks count as wrong and
the label is reported, so the figure is what the user would get on this library. Metrics reuse
:func:`crnn.evaluate.classification_report` and :func:`crnn.calibration.selective_accuracy`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crnn.atomic import write_text_atomic
from crnn.calibration import selective_accuracy
from crnn.dataset import write_csv_atomic
from crnn.evaluate import Report, classification_report
from crnn.labelmap import LabelMap

UNTAGGED, UNMAPPED, NOT_SCORED = "untagged", "unmapped tag", "not scored"
"""Reasons a file is excluded: no genre tag, a tag the label map does not know, scoring failed."""
FILE_COLUMNS = ("path", "tag", "label", "predicted", "probability", "uncertain", "correct", "excluded")
"""Columns of the per-file table."""


@dataclass(frozen=True)
class ScoredFile:
    """One library file as scoring left it, with its own genre tag.

    Attributes:
        path: the file.
        tag: its raw genre tag, ``None`` when it has none.
        probs: the model's track probabilities, shape (n_model_labels,), in [0, 1]; ``None`` when scoring failed.
    """

    path: str
    tag: str | None
    probs: np.ndarray | None


@dataclass(frozen=True)
class LibraryEvaluation:
    """Result of :func:`evaluate_library`.

    Attributes:
        labels: classes of ``report``: the model's labels, then library labels the model does not have.
        unknown_labels: library labels the model does not have (their tracks cannot be right).
        report: accuracy, per-label precision/recall/F1, support and confusion (rows: tag label, columns:
            predicted) over ``labels``.
        macro_f1: mean F1 over the labels that have tracks in the library (labels absent from it do not count).
        selective_accuracy: accuracy of the tracks whose top probability reaches the threshold (NaN if none).
        uncertain_share: share of tracks below the threshold (scoring flags them ``uncertain``, never tags them).
        files: one dict per file with :data:`FILE_COLUMNS`.
        excluded: files left out, by reason.
    """

    labels: tuple[str, ...]
    unknown_labels: tuple[str, ...]
    report: Report
    macro_f1: float
    selective_accuracy: float
    uncertain_share: float
    files: list[dict]
    excluded: Counter[str]

    def metrics(self) -> dict[str, float]:
        """Flat metrics for MLflow, names ``library/<name>``.

        ``accuracy``, ``macro_f1``, ``selective_accuracy`` (absent when every track is uncertain),
        ``uncertain_share``, ``tracks``, ``excluded/<reason>`` and ``precision/<label>``/``recall/<label>``
        for the labels with tracks or predictions.
        """
        r = self.report
        out = {
            "library/accuracy": r.accuracy,
            "library/macro_f1": self.macro_f1,
            "library/tracks": int(r.support.sum()),
        }
        out |= {"library/uncertain_share": self.uncertain_share}
        if not math.isnan(self.selective_accuracy):
            out["library/selective_accuracy"] = self.selective_accuracy
        out |= {f"library/excluded/{k.replace(' ', '_')}": n for k, n in sorted(self.excluded.items())}
        for i, label in enumerate(self.labels):
            if r.support[i] or r.confusion[:, i].sum():
                out |= {
                    f"library/precision/{label}": float(r.precision[i]),
                    f"library/recall/{label}": float(r.recall[i]),
                }
        return out


def evaluate_library(
    files: Sequence[ScoredFile], label_map: LabelMap, model_labels: Sequence[str], uncertain_below: float
) -> LibraryEvaluation:
    """Score ``files``' predictions against their mapped tags.

    Args:
        files: scored (or failed) files with their raw tags.
        label_map: raw tag -> label.
        model_labels: the model's labels, in the order of ``ScoredFile.probs``.
        uncertain_below: scoring's threshold (0-1) of the top probability under which a track is ``uncertain``.

    Raises:
        ValueError: no file was scored with a tag that maps to a label (the message gives the exclusion counts).
    """
    unknown = tuple(g for g in label_map.labels if g not in model_labels)
    labels = (*model_labels, *unknown)
    rows, excluded, kept = [], Counter(), []
    for f in files:
        label = label_map.label_for(f.tag)
        reason = NOT_SCORED if f.probs is None else UNTAGGED if f.tag is None else UNMAPPED if label is None else None
        row = dict.fromkeys(FILE_COLUMNS) | {"path": f.path, "tag": f.tag, "label": label, "excluded": reason}
        if reason:
            excluded[reason] += 1
        else:
            best = int(np.argmax(f.probs))
            row |= {"predicted": model_labels[best], "probability": round(float(f.probs[best]), 4)}
            row |= {"uncertain": bool(f.probs[best] < uncertain_below), "correct": model_labels[best] == label}
            kept.append((labels.index(label), f.probs))
        rows.append(row)
    if not kept:
        counts = ", ".join(f"{n} {k}" for k, n in sorted(excluded.items())) or "no files"
        raise ValueError(f"no scored file has a genre tag that the label map knows ({counts})")
    truth = np.array([t for t, _ in kept])
    probs = np.stack([p for _, p in kept])  # (n_tracks, n_model_labels)
    report = classification_report(truth, probs.argmax(axis=1), len(labels))
    present = report.support > 0
    selective, uncertain = selective_accuracy(probs, truth, uncertain_below)
    return LibraryEvaluation(
        labels, unknown, report, float(report.f1[present].mean()), selective, uncertain, rows, excluded
    )


def report_markdown(ev: LibraryEvaluation, title: str, uncertain_below: float) -> str:
    """The evaluation as Markdown: headline figures, exclusions, per-label table and confusion matrix."""
    r, n = ev.report, int(ev.report.support.sum())
    selective = "–" if math.isnan(ev.selective_accuracy) else f"{ev.selective_accuracy:.3f}"
    lines = [
        f"# {title}",
        "",
        f"**{n} tracks** whose genre tag maps to a label: accuracy **{r.accuracy:.3f}**, macro-F1 {ev.macro_f1:.3f}; "
        f"selective accuracy {selective} on the tracks scored at least {uncertain_below} "
        f"({ev.uncertain_share:.1%} flagged uncertain, not tagged by scoring).",
        "",
        "Excluded: " + (", ".join(f"{k} {c}" for k, c in sorted(ev.excluded.items())) or "none") + ".",
    ]
    if ev.unknown_labels:
        lines.append(f"Labels the model does not have (their tracks cannot be right): {', '.join(ev.unknown_labels)}.")
    lines += ["", "| label | tracks | precision | recall | F1 |", "| --- | ---: | ---: | ---: | ---: |"]
    for i, label in enumerate(ev.labels):
        if r.support[i] or r.confusion[:, i].sum():
            lines.append(f"| {label} | {r.support[i]} | {r.precision[i]:.2f} | {r.recall[i]:.2f} | {r.f1[i]:.2f} |")
    shown = [i for i, _ in enumerate(ev.labels) if r.support[i] or r.confusion[:, i].sum()]
    lines += ["", "Confusion (rows: the file's tag, columns: the model's genre):", ""]
    lines += ["| tag \\ model | " + " | ".join(ev.labels[i] for i in shown) + " |", "| --- |" + " ---: |" * len(shown)]
    lines += [f"| {ev.labels[i]} | " + " | ".join(str(r.confusion[i, j]) for j in shown) + " |" for i in shown]
    return "\n".join(lines) + "\n"


def write_report(ev: LibraryEvaluation, out_dir: Path, title: str, uncertain_below: float) -> list[Path]:
    """Write ``report.md``, ``per_label.csv``, ``confusion.csv`` and ``files.csv`` into ``out_dir`` atomically; their paths."""
    r = ev.report
    per_label = [
        (g, int(r.support[i]), f"{r.precision[i]:.4f}", f"{r.recall[i]:.4f}", f"{r.f1[i]:.4f}", g in ev.unknown_labels)
        for i, g in enumerate(ev.labels)
    ]
    paths = [out_dir / name for name in ("report.md", "per_label.csv", "confusion.csv", "files.csv")]
    write_text_atomic(paths[0], report_markdown(ev, title, uncertain_below))
    write_csv_atomic(paths[1], ("label", "tracks", "precision", "recall", "f1", "unknown_to_model"), per_label)
    confusion = [(g, *r.confusion[i].tolist()) for i, g in enumerate(ev.labels)]
    write_csv_atomic(paths[2], ("tag_label", *ev.labels), confusion)
    write_csv_atomic(paths[3], FILE_COLUMNS, ([f[c] for c in FILE_COLUMNS] for f in ev.files))
    return paths
