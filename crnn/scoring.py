"""Batch scoring of music files: whole-track prediction, top-k, uncertainty, segment timeline, prefetching."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from crnn.audio import load_audio
from crnn.config import TOP_K, UNCERTAIN_BELOW, FeatureConfig, check_scoring_options
from crnn.features import scored_segment_starts
from crnn.inference import inference_settings, predict_waveform
from crnn.models import GenreNet

T = TypeVar("T")
R = TypeVar("R")


SILENCE_DBFS = -60.0
"""A track whose level with its DC offset removed is below this (in dBFS) is silent and not scored."""


class TooShortError(ValueError):
    """The audio is shorter than the model's ``min_segment_s``: there is no segment to score."""


class SilentError(ValueError):
    """The audio is digital silence, near-silence or a constant (DC) level: there is no music to label."""


class NonFiniteError(ValueError):
    """The model's probabilities for the track are not finite (NaN or inf): nothing to label it with."""


def level_dbfs(waveform: np.ndarray) -> float:
    """RMS level of a waveform with its mean (DC offset) removed.

    Args:
        waveform: samples in [-1, 1], shape (time,).

    Returns:
        Level in dBFS (0 for a full-scale square wave); ``-inf`` for a constant or empty waveform.
    """
    if waveform.size == 0:
        return float("-inf")
    rms = float(np.sqrt(np.var(waveform)))
    return 20.0 * float(np.log10(rms)) if rms > 0 else float("-inf")


@dataclass(frozen=True)
class SegmentPrediction:
    """One segment of a track's timeline.

    Attributes:
        start_s, end_s: position in the track (in seconds).
        genre: the segment's top genre.
        probability: its probability, in [0, 1].
    """

    start_s: float
    end_s: float
    genre: str
    probability: float


@dataclass(frozen=True)
class TrackPrediction:
    """Genre of one whole track.

    Attributes:
        genre: top genre (highest mean segment probability).
        probability: its probability, in [0, 1].
        top_k: the ``k`` most probable genres, best first, as ``(genre, probability)``.
        uncertain: ``probability`` is below the confidence threshold.
        probs: probability per class, shape (n_classes,), in the order of ``labels``.
        labels: the model's class names.
        duration_s: seconds of audio scored (in seconds).
        truncated: the file is longer than the maximum duration and only its start was scored.
        n_segments: segments the track was cut into.
        timeline: per-segment predictions, or ``None`` when not requested.
    """

    genre: str
    probability: float
    top_k: tuple[tuple[str, float], ...]
    uncertain: bool
    probs: np.ndarray
    labels: tuple[str, ...]
    duration_s: float
    truncated: bool
    n_segments: int
    timeline: tuple[SegmentPrediction, ...] | None


def segment_bounds_s(n_samples: int, cfg: FeatureConfig) -> list[tuple[float, float]]:
    """Start and end (in seconds) of each segment :func:`crnn.features.segment_log_mel` cuts from a track.

    Args:
        n_samples: track length in samples at ``cfg.sample_rate`` Hz.
        cfg: segmentation config (segment_s, overlap_s, min_segment_s, hop_length).
    """
    n_frames = 1 + n_samples // cfg.hop_length
    frame_s = cfg.hop_length / cfg.sample_rate
    duration_s = n_samples / cfg.sample_rate
    return [
        (s * frame_s, min(duration_s, (s + cfg.segment_frames) * frame_s)) for s in scored_segment_starts(n_frames, cfg)
    ]


def summarize(
    track_probs: np.ndarray,
    segment_probs: np.ndarray,
    n_samples: int,
    cfg: FeatureConfig,
    *,
    labels: Sequence[str],
    top_k: int = TOP_K,
    uncertain_below: float = UNCERTAIN_BELOW,
    timeline: bool = False,
    truncated: bool = False,
) -> TrackPrediction:
    """Turn track and segment probabilities into a :class:`TrackPrediction`.

    Args:
        track_probs: shape (n_classes,), sums to 1.
        segment_probs: shape (n_segments, n_classes).
        n_samples: length of the scored audio in samples at ``cfg.sample_rate`` Hz.
        cfg: the model's feature config (segment times).
        labels: the model's class names, one per probability (``model.model_cfg.labels``).
        top_k: how many genres to list (at most n_classes).
        uncertain_below: a top probability below this (in [0, 1]) flags the track ``uncertain``.
        timeline: include the per-segment predictions.
        truncated: the audio was cut at the maximum duration.

    Raises:
        ValueError: ``top_k`` < 1, ``uncertain_below`` outside [0, 1], or not one label per class.
    """
    if len(labels) != track_probs.shape[-1]:
        raise ValueError(f"{len(labels)} labels for {track_probs.shape[-1]} class probabilities")
    check_scoring_options(top_k, uncertain_below, None)
    order = np.argsort(-track_probs, kind="stable")[:top_k]
    best = int(order[0])
    segments = None
    if timeline:
        bounds = segment_bounds_s(n_samples, cfg)
        segments = tuple(
            SegmentPrediction(round(a, 3), round(b, 3), labels[int(p.argmax())], round(float(p.max()), 4))
            for (a, b), p in zip(bounds, segment_probs)
        )
    return TrackPrediction(
        genre=labels[best],
        probability=float(track_probs[best]),
        top_k=tuple((labels[int(i)], float(track_probs[i])) for i in order),
        uncertain=bool(track_probs[best] < uncertain_below),
        probs=track_probs,
        labels=tuple(labels),
        duration_s=n_samples / cfg.sample_rate,
        truncated=truncated,
        n_segments=len(segment_probs),
        timeline=segments,
    )


