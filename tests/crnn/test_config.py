"""Tests for crnn.config: validation messages, frame arithmetic, cache key, (de)serialisation."""

from __future__ import annotations

import dataclasses
import json

import pytest

from crnn.config import FeatureConfig, ModelConfig, PipelineConfig, SplitConfig, TrainConfig, flatten


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"sample_rate": 0}, "0"),
        ({"n_fft": -4}, "-4"),
        ({"hop_length": 2048}, "2048"),
        ({"hop_length": 0}, "hop_length"),
        ({"n_mels": 0}, "n_mels"),
        ({"f_max": 12000.0}, "12000.0"),
        ({"f_min": 5000.0, "f_max": 4000.0}, "5000.0"),
        ({"f_min": -1.0}, "-1.0"),
        ({"segment_s": 0.0}, "segment_s"),
        ({"overlap_s": 3.0}, "3.0"),
        ({"overlap_s": 4.5}, "4.5"),
        ({"overlap_s": -0.5}, "-0.5"),
        ({"min_segment_s": 3.5}, "3.5"),
        ({"min_segment_s": 0.0}, "min_segment_s"),
    ],
)
def test_feature_config_rejects_bad_values(kwargs: dict, needle: str) -> None:
    with pytest.raises(ValueError, match=needle.replace(".", r"\.")):
        FeatureConfig(**kwargs)


