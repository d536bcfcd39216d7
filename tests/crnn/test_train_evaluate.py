"""Tests for crnn.train, crnn.evaluate and crnn.inference on tiny synthetic problems."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_score, recall_score
from torch import nn

from crnn import GENRES
from crnn.config import FeatureConfig, ModelConfig, PipelineConfig, TrainConfig
from crnn.evaluate import classification_report, predict_segments, track_probs
from crnn.features import log_mel_librosa, segment_starts
from crnn.inference import (
    build_model,
    checkpoint_labels,
    checkpoint_state,
    load_checkpoint,
    predict_file,
    predict_waveform,
)
from crnn.models import CRNN
from crnn.train import SegmentDataset, fit, save_checkpoint

FEATURES = FeatureConfig(
    n_mels=16, n_fft=256, hop_length=128, sample_rate=8000, segment_s=0.5, overlap_s=0.25, min_segment_s=0.25
)
# FEATURES: segment_frames = 31, hop_frames = 16, min_frames = 16.
TINY = ModelConfig(
    architecture="crnn-attention",
    channels=(4, 8),
    freq_pool=(2, 2),
    time_pool=(2, 2),
    rnn_hidden=8,
    attention_dim=8,
    dropout=0.1,
)
FREQS = (300.0, 900.0, 2500.0)
CPU = torch.device("cpu")


def tone(freq: float, seconds: float, *, seed: int, sample_rate: int = 8000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    amp = rng.uniform(0.2, 0.5)
    y = amp * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi)) + 0.02 * rng.standard_normal(t.size)
    return y.astype(np.float32)


def tone_tracks(n_per_class: int, *, seed: int, seconds: float = 1.0, swap: bool = False):
    """Log-mels of pure-tone tracks, one frequency per class; ``swap`` exchanges the labels of classes 0 and 1."""
    mels, labels = [], []
    for c, freq in enumerate(FREQS):
        for i in range(n_per_class):
            mels.append(log_mel_librosa(tone(freq, seconds, seed=seed * 1000 + c * 100 + i), FEATURES))
            labels.append({0: 1, 1: 0}.get(c, c) if swap else c)
    return mels, labels


def tiny_model(n_classes: int = 3, seed: int = 0) -> CRNN:
    torch.manual_seed(seed)
    return CRNN(FEATURES, ModelConfig(**{**TINY.__dict__, "labels": tuple(f"c{i}" for i in range(n_classes))}))


def train_val(seed: int = 0, *, swap_val: bool = False) -> tuple[SegmentDataset, SegmentDataset]:
    train = SegmentDataset(*tone_tracks(4, seed=1), FEATURES, jitter=True)
    val = SegmentDataset(*tone_tracks(2, seed=2, swap=swap_val), FEATURES)
    return train, val


def encoded_track(track: int, n_frames: int) -> np.ndarray:
    """A log-mel whose every cell says which track and frame it came from: track * 1000 + frame."""
    return np.tile(track * 1000 + np.arange(n_frames, dtype=np.float32), (FEATURES.n_mels, 1))


# --- SegmentDataset ---------------------------------------------------------------------------


def test_segment_dataset_skips_short_tracks_and_never_spans_tracks() -> None:
    lengths = [20, 31, 80, 10, 47]  # 20 and 10 are shorter than one segment (31 frames)
    mels = [encoded_track(t, n) for t, n in enumerate(lengths)]
    ds = SegmentDataset(mels, [5, 6, 7, 8, 9], FEATURES)
    expected = [(t, s) for t, n in enumerate(lengths) if n >= 31 for s in segment_starts(n, FEATURES)]
    assert len(ds) == len(expected) == 1 + 4 + 2
    seen_tracks = set()
    for i in range(len(ds)):
        x, label, track = ds[i]
        assert x.shape == (FEATURES.n_mels, FEATURES.segment_frames)
        assert x.dtype == torch.float32
        values = x[0].numpy()
        assert np.all(values // 1000 == track)  # every column comes from one track
        frames = values % 1000
        assert np.array_equal(frames, np.arange(frames[0], frames[0] + FEATURES.segment_frames))
        assert (track, int(frames[0])) == expected[i]
        assert frames[-1] < lengths[track]
        assert label == 5 + track
        seen_tracks.add(track)
    assert seen_tracks == {1, 2, 4}


def test_segment_dataset_jitter_stays_inside_the_track() -> None:
    lengths = [31, 80, 47]
    mels = [encoded_track(t, n) for t, n in enumerate(lengths)]
    ds = SegmentDataset(mels, [0, 1, 2], FEATURES, jitter=True)
    half = FEATURES.hop_frames // 2
    starts_seen: dict[int, set[int]] = {}
    for _ in range(30):
        for i in range(len(ds)):
            x, _, track = ds[i]
            values = x[0].numpy()
            assert np.all(values // 1000 == track)
            start = int(values[0] % 1000)
            assert 0 <= start and start + FEATURES.segment_frames <= lengths[track]
            assert abs(start - ds.items[i][1]) <= half
            assert np.array_equal(values % 1000, np.arange(start, start + FEATURES.segment_frames))
            starts_seen.setdefault(i, set()).add(start)
    assert starts_seen[0] == {0}  # a one-segment track cannot move
    assert max(len(s) for s in starts_seen.values()) > 1  # jitter does move the others
    # The same torch seed gives the same crops.
    crops = []
    for _ in range(2):
        torch.manual_seed(3)
        crops.append([ds[i][0] for i in range(len(ds))])
    assert all(torch.equal(a, b) for a, b in zip(*crops))


def test_segment_dataset_jitter_differs_between_dataloader_workers() -> None:
    mels = [encoded_track(0, 200)]
    ds = SegmentDataset(mels, [0], FEATURES, jitter=True)
    # spawned workers: a worker forked from a pytest-xdist worker that earlier tests left with threads died at
    # start in one full-suite run (exit code 1); the seeding under test is the same for both start methods
    loader = torch.utils.data.DataLoader(
        ds,
        batch_size=1,
        num_workers=2,
        generator=torch.Generator().manual_seed(0),
        multiprocessing_context="spawn",
    )
    epochs = [[int(x[0, 0, 0].item()) % 1000 for x, _, _ in loader] for _ in range(2)]
    assert epochs[0] != epochs[1]  # a new epoch draws new crops


# --- fit ----------------------------------------------------------------------------------------


def test_fit_learns_separable_tones(tmp_path: Path) -> None:
    train, val = train_val()
    model = tiny_model()
    calls: list[tuple[int, dict[str, float]]] = []
    states: list[dict] = []

    def on_epoch_end(epoch: int, metrics: dict[str, float]) -> None:
        calls.append((epoch, dict(metrics)))
        states.append(copy.deepcopy(model.state_dict()))

    ckpt = tmp_path / "ckpt" / "best.pt"
    cfg = TrainConfig(
        epochs=6, batch_size=8, learning_rate=1e-2, patience=6, seed=0, freq_mask=0, time_mask=0, calibrate=False
    )  # calibration only sets the temperature: tests/crnn/test_calibration.py
    result = fit(model, train, val, cfg, device=CPU, checkpoint_path=ckpt, on_epoch_end=on_epoch_end)

    assert [e for e, _ in calls] == list(range(1, len(result.history) + 1))
    for (_, metrics), hist in zip(calls, result.history):
        assert set(metrics) == {"train/loss", "train/accuracy", "val/loss", "val/accuracy"}
        assert metrics == hist
        assert 0 <= metrics["val/accuracy"] <= 1 and metrics["val/loss"] >= 0
    val_losses = [h["val/loss"] for h in result.history]
    assert result.best_epoch == 1 + int(np.argmin(val_losses))
    assert result.best_metrics == result.history[result.best_epoch - 1]
    assert result.best_metrics["val/accuracy"] >= 0.9
    assert result.history[-1]["train/loss"] < result.history[0]["train/loss"]

    # The best weights are back in the model, and in the checkpoint, written atomically.
    for k, v in model.state_dict().items():
        assert torch.equal(v, states[result.best_epoch - 1][k]), k
    saved = torch.load(ckpt, weights_only=True)
    assert saved.keys() == model.state_dict().keys()
    for k, v in model.state_dict().items():
        assert torch.equal(v, saved[k]), k
    assert [p.name for p in ckpt.parent.iterdir()] == ["best.pt"]

    # Re-scoring the validation set reproduces the best epoch's metrics.
    model.eval()
    with torch.inference_mode():
        x = torch.stack([val[i][0] for i in range(len(val))])
        y = torch.tensor([val[i][1] for i in range(len(val))])
        logits = model.classify(x)
    assert nn.functional.cross_entropy(logits, y).item() == pytest.approx(result.best_metrics["val/loss"], abs=1e-5)
    assert (logits.argmax(1) == y).float().mean().item() == pytest.approx(result.best_metrics["val/accuracy"])


def test_fit_is_deterministic_for_a_seed() -> None:
    cfg = TrainConfig(
        epochs=2, batch_size=8, learning_rate=1e-2, seed=5, freq_mask=4, time_mask=4
    )  # augmentation draws from the seeded RNG too
    runs = []
    for _ in range(2):
        train, val = train_val(seed=5)
        model = tiny_model(seed=5)
        result = fit(model, train, val, cfg, device=CPU)
        runs.append((result.history, model.state_dict()))
    assert runs[0][0] == runs[1][0]
    for k, v in runs[0][1].items():
        assert torch.equal(v, runs[1][1][k]), k


def test_mixup_still_learns_separable_tones_and_is_seeded() -> None:
    cfg = TrainConfig(epochs=6, batch_size=8, learning_rate=1e-2, seed=3, freq_mask=0, time_mask=0, mixup_alpha=0.4)
    runs = []
    for _ in range(2):
        train, val = train_val(seed=3)
        result = fit(tiny_model(seed=3), train, val, cfg, device=CPU)
        runs.append(result.history)
    assert runs[0] == runs[1]  # the Beta draws and permutations come from the seeded RNG
    assert max(h["val/accuracy"] for h in runs[0]) >= 0.9
    plain = fit(tiny_model(seed=3), *train_val(seed=3), dataclasses.replace(cfg, mixup_alpha=0.0), device=CPU)
    assert plain.history[0]["train/loss"] != runs[0][0]["train/loss"]  # mixup changed the training batches
    with pytest.raises(ValueError, match="mixup_alpha must be >= 0, got -1"):
        TrainConfig(mixup_alpha=-1)


def test_fit_restores_best_weights_when_later_epochs_are_worse(tmp_path: Path) -> None:
    # Validation labels of classes 0 and 1 are swapped: learning the training set makes val/loss worse.
    train, val = train_val(swap_val=True)
    model = tiny_model()
    states: list[dict] = []
    cfg = TrainConfig(
        epochs=3, batch_size=8, learning_rate=1e-2, patience=5, seed=0, freq_mask=0, time_mask=0, calibrate=False
    )
    result = fit(
        model,
        train,
        val,
        cfg,
        device=CPU,
        checkpoint_path=tmp_path / "best.pt",
        on_epoch_end=lambda e, m: states.append(copy.deepcopy(model.state_dict())),
    )
    assert len(result.history) == 3 and not result.stopped_early
    assert result.best_epoch < 3
    best, last = states[result.best_epoch - 1], states[-1]
    assert any(not torch.equal(best[k], last[k]) for k in best)
    for k, v in model.state_dict().items():
        assert torch.equal(v, best[k]), k
    saved = torch.load(tmp_path / "best.pt", weights_only=True)
    assert all(torch.equal(saved[k], best[k]) for k in best)


class ConstantModel(nn.Module):
    """Uniform logits whatever the input, so ``val/loss`` can never improve after epoch 1."""

    def __init__(self, n_classes: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(n_classes))

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return (0 * self.bias).expand(len(x), -1)


@pytest.mark.parametrize("patience", [1, 2])
def test_fit_stops_early_when_val_loss_cannot_improve(patience: int) -> None:
    train, val = train_val()
    cfg = TrainConfig(epochs=10, batch_size=16, patience=patience, seed=0, freq_mask=0, time_mask=0)
    result = fit(ConstantModel(3), train, val, cfg, device=CPU)
    assert result.stopped_early
    assert result.best_epoch == 1
    assert len(result.history) == 1 + patience
    assert result.history[0]["val/loss"] == pytest.approx(np.log(3), abs=1e-6)
    assert len({h["val/loss"] for h in result.history}) == 1


def test_fit_rejects_empty_sets() -> None:
    train, val = train_val()
    empty = SegmentDataset([encoded_track(0, 20)], [0], FEATURES)  # shorter than a segment
    assert len(empty) == 0
    cfg = TrainConfig(epochs=1)
    with pytest.raises(ValueError, match="got 0 and"):
        fit(tiny_model(), empty, val, cfg, device=CPU)
    with pytest.raises(ValueError, match=rf"got {len(train)} and 0"):
        fit(tiny_model(), train, empty, cfg, device=CPU)


def test_save_checkpoint_is_atomic(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "model.pt"
    save_checkpoint({"a": torch.arange(3)}, path)
    save_checkpoint({"a": torch.arange(4)}, path)
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.arange(4))
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]


# --- evaluate -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("n_classes", "n", "seed"), [(5, 200, 0), (10, 37, 1), (6, 50, 2), (2, 1, 3)])
def test_classification_report_matches_sklearn(n_classes: int, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    # Class n_classes - 1 never appears when n_classes == 6: its F1 counts as 0 in the macro mean.
    high = n_classes - 1 if n_classes == 6 else n_classes
    y_true = rng.integers(0, high, n)
    y_pred = np.where(rng.random(n) < 0.5, y_true, rng.integers(0, high, n))
    labels = list(range(n_classes))
    report = classification_report(list(y_true), list(y_pred), n_classes)
    assert report.accuracy == pytest.approx(accuracy_score(y_true, y_pred))
    assert report.macro_f1 == pytest.approx(f1_score(y_true, y_pred, average="macro", labels=labels, zero_division=0))
    kw = {"average": None, "labels": labels, "zero_division": 0}
    np.testing.assert_allclose(report.precision, precision_score(y_true, y_pred, **kw))
    np.testing.assert_allclose(report.recall, recall_score(y_true, y_pred, **kw))
    np.testing.assert_allclose(report.f1, f1_score(y_true, y_pred, **kw))
    np.testing.assert_array_equal(report.support, np.bincount(y_true, minlength=n_classes))
    np.testing.assert_array_equal(report.confusion, confusion_matrix(y_true, y_pred, labels=labels))
    assert report.confusion.sum() == n


def test_classification_report_perfect_and_rejects_bad_input() -> None:
    perfect = classification_report([0, 1, 2, 2], [0, 1, 2, 2], 3)
    assert perfect.accuracy == 1.0 and perfect.macro_f1 == 1.0
    np.testing.assert_array_equal(perfect.confusion, np.diag([1, 1, 2]))
    with pytest.raises(ValueError, match="3 and 2"):
        classification_report([0, 1, 2], [0, 1], 3)
    with pytest.raises(ValueError, match="non-empty"):
        classification_report([], [], 3)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        classification_report([0, 3], [0, 1], 3)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        classification_report([0, 1], [-1, 1], 3)


def test_predict_segments_rows_are_probabilities() -> None:
    model = tiny_model(n_classes=4).eval()
    gen = torch.Generator().manual_seed(0)
    for n_frames in (FEATURES.min_frames, 31, 100):
        mel = torch.randn(FEATURES.n_mels, n_frames, generator=gen) * 10 - 40
        probs = predict_segments(model, mel, FEATURES)  # scored without the training-time overlap
        assert probs.shape == (len(segment_starts(n_frames, dataclasses.replace(FEATURES, overlap_s=0.0))), 4)
        overlapping = predict_segments(model, mel, FEATURES, overlap_s=None)  # None: the config's 0.25 s overlap
        assert overlapping.shape == (len(segment_starts(n_frames, FEATURES)), 4)
        assert overlapping.shape[0] > probs.shape[0] if n_frames == 100 else overlapping.shape == probs.shape
        assert np.all(probs >= 0)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
        # Batching does not change the result.
        np.testing.assert_allclose(predict_segments(model, mel, FEATURES, batch_size=1), probs, atol=1e-5)
        np.testing.assert_allclose(track_probs(probs), probs.mean(axis=0))
    with pytest.raises(ValueError, match="shorter than min_segment_s"):
        predict_segments(model, torch.zeros(FEATURES.n_mels, FEATURES.min_frames - 1), FEATURES)


# --- inference ----------------------------------------------------------------------------------


def pipeline() -> PipelineConfig:
    return PipelineConfig(features=FEATURES, model=ModelConfig(**{**TINY.__dict__, "rnn_type": "lstm"}))


def trained_looking_model(cfg: PipelineConfig) -> CRNN:
    """A model whose batch-norm statistics are no longer the defaults."""
    torch.manual_seed(0)
    model = build_model(cfg).train()
    with torch.no_grad():
        model.classify(torch.randn(8, FEATURES.n_mels, 31) * 10 - 40)
    return model.eval()


def test_checkpoint_round_trip_gives_identical_predictions(tmp_path: Path) -> None:
    cfg = pipeline()
    model = trained_looking_model(cfg)
    path = tmp_path / "model.pt"
    save_checkpoint(checkpoint_state(model, cfg), path)
    loaded, loaded_cfg = load_checkpoint(path)
    assert loaded_cfg == cfg
    assert not loaded.training
    state = torch.load(path, weights_only=True)
    assert state["genres"] == list(GENRES)
    wave = tone(440.0, 1.5, seed=0)
    a, seg_a = predict_waveform(model, wave, 8000)
    b, seg_b = predict_waveform(loaded, wave, 8000)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(seg_a, seg_b)
    assert a.shape == (10,)


def test_labels_travel_in_the_checkpoint_and_old_checkpoints_get_gtzan_genres(tmp_path: Path) -> None:
    cfg = pipeline().with_labels(("hum", "noise", "tone"))
    model = CRNN(cfg.features, cfg.model)
    save_checkpoint(checkpoint_state(model, cfg), tmp_path / "custom.pt")
    loaded, loaded_cfg = load_checkpoint(tmp_path / "custom.pt")
    assert loaded_cfg.model.labels == checkpoint_labels(tmp_path / "custom.pt") == ("hum", "noise", "tone")
    assert loaded.classifier.out_features == 3

    gtzan = pipeline()
    old = checkpoint_state(CRNN(gtzan.features, gtzan.model), gtzan)
    old["config"]["model"] = {k: v for k, v in old["config"]["model"].items() if k != "labels"} | {"n_classes": 10}
    save_checkpoint(old, tmp_path / "with-genres.pt")
    del old["genres"]
    save_checkpoint(old, tmp_path / "before-genres.pt")
    for name in ("with-genres.pt", "before-genres.pt"):
        assert load_checkpoint(tmp_path / name)[1].model.labels == GENRES == checkpoint_labels(tmp_path / name)
    old["config"]["model"]["n_classes"] = 3
    save_checkpoint(old, tmp_path / "mismatch.pt")
    with pytest.raises(ValueError, match="n_classes=3"):
        load_checkpoint(tmp_path / "mismatch.pt")


def test_load_checkpoint_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")
    save_checkpoint({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(KeyError):
        load_checkpoint(tmp_path / "other.pt")


def test_predict_waveform_stereo_at_another_rate() -> None:
    model = trained_looking_model(pipeline())
    rate, seconds = 16000, 2.0
    t = np.arange(int(seconds * rate)) / rate
    mono = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 1700 * t)).astype(np.float32)
    probs, seg = predict_waveform(model, np.stack([mono, mono], axis=1), rate)
    n_frames = 1 + round(mono.size * FEATURES.sample_rate / rate) // FEATURES.hop_length
    scored = dataclasses.replace(FEATURES, overlap_s=0.0)  # scoring drops the training-time overlap
    assert seg.shape == (len(segment_starts(n_frames, scored)), 10) == (4, 10)
    assert probs.shape == (10,)
    assert probs.sum() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(probs, seg.mean(axis=0))
    # Stereo with equal channels is the mono signal.
    mono_probs, mono_seg = predict_waveform(model, mono, rate)
    np.testing.assert_allclose(seg, mono_seg, atol=1e-6)
    # Opposite-phase channels mix to silence, not to the signal.
    silent, _ = predict_waveform(model, np.stack([mono, -mono], axis=1), rate)
    np.testing.assert_allclose(silent, predict_waveform(model, np.zeros(mono.size, np.float32), rate)[0], atol=1e-5)
    # The same tones synthesised at the model's rate give about the same answer.
    t8 = np.arange(int(seconds * 8000)) / 8000
    native = (0.3 * np.sin(2 * np.pi * 440 * t8) + 0.2 * np.sin(2 * np.pi * 1700 * t8)).astype(np.float32)
    native_probs, _ = predict_waveform(model, native, 8000)
    np.testing.assert_allclose(mono_probs, native_probs, atol=2e-2)


@pytest.mark.parametrize("n_samples", [0, 50, 128, 129, 300, 1000])
def test_predict_waveform_rejects_audio_shorter_than_min_segment(n_samples: int) -> None:
    # min_segment_s = 0.25 s: 16 frames, i.e. at least 15 * 128 = 1920 samples at 8 kHz.
    model = trained_looking_model(pipeline())
    with pytest.raises(ValueError, match="min_segment_s=0.25"):
        predict_waveform(model, np.zeros(n_samples, np.float32), 8000)
    # At 16 kHz the same count is half as long.
    with pytest.raises(ValueError, match="min_segment_s=0.25"):
        predict_waveform(model, np.zeros((n_samples, 2), np.float32), 16000)


def test_predict_waveform_shortest_accepted_audio() -> None:
    model = trained_looking_model(pipeline())
    n = (FEATURES.min_frames - 1) * FEATURES.hop_length  # exactly min_frames frames
    probs, seg = predict_waveform(model, tone(500.0, n / 8000, seed=1), 8000)
    assert seg.shape == (1, 10)
    assert probs.sum() == pytest.approx(1.0, abs=1e-5)


def test_predict_file_equals_predict_waveform(tmp_path: Path) -> None:
    model = trained_looking_model(pipeline())
    wave = tone(700.0, 1.2, seed=4, sample_rate=11025)
    path = tmp_path / "clip.wav"
    sf.write(path, np.stack([wave, 0.5 * wave], axis=1), 11025, subtype="FLOAT")
    from_file, _ = predict_file(model, path)
    from_wave, _ = predict_waveform(model, np.stack([wave, 0.5 * wave], axis=1), 11025)
    np.testing.assert_allclose(from_file, from_wave, atol=1e-6)


# --- SpecAugment ------------------------------------------------------------------------------


def test_spec_augment_masks_fill_with_the_example_mean_and_leave_the_rest() -> None:
    from crnn.train import apply_masks, spec_augment

    torch.manual_seed(0)
    x = torch.randn(8, 16, 40) * 5 - 40  # dB-like values around -40
    y = apply_masks(spec_augment(TrainConfig(freq_mask=6, time_mask=10)), x)
    changed = ~torch.isclose(y, x)
    assert changed.any()
    means = x.mean(dim=(1, 2), keepdim=True).expand_as(x)
    torch.testing.assert_close(y[changed], means[changed])  # masked cells hold the example's mean level
    off = spec_augment(TrainConfig(freq_mask=0, time_mask=0))
    assert torch.equal(apply_masks(off, x), x)


# --- evaluate_tracks ----------------------------------------------------------------------------


def test_evaluate_tracks_aggregates_segments_and_skips_short_tracks() -> None:
    from crnn.evaluate import evaluate_tracks, predict_segments

    model = tiny_model().eval()
    mels, labels = tone_tracks(2, seed=4, seconds=1.5)
    mels.append(mels[0][:, : FEATURES.min_frames - 1])  # too short to score
    labels.append(0)

    result = evaluate_tracks(model, mels, labels, FEATURES)

    assert result.scored == list(range(6))
    for i, pred in zip(result.scored, result.predictions):
        probs = predict_segments(model, torch.from_numpy(mels[i]), FEATURES)
        assert pred == int(probs.mean(axis=0).argmax())
    assert result.track.support.sum() == 6
    n_segments = sum(len(predict_segments(model, torch.from_numpy(mels[i]), FEATURES)) for i in result.scored)
    assert result.segment.support.sum() == n_segments > 6
    with pytest.raises(ValueError, match="none of the 1 tracks"):
        evaluate_tracks(model, mels[-1:], labels[-1:], FEATURES)
