"""The musicnn port: layer shapes, the TF weight mapping, the fused eval path, musicnn's input compression."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crnn import musicnn
from crnn.musicnn import Musicnn, _ConvBNPool, load_pretrained, load_tf_variables, musicnn_input, tf_variable_map


def _randomise_batch_norms(model: torch.nn.Module, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.weight.data = torch.randn(m.weight.shape, generator=gen)  # some gammas negative
            m.bias.data = torch.randn(m.bias.shape, generator=gen)
            m.running_mean = torch.randn(m.running_mean.shape, generator=gen)
            m.running_var = torch.rand(m.running_var.shape, generator=gen) + 0.5


def _as_tf(model: Musicnn) -> dict[str, np.ndarray]:
    """The model's weights in TensorFlow's layouts and names: the inverse of the loader."""
    state, out = model.state_dict(), {}
    for name, tf in tf_variable_map().items():
        value = state[name].numpy()
        if value.ndim == 4:  # Conv2d (out, in, kh, kw) -> (kh, kw, in, out)
            value = value.transpose(2, 3, 1, 0)
        elif value.ndim == 3:  # Conv1d (out, C, 7) -> TF (7, C, 1, out)
            value = value.transpose(2, 1, 0)[:, :, None, :]
        elif value.ndim == 2:
            value = value.T
        out[tf] = value
    return out


def test_layer_shapes_and_parameter_count() -> None:
    model = Musicnn().eval()
    assert sum(p.numel() for p in model.parameters()) == 787_159
    assert "787 159" in Musicnn.__doc__
    with torch.inference_mode():
        for frames in (187, 63, 1):  # a 3 s patch, a 1 s excerpt, a single frame
            features = model.embed(torch.randn(2, 1, frames, 96))
            logits, penultimate = model(torch.randn(2, 1, frames, 96))
            assert features.shape == (2, musicnn.EMBEDDING_DIM, frames) == (2, 753, frames)
            assert logits.shape == (2, 50) and penultimate.shape == (2, musicnn.PENULTIMATE_DIM)


def test_every_weight_and_statistic_has_a_tf_variable_of_the_right_shape() -> None:
    model = Musicnn()
    mapping = tf_variable_map()
    needed = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    assert set(mapping) == needed
    assert len(set(mapping.values())) == len(mapping)  # one TF variable per torch tensor
    # TF's creation order: 8 conv2d layers, 11 batch norms, 2 dense layers
    assert {v.split("/")[0] for v in mapping.values()} == (
        {"conv2d"} | {f"conv2d_{i}" for i in range(1, 8)} | {"batch_normalization"}
        | {f"batch_normalization_{i}" for i in range(1, 11)} | {"dense", "dense_1"}
    )  # fmt: skip
    assert mapping["timbral.0.conv.weight"] == "conv2d/kernel"
    assert mapping["midend.2.bn.running_var"] == "batch_normalization_8/moving_variance"
    assert mapping["logits.bias"] == "dense_1/bias"


def test_tf_layout_variables_load_back_to_the_same_network() -> None:
    torch.manual_seed(1)
    source = Musicnn().eval()
    _randomise_batch_norms(source)
    target = Musicnn().eval()
    load_tf_variables(target, _as_tf(source))
    x = torch.randn(3, 1, 187, 96)
    with torch.inference_mode():
        for a, b in zip(source(x), target(x), strict=True):
            torch.testing.assert_close(a, b)


def test_missing_or_misshapen_variables_are_clear_errors(tmp_path) -> None:
    variables = _as_tf(Musicnn())
    with pytest.raises(KeyError, match="lack 1 variables, e.g. dense_1/bias"):
        load_tf_variables(Musicnn(), {k: v for k, v in variables.items() if k != "dense_1/bias"})
    with pytest.raises(ValueError, match=r"shape \(200, 51\) does not fit"):
        load_tf_variables(Musicnn(), variables | {"dense_1/kernel": np.zeros((200, 51), np.float32)})
    np.savez(tmp_path / "w.npz", __checkpoint__=np.array("MTT_musicnn"), **variables)
    with pytest.raises(ValueError, match="holds musicnn checkpoint 'MTT_musicnn', not 'MSD_musicnn'"):
        load_pretrained(tmp_path / "w.npz", "MSD_musicnn")
    with pytest.raises(ValueError, match="must be one of MSD_musicnn, MTT_musicnn"):
        load_pretrained(tmp_path / "w.npz", "MSD_vgg")
    assert not load_pretrained(tmp_path / "w.npz", "MTT_musicnn").training


def test_fused_eval_path_equals_relu_batch_norm_max() -> None:
    torch.manual_seed(2)
    block = _ConvBNPool(12, (7, 38), (3, 3))
    _randomise_batch_norms(block, seed=3)
    assert (block.bn.weight < 0).any() and (block.bn.weight > 0).any()
    x = torch.randn(2, 1, 50, 96)
    block.eval()
    with torch.inference_mode():
        fused = block(x)
        reference = block.bn(torch.relu(block.conv(torch.nn.functional.pad(x, (0, 0, 3, 3))))).amax(dim=3)
    torch.testing.assert_close(fused, reference)


def test_musicnn_input_is_musicnns_log_compression_of_float16_power() -> None:
    db = torch.tensor([[[-100.0, -30.0, 0.0, 20.0]]])  # (B=1, n_mels=1, frames=4)
    power = np.float16(10 ** (db.numpy() / 10)).astype(np.float32)  # musicnn stores the mel power as float16
    expected = np.log10(10000 * power + 1).transpose(0, 2, 1)[:, None]
    got = musicnn_input(db)
    assert got.shape == (1, 1, 4, 1)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)


def test_a_sparse_spectrum_lifted_to_the_reference_level_stays_finite() -> None:
    """A pure tone: nearly all mel bands sit at the floor, so the level shift lifts the one band past float16's range."""
    from crnn.config import PipelineConfig
    from crnn.inference import predict_waveform
    from crnn.zoo import build_model

    loud = torch.full((1, 96, 10), 120.0)  # dB: 1e12 power, inf in float16
    assert torch.isfinite(musicnn_input(loud)).all()
    model = build_model(PipelineConfig.from_options(architecture="musicnn-linear")).eval()
    t = np.arange(16000 * 4) / 16000
    probs, segments = predict_waveform(model, (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)
    assert np.isfinite(probs).all() and np.isfinite(segments).all()