def test_feature_config_f_max_at_nyquist_is_allowed() -> None:
    cfg = FeatureConfig(sample_rate=8000, f_max=4000.0)
    assert cfg.resolved_f_max == 4000.0
    assert FeatureConfig(sample_rate=8000).resolved_f_max == 4000.0
    with pytest.raises(ValueError, match="4000.5"):
        FeatureConfig(sample_rate=8000, f_max=4000.5)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"rnn_type": "xyz"}, "'xyz'"),
        ({"channels": (4, 8), "freq_pool": (2,), "time_pool": (2, 2)}, "2, 1, 2"),
        ({"channels": (4, 8), "freq_pool": (2, 2), "time_pool": (2, 2, 2)}, "2, 2, 3"),
        ({"channels": ()}, "channels"),
        ({"channels": (4, 0), "freq_pool": (2, 2), "time_pool": (2, 2)}, r"\(4, 0\)"),
        ({"channels": (4, 8), "freq_pool": (2, 0), "time_pool": (2, 2)}, r"\(2, 0\)"),
        ({"rnn_hidden": 0}, "rnn_hidden"),
        ({"rnn_layers": 0}, "rnn_layers"),
        ({"dropout": 1.0}, "1.0"),
        ({"dropout": -0.1}, "-0.1"),
        ({"labels": ("a",)}, "at least 2 distinct"),
        ({"labels": ("a", "a")}, "at least 2 distinct"),
    ],
)
def test_model_config_rejects_bad_values(kwargs: dict, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        ModelConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"epochs": 0}, "epochs.*got 0"),
        ({"batch_size": 0}, "batch_size.*got 0"),
        ({"learning_rate": 0.0}, "learning_rate.*got 0.0"),
        ({"learning_rate": -1e-3}, "-0.001"),
        ({"weight_decay": -1.0}, "weight_decay.*-1.0"),
        ({"patience": 0}, "patience.*got 0"),
        ({"num_workers": -1}, "num_workers.*-1"),
    ],
)
def test_train_config_rejects_bad_values(kwargs: dict, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        TrainConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"method": "random"}, "'random'"),
        ({"val_fraction": 0.0}, "0.0"),
        ({"test_fraction": 1.0}, "1.0"),
        ({"val_fraction": 0.6, "test_fraction": 0.5}, "0.6, 0.5"),
    ],
)
def test_split_config_rejects_bad_values(kwargs: dict, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        SplitConfig(**kwargs)


def test_configs_are_frozen() -> None:
    cfg = FeatureConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.n_mels = 64  # type: ignore[misc]


def test_frame_arithmetic_defaults() -> None:
    cfg = FeatureConfig()  # 22050 Hz, hop 512: 43.07 frames per second
    assert cfg.seconds_to_frames(1.0) == 43
    assert cfg.seconds_to_frames(0.0) == 1  # never zero
    assert cfg.segment_frames == round(3.0 * 22050 / 512) == 129
    assert cfg.hop_frames == round(1.5 * 22050 / 512) == 65
    assert cfg.min_frames == 43


def test_frame_arithmetic_small_config() -> None:
    cfg = FeatureConfig(
        n_mels=16, n_fft=256, hop_length=128, sample_rate=8000, segment_s=0.5, overlap_s=0.25, min_segment_s=0.25
    )
    # 8000 / 128 = 62.5 frames per second.
    assert cfg.seconds_to_frames(1.0) == 62
    assert cfg.seconds_to_frames(2.0) == 125
    assert cfg.segment_frames == round(31.25) == 31
    assert cfg.hop_frames == round(15.625) == 16
    assert cfg.min_frames == 16
    # No overlap: the hop equals the segment.
    no_overlap = dataclasses.replace(cfg, overlap_s=0.0)
    assert no_overlap.hop_frames == no_overlap.segment_frames
    # Almost full overlap still advances by at least one frame.
    assert dataclasses.replace(cfg, overlap_s=0.4999).hop_frames == 1


def test_cache_key_tracks_spectral_fields_only() -> None:
    base = FeatureConfig()
    assert base.cache_key() == FeatureConfig().cache_key()
    assert len(base.cache_key()) == 16
    for change in ({"n_mels": 64}, {"n_fft": 2048}, {"hop_length": 256}, {"sample_rate": 16000}, {"f_min": 20.0}):
        assert dataclasses.replace(base, **change).cache_key() != base.cache_key(), change
    for change in ({"segment_s": 5.0}, {"overlap_s": 0.5}, {"min_segment_s": 2.0}):
        assert dataclasses.replace(base, **change).cache_key() == base.cache_key(), change
    # f_max=None means Nyquist: same spectrogram, same key.
    assert dataclasses.replace(base, f_max=11025.0).cache_key() == base.cache_key()
    assert dataclasses.replace(base, f_max=8000.0).cache_key() != base.cache_key()


def _custom_pipeline() -> PipelineConfig:
    return PipelineConfig(
        features=FeatureConfig(
            n_mels=16,
            n_fft=256,
            hop_length=128,
            sample_rate=8000,
            f_max=3000.0,
            segment_s=0.5,
            overlap_s=0.25,
            min_segment_s=0.25,
        ),
        model=ModelConfig(
            architecture="crnn-attention",
            channels=(4, 8),
            freq_pool=(2, 2),
            time_pool=(2, 1),
            rnn_type="lstm",
            rnn_hidden=8,
        ),
        train=TrainConfig(epochs=3, batch_size=4, seed=7),
        split=SplitConfig(method="stratified", val_fraction=0.1, test_fraction=0.3, seed=1),
    )


def test_pipeline_config_round_trip() -> None:
    cfg = _custom_pipeline()
    assert PipelineConfig.from_dict(cfg.to_dict()) == cfg
    assert PipelineConfig.from_dict(PipelineConfig().to_dict()) == PipelineConfig()


def test_pipeline_config_json_round_trip_restores_tuples() -> None:
    cfg = _custom_pipeline()
    data = json.loads(json.dumps(cfg.to_dict()))
    assert isinstance(data["model"]["channels"], list)
    back = PipelineConfig.from_dict(data)
    assert back == cfg
    assert isinstance(back.model.channels, tuple)
    assert isinstance(back.model.freq_pool, tuple)
    assert isinstance(back.model.time_pool, tuple)
    assert hash(back.model) == hash(cfg.model)


def test_pipeline_config_from_partial_dict_uses_defaults() -> None:
    cfg = PipelineConfig.from_dict({"train": {"epochs": 2}})
    assert cfg.train.epochs == 2
    assert cfg.features == FeatureConfig()
    assert cfg.model == ModelConfig(architecture="crnn-attention")  # a config from before the model zoo
    assert PipelineConfig().features == PipelineConfig.from_options().features  # the default model's preprocessing


def test_pipeline_config_from_dict_validates() -> None:
    data = PipelineConfig().to_dict()
    data["features"]["overlap_s"] = 10.0
    with pytest.raises(ValueError, match="10.0"):
        PipelineConfig.from_dict(data)


def test_flatten_gives_dotted_keys() -> None:
    flat = flatten(PipelineConfig().to_dict())
    assert flat["features.n_mels"] == 96
    assert flat["model.channels"] == (32, 64, 64, 128)
    assert flat["train.learning_rate"] == 1e-3
    assert flat["split.method"] == "auto"
    assert all(not isinstance(v, dict) for v in flat.values())
    n_fields = sum(len(dataclasses.fields(c)) for c in (FeatureConfig, ModelConfig, TrainConfig, SplitConfig))
    assert len(flat) == n_fields
    assert flatten({"a": {"b": {"c": 1}}, "d": 2}) == {"a.b.c": 1, "d": 2}
    assert flatten({"a": {}}) == {}
