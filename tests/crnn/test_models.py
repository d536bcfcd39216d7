"""Tests for crnn.models: shapes, config checks, batching invariance, front end and attention pooling."""

from __future__ import annotations

import math

import pytest
import torch

from crnn.config import FeatureConfig, ModelConfig
from crnn.features import log_mel
from crnn.models import CRNN, AttentionPooling, count_parameters

SMALL_FEATURES = FeatureConfig(
    n_mels=16, n_fft=256, hop_length=128, sample_rate=8000, segment_s=0.5, overlap_s=0.25, min_segment_s=0.25
)
TINY_MODEL = ModelConfig(
    architecture="crnn-attention", channels=(4, 8), freq_pool=(2, 2), time_pool=(2, 2), rnn_hidden=8, attention_dim=8
)


def tiny(rnn_type: str = "gru", **kwargs) -> CRNN:
    torch.manual_seed(0)
    cfg = ModelConfig(**{**TINY_MODEL.__dict__, "rnn_type": rnn_type, **kwargs})
    return CRNN(SMALL_FEATURES, cfg).eval()


def test_default_crnn_forward_and_classify_shapes() -> None:
    torch.manual_seed(0)
    fcfg, mcfg = FeatureConfig(), ModelConfig()
    model = CRNN(fcfg, mcfg).eval()
    with torch.inference_mode():
        logits = model(0.1 * torch.randn(2, fcfg.sample_rate))
        assert logits.shape == (2, 10)
        assert torch.isfinite(logits).all()
        for frames in (fcfg.min_frames, math.prod(mcfg.time_pool), 100, fcfg.segment_frames):
            out = model.classify(torch.randn(2, fcfg.n_mels, frames))
            assert out.shape == (2, mcfg.n_classes), frames
            assert torch.isfinite(out).all()


def test_n_mels_not_divisible_by_freq_pool_raises() -> None:
    with pytest.raises(ValueError, match=r"n_mels=100.*= 48"):
        CRNN(FeatureConfig(n_mels=100), ModelConfig())
    with pytest.raises(ValueError, match=r"n_mels=18.*= 4"):
        CRNN(FeatureConfig(**{**SMALL_FEATURES.__dict__, "n_mels": 18}), TINY_MODEL)


def test_min_segment_too_short_for_time_pool_raises() -> None:
    # 0.1 s at 22050 Hz / 512 = 4 frames < 2 * 2 * 2 * 1 = 8.
    with pytest.raises(ValueError, match=r"min_segment_s=0.1 s gives 4 frames.*= 8"):
        CRNN(FeatureConfig(min_segment_s=0.1), ModelConfig())
    # Exactly the product is enough: 8 frames.
    CRNN(FeatureConfig(min_segment_s=8 * 512 / 22050), ModelConfig())


@pytest.mark.parametrize("rnn_type", ["gru", "lstm"])
def test_tiny_crnn_classify_any_length(rnn_type: str) -> None:
    model = tiny(rnn_type)
    assert isinstance(model.rnn, torch.nn.GRU if rnn_type == "gru" else torch.nn.LSTM)
    assert model.rnn.bidirectional
    with torch.inference_mode():
        for frames in (4, SMALL_FEATURES.min_frames, SMALL_FEATURES.segment_frames, 50):
            out = model.classify(torch.randn(3, 16, frames))
            assert out.shape == (3, 10)
            assert torch.isfinite(out).all()


@pytest.mark.parametrize("rnn_type", ["gru", "lstm"])
def test_batched_classify_equals_one_by_one(rnn_type: str) -> None:
    model = tiny(rnn_type)
    x = torch.randn(5, 16, SMALL_FEATURES.segment_frames, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        batched = model.classify(x)
        single = torch.cat([model.classify(x[i : i + 1]) for i in range(len(x))])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=0)
    # Different inputs give different outputs (the model is not constant).
    assert not torch.allclose(batched[0], batched[1])


def test_forward_equals_classify_of_log_mel() -> None:
    model = tiny()
    gen = torch.Generator().manual_seed(2)
    t = torch.arange(4000) / 8000
    wave = 0.3 * torch.sin(2 * torch.pi * torch.tensor([[300.0], [1200.0]]) * t) + 0.01 * torch.randn(
        2, 4000, generator=gen
    )
    with torch.inference_mode():
        direct = model(wave)
        via_features = model.classify(log_mel(wave, SMALL_FEATURES))
    torch.testing.assert_close(direct, via_features, atol=1e-5, rtol=0)


def test_eval_mode_is_deterministic_train_mode_uses_dropout() -> None:
    model = tiny(dropout=0.5)
    x = torch.randn(4, 16, 31)
    with torch.inference_mode():
        torch.testing.assert_close(model.classify(x), model.classify(x))
        model.train()
        torch.manual_seed(1)
        a = model.classify(x)
        torch.manual_seed(2)
        b = model.classify(x)
    assert not torch.allclose(a, b)


def test_count_parameters() -> None:
    gru, gru2, lstm = tiny("gru"), tiny("gru"), tiny("lstm")
    n = count_parameters(gru)
    assert n > 0
    assert count_parameters(gru2) == n
    assert count_parameters(lstm) > n  # four gates instead of three
    assert n == sum(p.numel() for p in gru.parameters())
    # Frozen parameters do not count.
    for p in gru.classifier.parameters():
        p.requires_grad_(False)
    assert count_parameters(gru) == n - (2 * 8 * 10 + 10)
    # The default model is larger than the tiny one.
    assert count_parameters(CRNN(FeatureConfig(), ModelConfig())) > n


def test_gradients_reach_every_parameter() -> None:
    model = tiny().train()
    loss = torch.nn.functional.cross_entropy(model.classify(torch.randn(4, 16, 31)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_attention_pooling_of_constant_sequence_is_the_constant() -> None:
    torch.manual_seed(0)
    pool = AttentionPooling(dim=6, attention_dim=5)
    vec = torch.randn(3, 1, 6)
    with torch.no_grad():
        for steps in (1, 4, 17):
            out = pool(vec.expand(3, steps, 6))
            torch.testing.assert_close(out, vec[:, 0], atol=1e-6, rtol=0)


def test_attention_pooling_is_a_convex_combination_over_time() -> None:
    torch.manual_seed(0)
    pool = AttentionPooling(dim=6, attention_dim=5)
    h = torch.randn(2, 9, 6)
    with torch.no_grad():
        out = pool(h)
        weights = torch.softmax(pool.score(h), dim=1)
        # Permuting time steps does not change the pooled vector.
        perm = torch.randperm(9)
        torch.testing.assert_close(pool(h[:, perm]), out, atol=1e-6, rtol=0)
    assert out.shape == (2, 6)
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(2, 1))
    assert torch.all(out <= h.max(dim=1).values + 1e-6)
    assert torch.all(out >= h.min(dim=1).values - 1e-6)
