"""The fast inference path (crnn.inference.inference_settings) against the plain fp32 forward: same genres."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from crnn.config import PipelineConfig
from crnn.inference import (
    BF16_PROB_TOLERANCE,
    InferenceSettings,
    cpu_has_native_bf16,
    inference_settings,
    prepare_for_inference,
    segment_probs,
)
from crnn.zoo import build_model

LAYOUT_PROB_TOLERANCE = 1e-5
"""Channels-last only reorders float sums: track probabilities agree to this (in [0, 1])."""


def fresh(architecture: str) -> torch.nn.Module:
    """A freshly initialised model (seed 0) whose probabilities are spread out (temperature 0.05).

    Fresh weights give near-uniform probabilities, where any rounding would flip the top genre; a low
    temperature makes the comparison about the network's numbers, as with a trained model.
    """
    torch.manual_seed(0)
    model = build_model(PipelineConfig.from_options(architecture=architecture)).eval()
    model.temperature.fill_(0.05)
    return model


def tracks(model, n_tracks: int, n_segments: int) -> list[torch.Tensor]:
    """Seeded tone-plus-noise log-mels cut like scoring cuts them: (n_segments, n_mels, segment_frames) each."""
    cfg = model.feature_cfg
    rng = np.random.default_rng(1)
    t = np.arange(int(cfg.segment_s * cfg.sample_rate * n_segments)) / cfg.sample_rate
    out = []
    with torch.inference_mode():
        for _ in range(n_tracks):
            f0, level = rng.uniform(60, 4000), rng.uniform(0.05, 0.5)
            wave = level * np.sin(2 * np.pi * f0 * t) + rng.uniform(0.001, 0.2) * rng.standard_normal(t.size)
            log_mel = model.frontend(torch.from_numpy(wave.astype(np.float32)))
            frames = cfg.segment_frames
            out.append(torch.stack([log_mel[:, i * frames : (i + 1) * frames] for i in range(n_segments)]))
    return out


def track_probs(model, segments, settings: InferenceSettings) -> np.ndarray:
    return np.stack([segment_probs(model, s, settings).mean(axis=0) for s in segments])


def assert_same_genres(fast: np.ndarray, plain: np.ndarray, tolerance: float) -> None:
    """>= 99% of tracks keep their top genre, and no track probability moves more than ``tolerance``."""
    assert plain.std(axis=1).mean() > 0.05, "probabilities too flat for the comparison to mean anything"
    same = np.mean(fast.argmax(axis=1) == plain.argmax(axis=1))
    assert same >= 0.99, f"{same:.1%} same top genre"
    assert np.abs(fast - plain).max() <= tolerance


@pytest.mark.parametrize(
    ("architecture", "n_tracks", "n_segments"), [("crnn-attention", 30, 2), ("musicnn-linear", 8, 1)]
)
def test_fast_path_gives_the_plain_fp32_genres(architecture: str, n_tracks: int, n_segments: int) -> None:
    """What scoring runs (the model's layout and batch size; bf16 where native) equals the plain fp32 forward."""
    plain = fresh(architecture)
    fast = prepare_for_inference(copy.deepcopy(plain))
    segments = tracks(plain, n_tracks, n_segments)
    reference = track_probs(plain, segments, InferenceSettings(batch_size=1, channels_last=False))
    settings = inference_settings(fast)
    tolerance = BF16_PROB_TOLERANCE if settings.bf16 else LAYOUT_PROB_TOLERANCE
    assert_same_genres(track_probs(fast, segments, settings), reference, tolerance)


def test_bf16_autocast_keeps_the_genres_within_its_tolerance() -> None:
    """bf16 autocast (forced here, emulated on CPUs without it) keeps the genres; probabilities within 0.02."""
    plain = fresh("crnn-attention")
    fast = prepare_for_inference(copy.deepcopy(plain))
    segments = tracks(plain, 24, 1)
    reference = track_probs(plain, segments, InferenceSettings(batch_size=64, channels_last=False))
    bf16 = dataclasses.replace(inference_settings(fast), bf16=True)
    probs = track_probs(fast, segments, bf16)
    assert_same_genres(probs, reference, BF16_PROB_TOLERANCE)
    assert np.abs(probs - reference).max() > 0  # bf16 really ran: its rounding shows


def test_settings_follow_the_model_and_the_hardware() -> None:
    """CPU: the model's batch size and layout (musicnn stays contiguous), bf16 only with native bfloat16."""
    crnn, musicnn = fresh("crnn-attention"), fresh("musicnn-linear")
    assert inference_settings(crnn) == InferenceSettings(64, channels_last=True, bf16=cpu_has_native_bf16())
    assert inference_settings(musicnn) == InferenceSettings(2, channels_last=False, bf16=cpu_has_native_bf16())
    prepare_for_inference(crnn)
    prepare_for_inference(musicnn)
    conv = crnn.convs[1][0].weight  # 32 -> 64 channels (a 1-channel input is both layouts)
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert musicnn.musicnn.timbral[0].conv.weight.is_contiguous()
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        InferenceSettings(batch_size=0)
