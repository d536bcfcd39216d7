"""Tests for crnn.features: torch/librosa parity, batching, segmentation and the disk cache."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from crnn.audio import AudioDecodeError, file_sha256
from crnn.config import FeatureConfig
from crnn.features import (
    PARITY_ATOL_DB,
    FeatureCache,
    LogMel,
    batched_log_mel,
    extract_to_cache,
    log_mel,
    log_mel_librosa,
    scored_segment_starts,
    segment_log_mel,
    segment_starts,
)

SMALL = FeatureConfig(
    n_mels=16, n_fft=256, hop_length=128, sample_rate=8000, segment_s=0.5, overlap_s=0.25, min_segment_s=0.25
)
# SMALL: segment_frames = 31, hop_frames = 16, min_frames = 16.


def tones(seconds: float, sample_rate: int, *, seed: int = 0, freqs: tuple[float, ...] = (220.0, 660.0, 1500.0)):
    """A seeded sum of tones plus white noise, float32 in [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    y = sum(0.2 * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)) for f in freqs)
    y = y + 0.02 * rng.standard_normal(t.size)
    return y.astype(np.float32)


def assert_parity(torch_db: np.ndarray, librosa_db: np.ndarray) -> None:
    assert torch_db.shape == librosa_db.shape
    loud = librosa_db > -80.0
    assert loud.mean() > 0.5  # the comparison covers most bins
    assert np.abs(torch_db - librosa_db)[loud].max() <= PARITY_ATOL_DB


