"""Tests for crnn.scoring (summaries, segment times, truncation, prefetching) and multi-format decoding in crnn.audio."""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import torch

from crnn import GENRES
from crnn.audio import AUDIO_EXTENSIONS, FFMPEG_EXTENSIONS, AudioDecodeError, load_audio
from crnn.config import FeatureConfig, ModelConfig
from crnn.features import log_mel, segment_log_mel
from crnn.models import CRNN
from crnn.scoring import (
    SILENCE_DBFS,
    NonFiniteError,
    SilentError,
    TooShortError,
    decode_for,
    level_dbfs,
    prefetch,
    score_waveform,
    segment_bounds_s,
    summarize,
)

CFG = FeatureConfig()  # 22050 Hz, hop 512; segments of 3 s every 1.5 s, at least 1 s
SR = CFG.sample_rate


@pytest.fixture(scope="module")
def model() -> CRNN:
    """The default CRNN, randomly initialised (seeded) and in eval mode."""
    torch.manual_seed(0)
    return CRNN(FeatureConfig(), ModelConfig()).eval()


def probs_with_top(order: list[int], top: float) -> np.ndarray:
    """Probabilities whose ranking follows ``order`` (first = ``top``), summing to 1."""
    rest = np.linspace(2.0, 1.0, len(GENRES) - 1)
    rest = rest / rest.sum() * (1.0 - top)
    probs = np.empty(len(GENRES))
    probs[order] = np.concatenate([[top], rest])
    return probs


# --- summarize ---------------------------------------------------------------------------------


def test_summarize_top_k_is_sorted_with_probabilities() -> None:
    order = [7, 2, 9, 0, 1, 3, 4, 5, 6, 8]
    probs = probs_with_top(order, 0.6)
    p = summarize(probs, probs[None], SR * 3, CFG, labels=GENRES, top_k=4)
    assert p.genre == GENRES[7] == "pop"
    assert p.probability == pytest.approx(0.6)
    assert [g for g, _ in p.top_k] == [GENRES[i] for i in order[:4]]
    assert [q for _, q in p.top_k] == pytest.approx([probs[i] for i in order[:4]])
    assert all(a[1] > b[1] for a, b in itertools.pairwise(p.top_k))
    assert p.timeline is None
    assert p.n_segments == 1
    assert p.duration_s == pytest.approx(3.0)


def test_summarize_top_k_ties_keep_genre_order_and_cap_at_n_classes() -> None:
    probs = np.full(len(GENRES), 1 / len(GENRES))
    p = summarize(probs, probs[None], SR, CFG, labels=GENRES, top_k=50)
    assert [g for g, _ in p.top_k] == list(GENRES)
    assert p.genre == GENRES[0]


@pytest.mark.parametrize(
    ("top", "threshold", "uncertain"),
    [(0.5, 0.5, False), (0.5, np.nextafter(0.5, 1.0), True), (0.49, 0.5, True), (0.3, 0.0, False), (0.99, 1.0, True)],
)
def test_uncertain_flag_is_strictly_below_threshold(top: float, threshold: float, uncertain: bool) -> None:
    probs = probs_with_top(list(range(len(GENRES))), top)
    assert probs[0] == top
    p = summarize(probs, probs[None], SR, CFG, labels=GENRES, uncertain_below=threshold)
    assert p.uncertain is uncertain


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"top_k": 0}, "top_k must be >= 1, got 0"),
        ({"top_k": -2}, "got -2"),
        ({"uncertain_below": -0.01}, r"uncertain_below must be in \[0, 1\], got -0.01"),
        ({"uncertain_below": 1.5}, "got 1.5"),
    ],
)
def test_summarize_rejects_bad_options(kwargs: dict, match: str) -> None:
    probs = np.full(len(GENRES), 0.1)
    with pytest.raises(ValueError, match=match):
        summarize(probs, probs[None], SR, CFG, labels=GENRES, **kwargs)


