"""ONNX Runtime forward (crnn.onnx_runtime) against the torch fp32 forward: same genres, same probabilities."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from crnn.audio import load_audio
from crnn.config import PipelineConfig
from crnn.features import segment_log_mel
from crnn.inference import (
    InferenceSettings,
    checkpoint_state,
    inference_settings,
    load_checkpoint,
    predict_file,
    segment_probs,
)
from crnn.models import GenreNet
from crnn.onnx_runtime import (
    ONNX_PROB_TOLERANCE,
    OnnxClassifier,
    OnnxExportError,
    attach,
    attached,
    check_classifier,
    export_classifier,
)
from crnn.train import save_checkpoint
from crnn.zoo import build_model

ARCHITECTURES = ("crnn-attention", "musicnn-linear", "cnn-lstm")
"""The default-before-last and the default architecture; cnn-lstm has a fixed input width (shorter segments looped)."""


def fresh(architecture: str) -> GenreNet:
    """A freshly initialised model (seed 0) with spread-out probabilities (temperature 0.02), as a trained one has."""
    torch.manual_seed(0)
    model = build_model(PipelineConfig.from_options(architecture=architecture)).eval()
    model.temperature.fill_(0.02)
    return model


@pytest.fixture(scope="module", params=ARCHITECTURES)
def pair(request, tmp_path_factory) -> tuple[GenreNet, GenreNet]:
    """(torch model, the same checkpoint loaded with its exported classifier) of one architecture."""
    torch.set_num_threads(1)  # module-scoped: before crnn/conftest's _one_thread applies
    model = fresh(request.param)
    folder = tmp_path_factory.mktemp(request.param)
    checkpoint = folder / "model.pt"
    save_checkpoint(checkpoint_state(model, PipelineConfig.from_options(architecture=request.param)), checkpoint)
    onnx = export_classifier(model, folder / "classifier.onnx")
    return load_checkpoint(checkpoint)[0], load_checkpoint(checkpoint, onnx=onnx)[0]


def fp32(model: GenreNet) -> InferenceSettings:
    """The plain torch forward: the model's batch size and layout, no bf16."""
    return InferenceSettings(model.inference_batch_size, channels_last=model.inference_channels_last)


def synthetic_tracks(model: GenreNet, n_tracks: int = 12) -> list[torch.Tensor]:
    """Seeded tone-plus-noise log-mels, 2 full segments each, plus narrower segments (a short track's)."""
    cfg = model.feature_cfg
    rng = np.random.default_rng(1)
    t = np.arange(int(cfg.segment_s * cfg.sample_rate * 2)) / cfg.sample_rate
    out = []
    with torch.inference_mode():
        for i in range(n_tracks):
            f0, level = rng.uniform(60, 4000), rng.uniform(0.05, 0.5)
            wave = level * np.sin(2 * np.pi * f0 * t) + rng.uniform(0.001, 0.2) * rng.standard_normal(t.size)
            log_mel = model.frontend(torch.from_numpy(wave.astype(np.float32)))
            width = cfg.segment_frames if i % 3 else max(cfg.min_frames, cfg.segment_frames * 2 // 3)
            out.append(torch.stack([log_mel[:, k * width : (k + 1) * width] for k in range(2)]))
    return out


def assert_equal_forward(ort: GenreNet, plain: GenreNet, tracks: list[torch.Tensor]) -> None:
    """Same top genre on >= 99% of tracks (here: all), every probability within ONNX_PROB_TOLERANCE."""
    settings = inference_settings(ort)
    assert settings.runtime == "onnxruntime" and inference_settings(plain).runtime == "torch"
    fast = [segment_probs(ort, s, settings) for s in tracks]
    ref = [segment_probs(plain, s, fp32(plain)) for s in tracks]
    worst = max(float(np.abs(f - r).max()) for f, r in zip(fast, ref))
    same = np.mean([f.mean(0).argmax() == r.mean(0).argmax() for f, r in zip(fast, ref)])
    spread = np.mean([r.mean(0).max() for r in ref])
    assert spread > 0.3, "probabilities too flat for the genre check to mean anything"
    assert same >= 0.99 and worst <= ONNX_PROB_TOLERANCE, f"same genre {same:.0%}, max |dprob| {worst:.2e}"


def test_onnx_runtime_equals_torch_on_synthetic_log_mels(pair) -> None:
    plain, ort = pair
    assert_equal_forward(ort, plain, synthetic_tracks(plain))


def test_onnx_runtime_equals_torch_on_real_tracks(pair, gtzan_mini: Path, monkeypatch) -> None:
    plain, ort = pair
    cut = inference_settings(plain).features(plain.feature_cfg)  # the segments scoring cuts
    paths = [gtzan_mini / g / f"{g}.00000.wav" for g in ("blues", "classical", "metal", "reggae")]
    with torch.inference_mode():
        mels = [plain.frontend(torch.from_numpy(load_audio(p, cut.sample_rate))) for p in paths]
    tracks = [segment_log_mel(m, cut) for m in mels]
    assert_equal_forward(ort, plain, tracks)
    # predict_file, what serving and scoring call, runs the session of a model loaded with the classifier
    calls = []
    run = OnnxClassifier.__call__
    monkeypatch.setattr(OnnxClassifier, "__call__", lambda self, x: calls.append(len(x)) or run(self, x))
    track, segments = predict_file(ort, paths[0])
    assert sum(calls) == len(segments) == len(tracks[0])
    np.testing.assert_allclose(segments, segment_probs(plain, tracks[0], fp32(plain)), atol=ONNX_PROB_TOLERANCE)


def test_the_export_check_catches_a_classifier_of_other_weights(pair, tmp_path) -> None:
    plain, ort = pair
    assert check_classifier(plain, attached(ort)) <= ONNX_PROB_TOLERANCE
    other = fresh(plain.model_cfg.architecture)
    torch.nn.init.normal_(next(p for p in other.parameters() if p.dim() > 1))  # change one weight matrix
    with pytest.raises(OnnxExportError, match="differs from torch"):
        check_classifier(plain, OnnxClassifier(export_classifier(other, tmp_path / "other.onnx")))


def test_a_file_that_does_not_load_leaves_the_model_on_torch(tmp_path, caplog) -> None:
    bad = tmp_path / "classifier.onnx"
    bad.write_bytes(b"not an onnx model")
    model = fresh("cnn-lstm")
    with caplog.at_level(logging.WARNING, logger="crnn.onnx_runtime"):
        assert not attach(model, bad)
    assert "scoring with torch" in caplog.text
    assert attached(model) is None and inference_settings(model).runtime == "torch"


def test_onnx_runtime_needs_an_attached_classifier_and_copies_have_none(pair) -> None:
    plain, ort = pair
    segments = synthetic_tracks(plain, 1)[0]
    with pytest.raises(ValueError, match="exported classifier"):
        segment_probs(plain, segments, InferenceSettings(2, runtime="onnxruntime"))
    with pytest.raises(ValueError, match="runtime must be one of torch, onnxruntime"):
        InferenceSettings(2, runtime="tensorflow")
    assert inference_settings(copy.deepcopy(ort)).runtime == "torch"