@pytest.mark.parametrize(("cfg", "seconds"), [(FeatureConfig(), 1.0), (SMALL, 1.0)], ids=["default", "small"])
def test_torch_and_librosa_paths_agree(cfg: FeatureConfig, seconds: float) -> None:
    y = tones(seconds, cfg.sample_rate, freqs=(220.0, 660.0, min(1500.0, cfg.sample_rate / 3)))
    ref = log_mel_librosa(y, cfg)
    got = log_mel(torch.from_numpy(y), cfg).numpy()
    assert ref.dtype == np.float32
    assert ref.shape == (cfg.n_mels, 1 + y.size // cfg.hop_length)
    assert_parity(got, ref)
    # The tones carry energy: the spectrogram is not a floor of -100 dB everywhere.
    assert ref.max() > -20.0


def test_log_mel_module_matches_function_and_batches() -> None:
    y = torch.from_numpy(np.stack([tones(0.5, 8000, seed=s) for s in range(3)]))
    out = LogMel(SMALL)(y)
    assert out.shape == (3, SMALL.n_mels, 1 + y.shape[-1] // SMALL.hop_length)
    for i in range(3):
        torch.testing.assert_close(out[i], log_mel(y[i], SMALL), atol=1e-4, rtol=0)


def test_silence_is_floored_at_minus_100_db() -> None:
    out = log_mel(torch.zeros(2000), SMALL)
    assert torch.all(out == -100.0)
    np.testing.assert_allclose(log_mel_librosa(np.zeros(2000, dtype=np.float32), SMALL), -100.0, atol=1e-4)


def test_batched_log_mel_equals_one_by_one() -> None:
    lengths = (4000, 2500, 1234)
    waves = [torch.from_numpy(tones(n / 8000, 8000, seed=i)) for i, n in enumerate(lengths)]
    out = batched_log_mel(waves, SMALL)
    assert len(out) == 3
    for w, m, n in zip(waves, out, lengths):
        assert w.shape[-1] == n
        assert m.dtype == torch.float32
        assert m.shape == (SMALL.n_mels, 1 + n // SMALL.hop_length)
        torch.testing.assert_close(m, log_mel(w, SMALL), atol=1e-4, rtol=0)
    # Order does not matter either.
    rev = batched_log_mel(waves[::-1], SMALL)
    for a, b in zip(out, rev[::-1]):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)


def test_batched_log_mel_rejects_too_short_waveform() -> None:
    pad = SMALL.n_fft // 2
    ok = torch.from_numpy(tones(0.5, 8000))
    with pytest.raises(ValueError, match=rf"waveform 1 has {pad} samples.*{pad}"):
        batched_log_mel([ok, torch.zeros(pad)], SMALL)
    # One sample more is enough.
    (m,) = batched_log_mel([torch.from_numpy(tones((pad + 1) / 8000, 8000))], SMALL)
    assert m.shape == (SMALL.n_mels, 1 + (pad + 1) // SMALL.hop_length)


def test_segment_starts_edge_cases() -> None:
    seg, hop, min_f = SMALL.segment_frames, SMALL.hop_frames, SMALL.min_frames
    assert (seg, hop, min_f) == (31, 16, 16)
    assert segment_starts(0, SMALL) == []
    assert segment_starts(min_f - 1, SMALL) == []
    assert segment_starts(min_f, SMALL) == [0]
    assert segment_starts(seg - 1, SMALL) == [0]
    assert segment_starts(seg, SMALL) == [0]
    assert segment_starts(seg + hop - 1, SMALL) == [0]
    # Exact multiples: the last segment ends on the last frame.
    for k in range(1, 5):
        n = seg + k * hop
        starts = segment_starts(n, SMALL)
        assert starts == [i * hop for i in range(k + 1)]
        assert starts[-1] + seg == n


@pytest.mark.parametrize("n_frames", [31, 32, 46, 47, 48, 100, 257, 1000])
def test_segment_starts_invariants(n_frames: int) -> None:
    starts = segment_starts(n_frames, SMALL)
    assert starts[0] == 0
    assert all(b - a == SMALL.hop_frames for a, b in zip(starts, starts[1:]))
    assert starts[-1] + SMALL.segment_frames <= n_frames
    # No room is left for one more segment.
    assert starts[-1] + SMALL.hop_frames + SMALL.segment_frames > n_frames


def test_segment_log_mel_shapes_and_content() -> None:
    gen = torch.Generator().manual_seed(0)
    mel = torch.randn(SMALL.n_mels, 100, generator=gen)
    segs = segment_log_mel(mel, SMALL)
    starts = segment_starts(100, SMALL)
    assert segs.shape == (len(starts), SMALL.n_mels, SMALL.segment_frames)
    for seg, s in zip(segs, starts):
        torch.testing.assert_close(seg, mel[:, s : s + SMALL.segment_frames])
    # Between min_frames and one segment: one shorter segment, the whole track.
    short = mel[:, :20]
    segs = segment_log_mel(short, SMALL)
    assert segs.shape == (1, SMALL.n_mels, 20)
    torch.testing.assert_close(segs[0], short)


@pytest.mark.parametrize("n_frames", [16, 31, 47, 63, 64, 100, 257, 1000, 10_000])
@pytest.mark.parametrize("cap", [1, 3, 6])
def test_scored_segment_starts_keep_at_most_max_segments_spread_over_the_track(n_frames: int, cap: int) -> None:
    capped = FeatureConfig(**{**SMALL.__dict__, "max_segments": cap})
    every = segment_starts(n_frames, SMALL)
    starts = scored_segment_starts(n_frames, capped)
    assert scored_segment_starts(n_frames, SMALL) == every  # 0: every segment
    assert set(starts) <= set(every) and starts == sorted(set(starts))
    assert len(starts) == min(cap, len(every))
    if len(every) > cap:  # one from the middle of each of `cap` equal stretches of the segment list
        n = len(every)
        for i, s in enumerate(starts):
            assert i * n <= cap * every.index(s) < (i + 1) * n


def test_segment_log_mel_cuts_only_the_scored_segments() -> None:
    capped = FeatureConfig(**{**SMALL.__dict__, "max_segments": 2})
    mel = torch.randn(SMALL.n_mels, 100, generator=torch.Generator().manual_seed(0))  # 5 segments: 0, 16, ..., 64
    segs = segment_log_mel(mel, capped)
    assert segs.shape == (2, SMALL.n_mels, SMALL.segment_frames)
    torch.testing.assert_close(segs[0], mel[:, 16:47])  # segments 1 and 3 of 0..4
    torch.testing.assert_close(segs[1], mel[:, 48:79])


def test_max_segments_is_checked() -> None:
    with pytest.raises(ValueError, match="max_segments must be >= 0"):
        FeatureConfig(max_segments=-1)


def test_segment_log_mel_rejects_too_short() -> None:
    with pytest.raises(ValueError, match=r"15 frames.*min_segment_s=0.25"):
        segment_log_mel(torch.zeros(SMALL.n_mels, SMALL.min_frames - 1), SMALL)


def test_feature_cache_save_is_atomic_and_keyed_by_config(tmp_path: Path) -> None:
    other = FeatureConfig(
        n_mels=32, n_fft=256, hop_length=128, sample_rate=8000, segment_s=0.5, overlap_s=0.25, min_segment_s=0.25
    )
    a, b = FeatureCache(tmp_path, SMALL), FeatureCache(tmp_path, other)
    assert a.dir != b.dir
    assert a.dir.parent == b.dir.parent == tmp_path
    value = np.arange(16 * 5, dtype=np.float64).reshape(16, 5)
    assert not a.has("abc")
    path = a.save("abc", value)
    assert path == a.path("abc") == a.dir / "abc.npy"
    assert a.has("abc") and not b.has("abc")
    loaded = a.load("abc")
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, value)
    b.save("abc", value[:, :2])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([SMALL.cache_key(), other.cache_key()])
    assert not list(tmp_path.rglob("*.tmp"))
    # Overwriting replaces the entry in one step.
    a.save("abc", value + 1)
    np.testing.assert_array_equal(a.load("abc"), value + 1)
    assert not list(tmp_path.rglob("*.tmp"))


def test_feature_cache_failed_save_keeps_old_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = FeatureCache(tmp_path, SMALL)
    cache.save("abc", np.ones((2, 2)))

    def broken_save(f, value) -> None:
        f.write(b"\x93NUMPY partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        cache.save("abc", np.zeros((2, 2)))
    monkeypatch.undo()
    np.testing.assert_array_equal(cache.load("abc"), np.ones((2, 2)))


def write_wavs(folder: Path, n: int, *, sample_rate: int = 8000, seconds: float = 0.6) -> list[tuple[str, str]]:
    """Write ``n`` distinct seeded WAV files; return ``(path, sha256)`` pairs."""
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for i in range(n):
        path = folder / f"track{i}.wav"
        sf.write(path, tones(seconds + 0.1 * i, sample_rate, seed=i, freqs=(200.0 * (i + 1), 900.0)), sample_rate)
        items.append((str(path), file_sha256(path)))
    return items


def test_extract_to_cache_does_no_work_twice(tmp_path: Path) -> None:
    items = write_wavs(tmp_path / "audio", 3)
    cache = FeatureCache(tmp_path / "cache", SMALL)
    progress: list[tuple[int, int]] = []
    assert extract_to_cache(items, cache, on_progress=lambda d, t: progress.append((d, t))) == {
        "computed": 3,
        "cached": 0,
    }
    assert progress == [(1, 3), (2, 3), (3, 3)]
    mtimes = {sha: os.stat(cache.path(sha)).st_mtime_ns for _, sha in items}
    for path, sha in items:
        n_samples = sf.info(path).frames
        mel = cache.load(sha)
        assert mel.shape == (SMALL.n_mels, 1 + n_samples // SMALL.hop_length)
        np.testing.assert_allclose(mel, log_mel_librosa(sf.read(path, dtype="float32")[0], SMALL), atol=1e-5)
    assert extract_to_cache(items, cache) == {"computed": 0, "cached": 3}
    assert {sha: os.stat(cache.path(sha)).st_mtime_ns for _, sha in items} == mtimes
    # A new file is the only one computed.
    more = items + write_wavs(tmp_path / "more", 4)[3:]
    assert extract_to_cache(more, cache) == {"computed": 1, "cached": 3}
    assert not list((tmp_path / "cache").rglob("*.tmp"))


def test_extract_to_cache_torch_backend_matches_librosa(tmp_path: Path) -> None:
    items = write_wavs(tmp_path / "audio", 3)
    lib = FeatureCache(tmp_path / "lib", SMALL)
    tor = FeatureCache(tmp_path / "tor", SMALL)
    assert extract_to_cache(items, lib, backend="librosa")["computed"] == 3
    progress: list[tuple[int, int]] = []
    stats = extract_to_cache(
        items, tor, backend="torch", batch_size=2, on_progress=lambda d, t: progress.append((d, t))
    )
    assert stats == {"computed": 3, "cached": 0}
    assert progress == [(2, 3), (3, 3)]
    for _, sha in items:
        assert_parity(tor.load(sha), lib.load(sha))


def test_extract_to_cache_rejects_unknown_backend(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'cuda'"):
        extract_to_cache([], FeatureCache(tmp_path, SMALL), backend="cuda")


def test_extract_to_cache_corrupt_file_names_the_file(tmp_path: Path) -> None:
    items = write_wavs(tmp_path / "audio", 1)
    bad = tmp_path / "audio" / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")
    cache = FeatureCache(tmp_path / "cache", SMALL)
    with pytest.raises(AudioDecodeError, match="broken.wav") as info:
        extract_to_cache([*items, (str(bad), file_sha256(bad))], cache)
    assert info.value.path == str(bad)
    assert not cache.has(file_sha256(bad))