def decode_for(model: GenreNet, path: str | Path, max_duration_s: float | None) -> tuple[np.ndarray, bool]:
    """Decode ``path`` for ``model``: mono at the model's rate, cut at ``max_duration_s``.

    Returns:
        ``(waveform, truncated)``: samples in [-1, 1], shape (time,), at ``model.feature_cfg.sample_rate``
        Hz, and whether the file went on past ``max_duration_s``.

    Raises:
        AudioDecodeError: the file does not decode.
    """
    rate = model.feature_cfg.sample_rate
    # Read 0.1 s more than kept: whether anything came after the limit tells truncation, whatever the rounding.
    waveform = load_audio(path, rate, max_duration_s=None if max_duration_s is None else max_duration_s + 0.1)
    keep = None if max_duration_s is None else int(round(max_duration_s * rate))
    if keep is not None and waveform.size > keep:
        return waveform[:keep], True
    return waveform, False


def score_waveform(
    model: GenreNet,
    waveform: np.ndarray,
    truncated: bool = False,
    *,
    silence_dbfs: float = SILENCE_DBFS,
    **options,
) -> TrackPrediction:
    """Predict one decoded track (see :func:`decode_for`) and summarise it.

    Args:
        model: a :class:`crnn.models.GenreNet` in eval mode.
        waveform: samples in [-1, 1], shape (time,), at ``model.feature_cfg.sample_rate`` Hz.
        truncated: passed through to the result.
        silence_dbfs: a track below this level (in dBFS, DC offset removed) is not scored.
        **options: ``top_k``, ``uncertain_below``, ``timeline`` of :func:`summarize`.

    Raises:
        SilentError: the track is silence, near-silence or DC only (the model would label it anyway).
        NonFiniteError: the model's probabilities are NaN or inf (never written as a genre).
        TooShortError: the audio is shorter than the model's ``min_segment_s``.
    """
    cfg = inference_settings(model).features(model.feature_cfg)  # the segments predict_waveform scores
    try:
        track, segments = predict_waveform(model, waveform, cfg.sample_rate)
    except ValueError as exc:  # predict_waveform's only ValueError: no segment fits
        raise TooShortError(str(exc)) from exc
    level = level_dbfs(waveform)  # checked second: "too short" is the plainer reason for a short silent file
    if level < silence_dbfs:
        raise SilentError(f"silent: level {level:.1f} dBFS with the DC offset removed, under {silence_dbfs:g} dBFS")
    if not np.isfinite(track).all():
        raise NonFiniteError("model output is not finite (NaN or inf) for this audio")
    labels = model.model_cfg.labels
    return summarize(track, segments, waveform.size, cfg, labels=labels, truncated=truncated, **options)


def prefetch(fn: Callable[[T], R], items: Iterable[T], depth: int = 2) -> Iterator[tuple[T, R | Exception]]:
    """Apply ``fn`` to ``items`` in a background thread, up to ``depth`` items ahead of the consumer.

    Used to decode the next files while the model scores the current one (decoders and torch
    release the GIL). Results come back in input order; an exception raised by ``fn`` is
    returned in place of its result, so one bad item never stops the rest.

    Yields:
        ``(item, result or exception)``.
    """
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")

    def call(item: T) -> R | Exception:
        try:
            return fn(item)
        except Exception as exc:  # handed to the consumer, which records it per item
            return exc

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode") as pool:
        pending: deque[tuple[T, Future]] = deque()
        for item in items:
            pending.append((item, pool.submit(call, item)))
            if len(pending) > depth:
                head, future = pending.popleft()
                yield head, future.result()
        while pending:
            head, future = pending.popleft()
            yield head, future.result()