@pytest.mark.parametrize("seconds", [1.3, 3.0, 10.0, 10.37])
def test_summarize_timeline_follows_segment_bounds(seconds: float) -> None:
    n = int(seconds * SR)
    bounds = segment_bounds_s(n, CFG)
    seg = np.random.default_rng(0).dirichlet(np.ones(len(GENRES)), size=len(bounds))
    p = summarize(seg.mean(axis=0), seg, n, CFG, labels=GENRES, timeline=True, truncated=True)
    assert p.truncated is True
    assert p.n_segments == len(bounds) == len(p.timeline)
    for s, (a, b), probs in zip(p.timeline, bounds, seg, strict=True):
        assert (s.start_s, s.end_s) == (pytest.approx(a, abs=5e-4), pytest.approx(b, abs=5e-4))
        assert s.start_s < s.end_s <= n / SR
        assert s.genre == GENRES[int(probs.argmax())]
        assert s.probability == pytest.approx(probs.max(), abs=5e-5)
    assert p.timeline[-1].end_s <= p.duration_s


# --- segment_bounds_s ----------------------------------------------------------------------------


@pytest.mark.parametrize("seconds", [0.5, 0.99, 1.0, 2.0, 2.99, 3.0, 3.1, 4.5, 7.77, 12.0])
def test_segment_bounds_match_segment_log_mel(seconds: float) -> None:
    """The timeline's segments are those scored, with or without a cap on their number."""
    capped = dataclasses.replace(CFG, max_segments=3)
    n = int(seconds * SR)
    mel = log_mel(0.1 * torch.randn(n), capped)
    if n / SR >= CFG.min_segment_s:
        frame_s = CFG.hop_length / SR
        bounds = segment_bounds_s(n, capped)
        cut = segment_log_mel(mel, capped)
        assert len(bounds) == cut.shape[0] <= 3
        for (a, _), segment in zip(bounds, cut):
            start = round(a / frame_s)
            torch.testing.assert_close(segment, mel[:, start : start + segment.shape[1]])


@pytest.mark.parametrize("seconds", [0.5, 0.99, 1.0, 2.0, 2.99, 3.0, 3.1, 4.5, 7.77, 12.0])
def test_segment_bounds_of_every_segment(seconds: float) -> None:
    n = int(seconds * SR)
    waveform = 0.1 * torch.randn(n)
    try:
        n_segments = segment_log_mel(log_mel(waveform, CFG), CFG).shape[0]
    except ValueError:  # shorter than min_segment_s
        n_segments = 0
    bounds = segment_bounds_s(n, CFG)
    assert len(bounds) == n_segments
    frame_s = CFG.hop_length / SR
    for i, (a, b) in enumerate(bounds):
        assert a == pytest.approx(i * CFG.hop_frames * frame_s)
        assert a < b <= n / SR
        assert b - a <= CFG.segment_frames * frame_s + 1e-9


def test_segment_bounds_short_track_is_one_whole_segment() -> None:
    n = int(2.0 * SR)
    assert segment_bounds_s(n, CFG) == [(0.0, pytest.approx(2.0))]
    assert segment_bounds_s(int(0.5 * SR), CFG) == []


# --- decode_for / score_waveform --------------------------------------------------------------


