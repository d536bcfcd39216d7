"""Library evaluation: predictions against mapped tags, exclusions by reason, labels the model lacks, the report files."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from crnn.labelmap import LabelMap
from crnn.library_eval import NOT_SCORED, UNMAPPED, UNTAGGED, ScoredFile, evaluate_library, write_report

MODEL_LABELS = ("jazz", "rock")
MAP = LabelMap.from_mapping({"rock": ["Hard Rock"], "jazz": ["Bebop"], "folk": ["Folk"]})


def _p(jazz: float) -> np.ndarray:
    return np.array([jazz, 1.0 - jazz])


FILES = [
    ScoredFile("a.mp3", "Hard-Rock", _p(0.1)),  # rock, right, confident
    ScoredFile("b.mp3", "ROCK", _p(0.6)),  # rock, wrong (jazz), uncertain
    ScoredFile("c.mp3", "bebop", _p(0.9)),  # jazz, right, confident
    ScoredFile("d.mp3", "Folk", _p(0.2)),  # folk: the model cannot be right
    ScoredFile("e.mp3", None, _p(0.5)),
    ScoredFile("f.mp3", "Polka", _p(0.5)),
    ScoredFile("g.mp3", "Rock", None),
]


def test_metrics_against_hand_counts() -> None:
    ev = evaluate_library(FILES, MAP, MODEL_LABELS, uncertain_below=0.75)
    assert ev.labels == ("jazz", "rock", "folk") and ev.unknown_labels == ("folk",)
    assert ev.excluded == {UNTAGGED: 1, UNMAPPED: 1, NOT_SCORED: 1}
    assert ev.report.accuracy == pytest.approx(2 / 4)
    assert ev.report.confusion.tolist() == [[1, 0, 0], [1, 1, 0], [0, 1, 0]]
    # F1: jazz 2*0.5*1/1.5, rock 0.5, folk 0, averaged over the 3 labels with tracks
    assert ev.macro_f1 == pytest.approx((2 / 3 + 0.5 + 0.0) / 3)
    # confident (>= 0.75): a (right), c (right), d (0.8 rock, wrong); b is uncertain
    assert (ev.selective_accuracy, ev.uncertain_share) == (pytest.approx(2 / 3), pytest.approx(1 / 4))
    m = ev.metrics()
    assert m["library/tracks"] == 4 and m["library/excluded/unmapped_tag"] == 1
    assert m["library/recall/folk"] == 0.0 and "library/precision/folk" in m
    b = next(f for f in ev.files if f["path"] == "b.mp3")
    assert (b["label"], b["predicted"], b["uncertain"], b["correct"]) == ("rock", "jazz", True, False)


def test_nothing_to_evaluate_says_why() -> None:
    with pytest.raises(ValueError, match=r"no scored file .* \(1 not scored, 1 untagged\)"):
        evaluate_library([FILES[4], FILES[6]], MAP, MODEL_LABELS, 0.75)


def test_every_track_uncertain_has_no_selective_accuracy() -> None:
    ev = evaluate_library(FILES[:3], MAP, MODEL_LABELS, uncertain_below=1.0)
    assert math.isnan(ev.selective_accuracy) and ev.uncertain_share == 1.0
    assert "library/selective_accuracy" not in ev.metrics()


def test_report_files(tmp_path: Path) -> None:
    ev = evaluate_library(FILES, MAP, MODEL_LABELS, 0.75)
    paths = write_report(ev, tmp_path / "eval", "genre-crnn/1 on my music", 0.75)
    assert [p.name for p in paths] == ["report.md", "per_label.csv", "confusion.csv", "files.csv"]
    text = paths[0].read_text()
    assert "accuracy **0.500**" in text and "cannot be right): folk" in text and "| folk | 1 | 0.00 | 0.00 |" in text
    rows = list(csv.DictReader(paths[3].open()))
    assert len(rows) == len(FILES) and rows[4]["excluded"] == UNTAGGED
    confusion = list(csv.reader(paths[2].open()))
    assert confusion[0] == ["tag_label", "jazz", "rock", "folk"] and confusion[3] == ["folk", "0", "1", "0"]
    assert sorted(p.name for p in (tmp_path / "eval").iterdir()) == sorted(p.name for p in paths)  # no temp files
