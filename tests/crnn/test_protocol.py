"""Tests for the evaluation protocol (folds, summary) and the classical baseline."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from crnn import protocol
from crnn.baseline import baseline_segment_probs, fit_baseline, load_baseline, save_baseline, summary_features
from crnn.config import FeatureConfig

IDS = [f"{g}.{i:05d}" for g in ("blues", "jazz", "rock") for i in range(10)]
GENRES = [i.split(".")[0] for i in IDS]


def test_kfold_tests_every_track_exactly_once_and_never_trains_on_it() -> None:
    folds = protocol.kfold(IDS, GENRES, k=5, val_fraction=0.2, seed=3)
    assert [f.name for f in folds] == [f"fold-{i}" for i in range(1, 6)]
    tested = Counter(t for f in folds for t, s in f.assignment.items() if s == "test")
    assert tested == Counter(IDS)  # each track in exactly one test fold
    for f in folds:
        assert set(f.assignment) == set(IDS)
        test_genres = Counter(t.split(".")[0] for t, s in f.assignment.items() if s == "test")
        assert set(test_genres.values()) == {2}  # stratified: 10 per genre / 5 folds
        val_genres = {t.split(".")[0] for t, s in f.assignment.items() if s == "val"}
        assert val_genres == set(GENRES)  # every genre reaches early stopping


def test_kfold_is_seeded() -> None:
    a = protocol.kfold(IDS, GENRES, k=3, val_fraction=0.2, seed=1)
    assert a == protocol.kfold(IDS, GENRES, k=3, val_fraction=0.2, seed=1)
    assert a != protocol.kfold(IDS, GENRES, k=3, val_fraction=0.2, seed=2)


def test_cross_artist_trains_on_everything_but_a_stratified_val_share() -> None:
    ev = protocol.cross_artist(IDS, GENRES, val_fraction=0.2, seed=0)
    assert ev.name == protocol.CROSS_ARTIST
    assert Counter(ev.assignment.values()) == {"train": 24, "val": 6}
    assert Counter(t.split(".")[0] for t, s in ev.assignment.items() if s == "val") == {
        "blues": 2,
        "jazz": 2,
        "rock": 2,
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k": 1}, "k >= 2"),
        ({"k": 11}, "k=11 folds need >= 11 tracks per genre .* the smallest genre has 10"),
        ({"k": 3, "val_fraction": 1.0}, "val_fraction"),
    ],
)
def test_kfold_rejects_bad_settings(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        protocol.kfold(IDS, GENRES, **{"val_fraction": 0.2, "seed": 0, **kwargs})


def test_too_few_tracks_for_train_and_val_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="k=2 folds .* the smallest genre has 3"):
        protocol.kfold(IDS[:3] + IDS[10:13], GENRES[:3] + GENRES[10:13], k=2, val_fraction=0.2, seed=0)
    with pytest.raises(ValueError, match="need >= 2 per genre outside the test"):
        protocol.cross_artist(["a.00001", "b.00001"], ["a", "b"], val_fraction=0.2, seed=0)


def test_summarize_names_and_statistics() -> None:
    cross = {"test/track_accuracy": 0.5, "test/macro_f1": 0.4, "test/recall/rock": 0.3, "test/segment_accuracy": 0.1}
    folds = [{"test/track_accuracy": a, "test/macro_f1": a - 0.1} for a in (0.8, 0.9, 1.0)]
    out = protocol.summarize(cross, folds)
    assert out["cross_artist/accuracy"] == 0.5 and out["cross_artist/recall/rock"] == 0.3
    assert out["kfold/track_accuracy_mean"] == pytest.approx(0.9)
    assert out["kfold/track_accuracy_std"] == pytest.approx(0.1)  # sample std (ddof=1)
    assert out["kfold/macro_f1_mean"] == pytest.approx(0.8)
    assert "cross_artist/segment_accuracy" not in out


CFG = FeatureConfig(
    sample_rate=8000, n_fft=256, hop_length=128, n_mels=32, segment_s=0.5, overlap_s=0.25, min_segment_s=0.25
)


def tone_log_mel(band: int, frames: int, rng: np.random.Generator) -> np.ndarray:
    """A synthetic log-mel: -60 dB noise floor with one loud band (the 'genre')."""
    mel = -60 + 3 * rng.standard_normal((CFG.n_mels, frames))
    mel[band] += 40
    return mel.astype(np.float32)


def test_summary_features_are_finite_with_the_documented_size() -> None:
    rng = np.random.default_rng(0)
    feats = summary_features(tone_log_mel(3, 40, rng), CFG)
    assert feats.shape == (4 * 20 + 2 * CFG.n_mels + 2 * 9 + 1,)
    assert np.isfinite(feats).all()


def test_baseline_learns_separable_classes_and_round_trips(tmp_path) -> None:
    rng = np.random.default_rng(0)
    bands = {0: 4, 1: 15, 2: 26}
    mels = [tone_log_mel(bands[c], 100, rng) for c in (0, 1, 2) for _ in range(4)]
    labels = [c for c in (0, 1, 2) for _ in range(4)]
    model = fit_baseline(mels, labels, CFG, seed=0)
    save_baseline(model, CFG, tmp_path / "baseline.pkl")
    loaded, cfg = load_baseline(tmp_path / "baseline.pkl")
    assert cfg == CFG
    for c, band in bands.items():
        probs = baseline_segment_probs(loaded, tone_log_mel(band, 60, rng), CFG, n_classes=10)
        assert probs.shape[1] == 10 and np.allclose(probs.sum(axis=1), 1)
        assert probs.mean(axis=0).argmax() == c
        assert probs[:, 3:].sum() == 0  # classes never trained on get probability 0


def test_baseline_needs_a_full_segment() -> None:
    with pytest.raises(ValueError, match="none of the 1 tracks is at least segment_s=0.5 s long"):
        fit_baseline([np.zeros((CFG.n_mels, 10), np.float32)], [0], CFG, seed=0)