@pytest.mark.parametrize(
    ("max_s", "n_out", "truncated"),
    [(None, 2 * SR, False), (5.0, 2 * SR, False), (2.0, 2 * SR, False), (1.0, SR, True), (0.25, SR // 4, True)],
)
def test_decode_for_truncation(model, write_tone, max_s, n_out, truncated) -> None:
    path = write_tone("two_seconds.wav", 440.0, 2.0, SR)
    waveform, was_truncated = decode_for(model, path, max_s)
    assert waveform.dtype == np.float32
    assert waveform.shape == (n_out,)
    assert was_truncated is truncated
    np.testing.assert_array_equal(waveform, sf.read(path, dtype="float32")[0][:n_out])


def test_decode_for_one_sample_over_is_truncated(model, tmp_path: Path) -> None:
    path = tmp_path / "one_over.wav"
    sf.write(path, np.full(SR + 1, 0.1, dtype=np.float32), SR)
    waveform, truncated = decode_for(model, path, 1.0)
    assert (waveform.size, truncated) == (SR, True)


def test_decode_for_resamples_and_truncates(model, write_tone) -> None:
    path = write_tone("hi_rate.wav", 440.0, 1.5, 44100)
    waveform, truncated = decode_for(model, path, 1.0)
    assert (waveform.size, truncated) == (SR, True)


@pytest.mark.parametrize("max_s", [8.0, 10.0])
def test_decode_for_flags_truncation_at_round_limits(model, tmp_path: Path, max_s: float) -> None:
    path = tmp_path / "long.wav"
    sf.write(path, np.full(int((max_s + 1.0) * SR), 0.1, dtype=np.float32), SR)
    waveform, truncated = decode_for(model, path, max_s)
    assert waveform.size == int(max_s * SR)
    assert truncated is True


def test_score_waveform_random_model(model) -> None:
    n = int(6.2 * SR)
    waveform = (0.1 * np.random.default_rng(0).standard_normal(n)).astype(np.float32)
    p = score_waveform(model, waveform, True, top_k=3, uncertain_below=0.5, timeline=True)
    assert p.probs.shape == (len(GENRES),)
    assert p.probs.sum() == pytest.approx(1.0, abs=1e-5)
    assert (p.probs >= 0).all()
    assert p.genre == GENRES[int(p.probs.argmax())]
    assert p.probability == pytest.approx(p.probs.max())
    scored = dataclasses.replace(CFG, overlap_s=0.0)  # scoring drops the training-time overlap
    assert p.n_segments == len(segment_bounds_s(n, scored)) == len(p.timeline) == 2
    assert p.truncated is True
    assert p.duration_s == pytest.approx(6.2, abs=1e-4)
    assert p.uncertain is (p.probability < 0.5)
    assert len(p.top_k) == 3


@pytest.mark.parametrize("kind", ["noise", "silence"])
def test_score_waveform_too_short_raises(model, kind: str) -> None:
    """Too short comes first, even for a silent file."""
    waveform = np.random.default_rng(0).uniform(-0.3, 0.3, SR // 4) if kind == "noise" else np.zeros(SR // 4)
    with pytest.raises(TooShortError, match="min_segment_s"):
        score_waveform(model, waveform.astype(np.float32))


@pytest.mark.parametrize(
    ("kind", "waveform"),
    [
        ("digital silence", np.zeros(3 * SR, dtype=np.float32)),
        ("near silence", np.random.default_rng(1).normal(0, 1e-4, 3 * SR).astype(np.float32)),  # -80 dBFS
        ("DC only", np.full(3 * SR, 0.5, dtype=np.float32)),
        ("DC plus a whisper", 0.5 + np.random.default_rng(2).normal(0, 1e-5, 3 * SR).astype(np.float32)),
    ],
)
def test_silence_and_dc_are_not_scored(model, kind: str, waveform: np.ndarray) -> None:
    """The model labels anything; silence, near-silence and a constant level are refused instead."""
    assert level_dbfs(waveform) < SILENCE_DBFS, kind
    with pytest.raises(SilentError, match="^silent: level"):
        score_waveform(model, waveform, top_k=3)


@pytest.mark.parametrize("kind", ["sine", "noise", "sine on a DC offset"])
def test_sound_is_scored(model, kind: str) -> None:
    t = np.arange(3 * SR) / SR
    waveform = {
        "sine": 0.3 * np.sin(2 * np.pi * 440 * t),
        "noise": np.random.default_rng(3).uniform(-0.3, 0.3, t.size),
        "sine on a DC offset": 0.4 + 0.1 * np.sin(2 * np.pi * 220 * t),
    }[kind].astype(np.float32)
    assert level_dbfs(waveform) > SILENCE_DBFS
    assert score_waveform(model, waveform, top_k=3).genre in GENRES


# --- prefetch ------------------------------------------------------------------------------------


def test_prefetch_preserves_order() -> None:
    delays = np.random.default_rng(0).uniform(0, 0.01, 12)

    def work(i: int) -> int:
        time.sleep(delays[i])
        return i * i

    assert list(prefetch(work, range(12), depth=3)) == [(i, i * i) for i in range(12)]


def test_prefetch_returns_exceptions_in_place() -> None:
    def work(i: int) -> int:
        if i % 3 == 1:
            raise OSError(f"bad item {i}")
        return -i

    out = list(prefetch(work, range(7), depth=2))
    assert [item for item, _ in out] == list(range(7))
    for item, result in out:
        if item % 3 == 1:
            assert isinstance(result, OSError)
            assert str(result) == f"bad item {item}"
        else:
            assert result == -item


@pytest.mark.parametrize("depth", [1, 2, 4])
def test_prefetch_runs_at_most_depth_ahead(depth: int) -> None:
    n = 10
    started = 0
    cond = threading.Condition()

    def work(i: int) -> int:
        nonlocal started
        with cond:
            started += 1
            cond.notify_all()
        return i

    ahead = []
    for consumed, (item, result) in enumerate(prefetch(work, range(n), depth=depth), start=1):
        assert item == result == consumed - 1
        with cond:  # give the worker every chance to run further ahead than allowed
            cond.wait_for(lambda c=consumed: started >= min(n, c + depth), timeout=5)
        time.sleep(0.005)
        with cond:
            ahead.append(started - consumed)
    assert max(ahead) == depth  # it does prefetch...
    assert all(a <= depth for a in ahead)  # ...but never more than depth past the item handed out
    assert started == n


def test_prefetch_pulls_items_lazily() -> None:
    pulled = []

    def items():
        for i in itertools.count():
            pulled.append(i)
            yield i

    gen = prefetch(lambda i: i, items(), depth=2)
    assert [next(gen) for _ in range(3)] == [(0, 0), (1, 1), (2, 2)]
    gen.close()
    assert len(pulled) == 3 + 2


@pytest.mark.parametrize("depth", [0, -1])
def test_prefetch_rejects_depth_below_one(depth: int) -> None:
    with pytest.raises(ValueError, match=f"depth must be >= 1, got {depth}"):
        list(prefetch(lambda i: i, [1, 2], depth=depth))


# --- load_audio across formats --------------------------------------------------------------


FORMATS = {  # suffix: (soundfile format, subtype, native rate in Hz)
    ".wav": ("WAV", "PCM_16", 44100),
    ".aiff": ("AIFF", "PCM_16", 44100),
    ".au": ("AU", "PCM_16", 44100),
    ".flac": ("FLAC", "PCM_16", 44100),
    ".ogg": ("OGG", "VORBIS", 44100),
    ".opus": ("OGG", "OPUS", 48000),
    ".mp3": ("MP3", "MPEG_LAYER_III", 44100),
    ".m4a": (None, None, 44100),
}
LOSSLESS = {".wav", ".aiff", ".au", ".flac"}
TONE_S = 0.5


def stereo_tone(sample_rate: int, seconds: float = TONE_S) -> np.ndarray:
    """440 Hz on the left, 1000 Hz on the right: float32, shape (time, 2)."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.3 * np.sin(2 * np.pi * 1000 * t)], axis=1).astype(np.float32)


def write_m4a(path: Path, st: np.ndarray, sample_rate: int) -> None:
    """AAC in MP4 through PyAV (no edit list: the 1024-sample encoder priming stays in the stream)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=sample_rate, layout="stereo")
        for i in range(0, len(st), 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(st[i : i + 1024].T), format="fltp", layout="stereo")
            frame.sample_rate = sample_rate
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def write_audio(path: Path) -> np.ndarray:
    """Write the stereo tone in the format of ``path``'s suffix; return the source samples."""
    fmt, subtype, rate = FORMATS[path.suffix]
    st = stereo_tone(rate)
    if fmt is None:
        write_m4a(path, st, rate)
        return st
    with sf.SoundFile(path, "w", rate, 2, format=fmt, subtype=subtype) as f:
        for i in range(0, len(st), 4096):  # one big write of Ogg can crash libsndfile
            f.write(st[i : i + 4096])
    return st


def best_lag(y: np.ndarray, ref: np.ndarray, max_lag: int) -> tuple[float, int]:
    """Highest normalised correlation of ``y[lag:]`` with ``ref`` over lags 0..max_lag, and its lag."""
    n = ref.size - max_lag
    scores = [
        float(np.dot(y[lag : lag + n], ref[:n]) / (np.linalg.norm(y[lag : lag + n]) * np.linalg.norm(ref[:n])))
        for lag in range(max_lag + 1)
    ]
    return max(scores), int(np.argmax(scores))


def test_formats_cover_audio_extensions() -> None:
    assert set(FORMATS) <= AUDIO_EXTENSIONS
    assert ".m4a" in FFMPEG_EXTENSIONS


@pytest.mark.parametrize("suffix", list(FORMATS))
def test_load_audio_decodes_format(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"tone{suffix}"
    write_audio(path)
    y = load_audio(path, SR)
    assert y.dtype == np.float32 and y.ndim == 1
    ref = stereo_tone(SR).mean(axis=1)  # the mono mix, computed at the target rate
    corr, lag = best_lag(y, ref, 1100)
    if suffix in FFMPEG_EXTENSIONS:  # AAC priming (1024 samples at 44.1 kHz) and padding to whole frames
        assert ref.size <= y.size <= ref.size + 1024
        assert lag <= 1024 // 2 + 8
        assert corr > 0.99
    else:
        assert y.size == ref.size
        assert lag == 0
        assert corr > (0.99999 if suffix in LOSSLESS else 0.999)
    # Both channels survive the mono mix: the two strongest bins are the two tones.
    spectrum = np.abs(np.fft.rfft(y * np.hanning(y.size)))
    peaks = np.fft.rfftfreq(y.size, 1 / SR)[np.argsort(spectrum)[-2:]]
    assert sorted(peaks) == [pytest.approx(440, abs=3), pytest.approx(1000, abs=3)]
    assert np.sqrt(np.mean(y**2)) == pytest.approx(0.15, rel=0.05)


@pytest.mark.parametrize("suffix", list(FORMATS))
def test_load_audio_max_duration(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"tone{suffix}"
    write_audio(path)
    y = load_audio(path, SR, max_duration_s=0.2)
    assert abs(y.size - int(0.2 * SR)) <= 1


@pytest.mark.parametrize(
    "suffix",
    list(FORMATS),
)
def test_garbage_file_raises_naming_it(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"garbage{suffix}"
    path.write_bytes(np.random.default_rng(0).bytes(3000))
    with pytest.raises(AudioDecodeError, match=f"garbage\\{suffix}") as info:
        load_audio(path, SR)
    assert info.value.path == str(path)


@pytest.mark.parametrize("suffix", list(FORMATS))
def test_file_cut_in_its_header_raises_naming_it(tmp_path: Path, suffix: str) -> None:
    good = tmp_path / f"good{suffix}"
    write_audio(good)
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(good.read_bytes()[:24])
    with pytest.raises(AudioDecodeError, match=f"cut\\{suffix}"):
        load_audio(path, SR)


@pytest.mark.parametrize(
    "suffix",
    [
        ".flac",
        ".ogg",
        ".opus",
        ".m4a",
        ".mp3",
    ],
)
def test_file_cut_in_half_raises_naming_it(tmp_path: Path, suffix: str) -> None:
    good = tmp_path / f"good{suffix}"
    write_audio(good)
    data = good.read_bytes()
    path = tmp_path / f"half{suffix}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioDecodeError, match=f"half\\{suffix}"):
        load_audio(path, SR)


def test_non_finite_model_output_is_never_a_genre(model, monkeypatch) -> None:
    nan = np.full(len(GENRES), np.nan)
    monkeypatch.setattr("crnn.scoring.predict_waveform", lambda *a: (nan, nan[None]))
    waveform = (0.1 * np.sin(2 * np.pi * 440 * np.arange(3 * SR) / SR)).astype(np.float32)
    with pytest.raises(NonFiniteError, match="not finite"):
        score_waveform(model, waveform, top_k=3, uncertain_below=0.5, timeline=False)
