"""Temperature scaling, ECE, the reliability bins and selective accuracy; frozen pretrained training and calibration in fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crnn.calibration import (
    TEMPERATURE_GRID,
    expected_calibration_error,
    fit_temperature,
    reliability,
    selective_accuracy,
)
from crnn.config import FeatureConfig, ModelConfig, TrainConfig
from crnn.features import log_mel_librosa
from crnn.train import EmbeddingDataset, SegmentDataset, fit
from crnn.zoo import MusicnnLinear

CPU = torch.device("cpu")


@pytest.mark.parametrize("true_temperature", [0.5, 1.0, 3.0])
def test_fit_temperature_recovers_the_temperature_that_generated_the_labels(true_temperature: float) -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(4000, 5, generator=gen) * 3
    labels = torch.multinomial(torch.softmax(logits / true_temperature, dim=1), 1, generator=gen).squeeze(1)
    assert fit_temperature(logits, labels) == pytest.approx(true_temperature, rel=0.1)


def test_fit_temperature_stays_on_the_grid_and_needs_examples() -> None:
    logits = torch.tensor([[5.0, 0.0], [0.0, 5.0]])
    sharp = fit_temperature(logits, torch.tensor([0, 1]))  # all right: sharper is better until the NLL is ~0
    assert sharp in TEMPERATURE_GRID and sharp < 0.2
    with pytest.raises(ValueError, match="at least one validation segment"):
        fit_temperature(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long))


def test_ece_reliability_and_selective_accuracy_on_a_hand_made_example() -> None:
    probs = np.array([[0.95, 0.05], [0.9, 0.1], [0.25, 0.75], [0.45, 0.55]])
    labels = np.array([0, 1, 1, 0])
    bins = reliability(probs, labels, n_bins=10)
    assert sum(b.count for b in bins) == 4
    top = [b for b in bins if b.count]
    assert [b.count for b in top] == [1, 1, 2]
    assert [b.low for b in top] == pytest.approx([0.5, 0.7, 0.9])
    assert top[-1].accuracy == 0.5 and top[-1].confidence == pytest.approx(0.925)
    # |0 - 0.55| + |1 - 0.75| + 2 * |0.5 - 0.925|, over 4
    assert expected_calibration_error(probs, labels, n_bins=10) == pytest.approx((0.55 + 0.25 + 0.85) / 4)
    accuracy, uncertain = selective_accuracy(probs, labels, 0.6)
    assert (accuracy, uncertain) == (pytest.approx(2 / 3), 0.25)
    assert np.isnan(selective_accuracy(probs, labels, 0.99)[0])
    assert expected_calibration_error(np.eye(3), np.arange(3)) == 0.0


FEATURES = FeatureConfig(
    sample_rate=16000, n_fft=512, hop_length=256, n_mels=96, segment_s=0.5, overlap_s=0.0, min_segment_s=0.25
)


def _tone_tracks(n: int, seed: int) -> tuple[list[np.ndarray], list[int]]:
    rng = np.random.default_rng(seed)
    t = np.arange(16000) / 16000
    mels, labels = [], []
    for c, freq in enumerate((300.0, 1200.0, 4000.0)):
        for _ in range(n):
            y = 0.3 * np.sin(2 * np.pi * freq * t + rng.uniform(0, 6)) + 0.02 * rng.standard_normal(t.size)
            mels.append(log_mel_librosa(y.astype(np.float32), FEATURES))
            labels.append(c)
    return mels, labels


def _model(seed: int = 0) -> MusicnnLinear:
    torch.manual_seed(seed)
    return MusicnnLinear(FEATURES, ModelConfig(architecture="musicnn-linear", labels=("a", "b", "c"), dropout=0.0))


def test_frozen_pretrained_layers_are_cached_untouched_and_the_head_learns() -> None:
    model = _model()
    before = {k: v.clone() for k, v in model.musicnn.state_dict().items()}
    train, val = (
        SegmentDataset(*_tone_tracks(3, 1), FEATURES, jitter=True),
        SegmentDataset(*_tone_tracks(2, 2), FEATURES),
    )
    cfg = TrainConfig(epochs=15, batch_size=8, learning_rate=0.05, patience=15, mixup_alpha=0.0, seed=3)
    result = fit(model, train, val, cfg, device=CPU)
    after = model.musicnn.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and batch-norm statistics
    assert result.best_metrics["val/accuracy"] == 1.0
    assert result.temperature == pytest.approx(float(model.temperature)) and result.temperature != 1.0
    cached = EmbeddingDataset.from_segments(model, val, CPU)
    assert len(cached) == len(val) and cached[0][0].shape == (200,)
    with torch.inference_mode():  # the cached embedding is the model's own (float16-rounded)
        x = torch.from_numpy(val.log_mels[0][:, : FEATURES.segment_frames])[None]
        torch.testing.assert_close(cached[0][0], model.embedding(x)[0].half().float())
    other = _model(seed=1)  # other weights: another fingerprint, not the cached embeddings
    assert other.embedding_fingerprint() != model.embedding_fingerprint()
    assert not torch.equal(EmbeddingDataset.from_segments(other, val, CPU)[0][0], cached[0][0])


def test_fine_tuning_moves_the_pretrained_layers_at_a_smaller_learning_rate() -> None:
    model = _model()
    before = [p.detach().clone() for p in model.pretrained_parameters()]
    train, val = SegmentDataset(*_tone_tracks(2, 1), FEATURES), SegmentDataset(*_tone_tracks(1, 2), FEATURES)
    cfg = TrainConfig(epochs=1, batch_size=8, pretrained_lr_scale=0.1, mixup_alpha=0.0, calibrate=False)
    fit(model, train, val, cfg, device=CPU)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.pretrained_parameters(), strict=True))
    assert float(model.temperature) == 1.0  # calibrate=False
