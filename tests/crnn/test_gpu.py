"""CUDA paths: batched log-mels on the GPU and mixed-precision training (skipped without a GPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crnn.config import FeatureConfig, ModelConfig, TrainConfig
from crnn.features import PARITY_ATOL_DB, batched_log_mel, log_mel_librosa
from crnn.models import CRNN
from crnn.train import SegmentDataset, _amp_dtype, fit

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

FEATURES = FeatureConfig(
    n_mels=16, n_fft=256, hop_length=128, sample_rate=8000, segment_s=0.5, overlap_s=0.25, min_segment_s=0.25
)
TINY = ModelConfig(
    architecture="crnn-attention",
    channels=(4, 8),
    freq_pool=(2, 2),
    time_pool=(2, 2),
    rnn_hidden=8,
    attention_dim=8,
    labels=("a", "b"),
)


def _tones(n: int, seconds: float = 1.5) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * FEATURES.sample_rate)) / FEATURES.sample_rate
    return [
        (0.3 * np.sin(2 * np.pi * (300 + 700 * (i % 2)) * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
        for i in range(n)
    ]


def test_batched_log_mel_on_cuda_matches_librosa() -> None:
    waves = _tones(3)
    on_gpu = batched_log_mel([torch.from_numpy(w) for w in waves], FEATURES, "cuda")
    for w, m in zip(waves, on_gpu):
        ref = log_mel_librosa(w, FEATURES)
        mask = ref > -80
        assert np.abs(m.numpy() - ref)[mask].max() < PARITY_ATOL_DB


def test_fit_on_cuda_uses_mixed_precision_and_learns() -> None:
    mels = [log_mel_librosa(w, FEATURES) for w in _tones(8)]
    labels = [i % 2 for i in range(8)]
    model = CRNN(FEATURES, TINY)
    cfg = TrainConfig(epochs=5, batch_size=8, learning_rate=1e-2, freq_mask=0, time_mask=0)
    result = fit(
        model,
        SegmentDataset(mels, labels, FEATURES, jitter=True),
        SegmentDataset(mels, labels, FEATURES),
        cfg,
        device=torch.device("cuda"),
    )
    assert _amp_dtype(torch.device("cuda")) in (torch.bfloat16, torch.float16)
    assert next(model.parameters()).device.type == "cuda"
    assert result.best_metrics["val/accuracy"] >= 0.9
