"""Tests for the model zoo: every architecture from its default config, shapes, parameter counts, checkpoints."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from crnn.catalog import SHAPING_FIELDS, ZOO, zoo_entry
from crnn.config import ARCHITECTURES, BASELINE, FeatureConfig, ModelConfig, PipelineConfig, protocol_config
from crnn.inference import checkpoint_state, load_checkpoint
from crnn.models import CRNN, tile_frames
from crnn.train import save_checkpoint
from crnn.zoo import (
    CNNLSTM,
    ChoiCRNN,
    MusicnnCRNN,
    MusicnnLinear,
    ParallelCNNBiLSTM,
    build_model,
    pretrained_checkpoint,
)

EXPECTED = {
    # architecture: (class, input (n_mels, frames), parameters)
    "crnn-attention": (CRNN, (96, 129), 263_339),
    "musicnn-crnn": (MusicnnCRNN, (96, 188), 967_778),
    "musicnn-linear": (MusicnnLinear, (96, 188), 789_169),
    "choi-crnn": (ChoiCRNN, (96, 1365), 146_154),
    "cnn-lstm": (CNNLSTM, (64, 173), 1_605_568),
    "parallel-cnn-bilstm": (ParallelCNNBiLSTM, (128, 129), 1_808_506),
}


def test_every_network_entry_is_an_architecture_with_a_class_and_the_baseline_is_a_member() -> None:
    assert [e.name for e in ZOO if e.is_network] == list(ARCHITECTURES) and set(ARCHITECTURES) == set(EXPECTED)
    assert all(EXPECTED[e.name][0] is e.load() for e in ZOO if e.is_network)
    assert [e.name for e in ZOO if not e.is_network] == [BASELINE] == ["mfcc-logreg"]
    from crnn.baseline import fit_baseline

    assert zoo_entry(BASELINE).load() is fit_baseline and zoo_entry(BASELINE).features == {}


@pytest.mark.parametrize("entry", [e for e in ZOO if e.is_network], ids=lambda e: e.name)
def test_a_field_the_architecture_ignores_is_an_error_and_one_it_honours_is_not(entry) -> None:
    changed = {"channels": (8, 8, 8, 8), "freq_pool": (2, 2, 2, 12), "time_pool": (1, 1, 1, 1)}
    changed |= {"rnn_type": "lstm", "rnn_hidden": 8}
    changed |= {"rnn_layers": 2, "attention_dim": 8, "pretrained": "MTT_musicnn"}
    assert set(changed) == set(SHAPING_FIELDS)
    for name, value in changed.items():
        if name in entry.honours:
            ModelConfig(architecture=entry.name, **{name: value})
        else:
            with pytest.raises(ValueError, match=f"{entry.name} ignores {name}=.*it shapes only"):
                ModelConfig(architecture=entry.name, **{name: value})


def test_old_checkpoints_with_ignored_values_still_load() -> None:
    data = PipelineConfig.from_options(architecture="choi-crnn").to_dict()
    data["model"]["rnn_type"] = "lstm"  # silently ignored before fields were checked
    assert PipelineConfig.from_dict(data).model == ModelConfig(architecture="choi-crnn")


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_default_config_builds_with_the_documented_shapes_and_parameter_count(architecture: str) -> None:
    cls, (n_mels, frames), n_params = EXPECTED[architecture]
    torch.manual_seed(0)
    model = build_model(PipelineConfig.from_options(architecture=architecture)).eval()
    assert type(model) is cls
    assert (model.feature_cfg.n_mels, model.feature_cfg.segment_frames) == (n_mels, frames)
    assert sum(p.numel() for p in model.parameters()) == n_params
    assert f"{n_params:,}".replace(",", " ") in cls.__doc__ or architecture == "crnn-attention"
    with torch.inference_mode():
        logits = model.classify(torch.randn(2, n_mels, frames))
        short = model.classify(torch.randn(2, n_mels, frames // 3))  # a 1-s excerpt of a longer input
    assert logits.shape == short.shape == (2, 10)
    assert torch.isfinite(logits).all() and torch.isfinite(short).all()


def test_seed_preprocessing_is_applied_and_explicit_options_win() -> None:
    choi = PipelineConfig.from_options(architecture="choi-crnn").features
    assert (choi.sample_rate, choi.n_fft, choi.hop_length, choi.n_mels, choi.segment_s) == (12000, 512, 256, 96, 29.12)
    seed4 = PipelineConfig.from_options(architecture="parallel-cnn-bilstm").features
    assert seed4.overlap_s == seed4.segment_s / 2 == 1.5  # 3 s clips, 50% overlap
    assert PipelineConfig.from_options(architecture="cnn-lstm", n_mels=None).features.n_mels == 64
    assert PipelineConfig.from_options(architecture="cnn-lstm", n_mels=48).features.n_mels == 48
    assert PipelineConfig.from_options(architecture="crnn-attention").features == FeatureConfig()
    default = PipelineConfig.from_options().features  # musicnn-linear: musicnn's 16 kHz, 512, 256, 96 bands
    assert (default.sample_rate, default.n_fft, default.hop_length, default.n_mels) == (16000, 512, 256, 96)


def test_unknown_architecture_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="architecture must be one of .*got 'resnet'"):
        PipelineConfig.from_options(architecture="resnet")
    with pytest.raises(ValueError, match="model must be one of"):
        protocol_config("resnet")
    assert protocol_config("mfcc-logreg").features == FeatureConfig()


@pytest.mark.parametrize(
    ("architecture", "change", "message"),
    [
        ("choi-crnn", {"n_mels": 64}, "n_mels must be 96"),
        ("cnn-lstm", {"n_mels": 12}, "at least 16 x 16"),
        ("musicnn-crnn", {"sample_rate": 22050}, "needs musicnn's features"),
        ("musicnn-linear", {"n_mels": 128}, "needs musicnn's features"),
        ("parallel-cnn-bilstm", {"segment_s": 0.3, "overlap_s": 0.1, "min_segment_s": 0.2}, "at least 16 x 16"),
    ],
)
def test_inputs_that_do_not_fit_an_architecture_raise(architecture: str, change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_model(PipelineConfig.from_options(architecture=architecture, **change))


def test_tile_frames_loops_the_input_and_rejects_longer_ones() -> None:
    x = torch.arange(3.0).reshape(1, 1, 3)
    assert tile_frames(x, 7).tolist() == [[[0.0, 1.0, 2.0, 0.0, 1.0, 2.0, 0.0]]]
    assert tile_frames(x, 3) is x
    with pytest.raises(ValueError, match="4 frames is longer than the model's fixed input of 3"):
        tile_frames(torch.zeros(1, 1, 4), 3)


def test_fixed_input_model_scores_a_short_clip_as_its_looped_version() -> None:
    torch.manual_seed(0)
    model = build_model(PipelineConfig.from_options(architecture="parallel-cnn-bilstm")).eval()
    clip = torch.randn(1, 128, 50)
    with torch.inference_mode():
        assert torch.allclose(model.classify(clip), model.classify(tile_frames(clip, 129)), atol=1e-5)


@pytest.mark.parametrize("architecture", ["cnn-lstm", "parallel-cnn-bilstm"])
def test_checkpoint_round_trip_rebuilds_the_architecture(tmp_path, architecture: str) -> None:
    torch.manual_seed(0)
    cfg = PipelineConfig.from_options(architecture=architecture)
    model = build_model(cfg).eval()
    save_checkpoint(checkpoint_state(model, cfg), tmp_path / "best.pt")
    loaded, loaded_cfg = load_checkpoint(tmp_path / "best.pt")
    assert type(loaded) is type(model) and loaded_cfg == cfg
    wave = 0.1 * torch.randn(1, cfg.features.sample_rate * 2)
    with torch.inference_mode():  # the loaded model runs channels-last: the same sums in another order
        torch.testing.assert_close(loaded(wave), model(wave), rtol=0, atol=1e-5)


def test_checkpoint_without_architecture_loads_as_the_default_crnn(tmp_path) -> None:
    cfg = PipelineConfig.from_options(architecture="crnn-attention")
    state = checkpoint_state(build_model(cfg), cfg)
    del state["config"]["model"]["architecture"]  # written before the model zoo existed
    save_checkpoint(state, tmp_path / "old.pt")
    model, loaded_cfg = load_checkpoint(tmp_path / "old.pt")
    assert isinstance(model, CRNN) and loaded_cfg.model.architecture == "crnn-attention"


def test_architecture_is_a_flattened_param() -> None:
    from crnn.config import flatten

    flat = flatten(PipelineConfig.from_options(architecture="choi-crnn").to_dict())
    assert flat["model.architecture"] == "choi-crnn" and flat["features.sample_rate"] == 12000
    assert dataclasses.fields(PipelineConfig().model)[0].name == "architecture"


def test_only_musicnn_models_start_from_pretrained_weights_and_the_option_picks_the_checkpoint() -> None:
    assert pretrained_checkpoint(PipelineConfig.from_options(architecture="musicnn-crnn")) == "MSD_musicnn"
    mtt = PipelineConfig.from_options(architecture="musicnn-linear", pretrained="MTT_musicnn")
    assert pretrained_checkpoint(mtt) == "MTT_musicnn"
    assert pretrained_checkpoint(PipelineConfig.from_options(architecture="crnn-attention")) is None
    with pytest.raises(ValueError, match="pretrained must be one of MSD_musicnn, MTT_musicnn, got 'VGGish'"):
        PipelineConfig.from_options(architecture="musicnn-crnn", pretrained="VGGish")


@pytest.mark.parametrize("architecture", ["musicnn-crnn", "musicnn-linear"])
def test_musicnn_model_is_level_invariant_and_frozen_by_default(architecture: str) -> None:
    torch.manual_seed(0)
    model = build_model(PipelineConfig.from_options(architecture=architecture)).eval()
    x = torch.randn(2, 96, 188) * 10 - 30
    with torch.inference_mode():
        torch.testing.assert_close(model.classify(x), model.classify(x - 12.0), atol=1e-4, rtol=1e-4)
    assert model.frozen_embedding and not any(p.requires_grad for p in model.pretrained_parameters())
    model.train()
    assert not model.musicnn.training and model.classifier.training  # frozen layers stay in eval mode
    model.set_frozen(False)
    model.train()
    assert model.musicnn.training and all(p.requires_grad for p in model.pretrained_parameters())


def test_musicnn_checkpoint_round_trip_keeps_pretrained_weights_and_temperature(tmp_path) -> None:
    torch.manual_seed(0)
    cfg = PipelineConfig.from_options(architecture="musicnn-linear")
    model = build_model(cfg).eval()
    model.temperature.fill_(1.7)
    save_checkpoint(checkpoint_state(model, cfg), tmp_path / "m.pt")
    loaded, _ = load_checkpoint(tmp_path / "m.pt")  # no converted weights needed: they are in the state dict
    x = torch.randn(3, 96, 188) - 20
    with torch.inference_mode():
        torch.testing.assert_close(loaded.classify(x), model.classify(x))
    assert float(loaded.temperature) == pytest.approx(1.7)
