"""The classical baseline: summary statistics of MFCC, log-mel and spectral features + logistic regression.

What a user would try first (Tzanetakis & Cook 2002 style features, scikit-learn classifier),
run under the same protocol as the neural models: trained on the same segment crops, scored
per segment, a track's probabilities the mean of its segments'.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path

import librosa
import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from crnn.config import BASELINE, FeatureConfig
from crnn.features import segment_log_mel

NAME = BASELINE
"""The baseline's name where an architecture name goes (MLflow param, benchmark table)."""
N_MFCC = 20


def summary_features(log_mel: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """One feature vector of a log-mel segment.

    Mean and standard deviation over frames of: 20 MFCCs (DCT of the log-mel), their frame
    differences, the log-mel bands, and the spectral centroid, bandwidth, flatness and
    contrast (6 octave bands from 200 Hz) of the mel power spectrum; plus the segment's mean level in dB.

    Args:
        log_mel: shape (n_mels, frames), power in dB, frames >= 2.
        cfg: mel band edges (``f_min``, ``f_max``) in Hz.

    Returns:
        float32, shape (4 * 20 + 2 * n_mels + 2 * 9 + 1,).
    """
    mel_power = librosa.db_to_power(log_mel)
    freqs = librosa.mel_frequencies(cfg.n_mels + 2, fmin=cfg.f_min, fmax=cfg.resolved_f_max)[1:-1]  # band centres (Hz)
    mfcc = librosa.feature.mfcc(S=log_mel, n_mfcc=N_MFCC)
    spectral = np.vstack(
        [
            librosa.feature.spectral_centroid(S=mel_power, freq=freqs),
            librosa.feature.spectral_bandwidth(S=mel_power, freq=freqs),
            librosa.feature.spectral_flatness(S=mel_power),
            librosa.feature.spectral_contrast(S=mel_power, freq=freqs, fmin=max(cfg.f_min, 200.0), n_bands=5),
        ]
    )  # (9, frames): contrast has one row per octave band from 200 Hz, plus the band below
    parts = [mfcc, np.diff(mfcc, axis=1), log_mel, spectral]
    stats = [np.concatenate([p.mean(axis=1), p.std(axis=1)]) for p in parts]
    return np.concatenate([*stats, [log_mel.mean()]]).astype(np.float32)


def segment_features(log_mel: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Features of every segment of a track: (n_mels, frames) -> (n_segments, n_features).

    Raises:
        ValueError: the track is shorter than ``cfg.min_segment_s``.
    """
    segments = segment_log_mel(torch.from_numpy(log_mel), cfg).numpy()
    return np.stack([summary_features(s, cfg) for s in segments])


def fit_baseline(log_mels: Sequence[np.ndarray], labels: Sequence[int], cfg: FeatureConfig, *, seed: int) -> Pipeline:
    """Standardise + multinomial logistic regression, trained on every segment crop of the tracks.

    The crops are those :class:`crnn.train.SegmentDataset` cuts (without jitter): tracks
    shorter than one segment are skipped.

    Args:
        log_mels: one per track, shape (n_mels, frames_i), in dB.
        labels: genre index per track.
        cfg: segmentation.
        seed: the solver's random state.

    Raises:
        ValueError: no track is at least one segment long.
    """
    x, y = [], []
    for mel, label in zip(log_mels, labels, strict=True):
        if mel.shape[1] >= cfg.segment_frames:
            feats = segment_features(mel, cfg)
            x.append(feats)
            y += [label] * len(feats)
    if not x:
        raise ValueError(f"none of the {len(log_mels)} tracks is at least segment_s={cfg.segment_s} s long")
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=3000, random_state=seed))
    return model.fit(np.concatenate(x), np.asarray(y))


def baseline_segment_probs(model: Pipeline, log_mel: np.ndarray, cfg: FeatureConfig, n_classes: int) -> np.ndarray:
    """Segment probabilities of one track, shape (n_segments, n_classes); classes never seen in training get 0."""
    seen = model.predict_proba(segment_features(log_mel, cfg))
    probs = np.zeros((len(seen), n_classes))
    probs[:, model.classes_] = seen
    return probs


def save_baseline(model: Pipeline, cfg: FeatureConfig, path: str | Path) -> None:
    """Pickle the fitted pipeline with its feature config (a trusted, self-written artifact)."""
    Path(path).write_bytes(pickle.dumps({"model": model, "features": cfg}))


def load_baseline(path: str | Path) -> tuple[Pipeline, FeatureConfig]:
    """Inverse of :func:`save_baseline`; only load files this project wrote."""
    state = pickle.loads(Path(path).read_bytes())  # noqa: S301 - our own artifact
    return state["model"], state["features"]
