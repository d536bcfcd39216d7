"""The evaluation protocol: a cross-artist evaluation and a stratified track-level k-fold.

Two figures per model, never one without the other:

1. **Cross-artist**: train on one collection (``gtzan_mini``: GTZAN tracks 00000-00012, few
   artists), test on another whose tracks come mostly from other artists (``gtzan_excerpts``:
   2-3 s excerpts of tracks 00031-00040). This is the honest figure and the one for choosing
   defaults.
2. **Within-set k-fold**: stratified k-fold over whole tracks of the training collection, so
   the segments of a track never sit in two folds. GTZAN is ordered by artist, so these folds
   share artists: the figure is *artist-confounded* and overstates accuracy.

Each evaluation is a track-level assignment ``{track_id: "train" | "val" | "test"}``; ``val``
(a stratified share of the training tracks) only drives early stopping.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import StratifiedKFold, train_test_split

CROSS_ARTIST = "cross-artist"
KFOLD_CAVEAT = "artist-confounded: GTZAN is ordered by artist, so folds of one collection share artists"


@dataclass(frozen=True)
class Evaluation:
    """One train/evaluate unit of the protocol.

    Attributes:
        name: ``"cross-artist"`` or ``"fold-<i>"`` (1-based).
        assignment: training-collection track id -> ``"train"``, ``"val"`` or ``"test"``
            (cross-artist: no ``"test"`` here; the test tracks are the other collection).
    """

    name: str
    assignment: dict[str, str]


def _train_val(ids: Sequence[str], genres: Sequence[str], val_fraction: float, seed: int) -> dict[str, str]:
    """Stratified ``train``/``val`` assignment of ``ids`` (at least one val track per genre)."""
    n_val = max(len(set(genres)), int(round(val_fraction * len(ids))))
    train, val = train_test_split(list(ids), test_size=n_val, stratify=list(genres), random_state=seed)
    return {t: "train" for t in train} | {t: "val" for t in val}


def _check(track_ids: Sequence[str], genres: Sequence[str], k: int) -> None:
    """Raise ValueError unless every genre can fill train, val and (``k`` > 0) each of ``k`` test folds."""
    if len(track_ids) != len(genres) or len(set(track_ids)) != len(track_ids):
        raise ValueError(f"need one genre per distinct track id, got {len(track_ids)} ids and {len(genres)} genres")
    smallest = int(min(np.unique(list(genres), return_counts=True)[1], default=0))
    held_out = math.ceil(smallest / k) if k else 0  # a genre's tracks in one test fold
    if smallest < max(k, 2) or smallest - held_out < 2:
        raise ValueError(
            f"{f'k={k} folds need >= {k} tracks per genre and ' if k else 'need '}>= 2 per genre outside "
            f"the test (train + val); the smallest genre has {smallest}"
        )


def cross_artist(track_ids: Sequence[str], genres: Sequence[str], *, val_fraction: float, seed: int) -> Evaluation:
    """All training-collection tracks for training, a stratified ``val_fraction`` of them held out for early stopping.

    Raises:
        ValueError: ids and genres differ in length, repeat, or a genre has fewer than 2 tracks.
    """
    _check(track_ids, genres, 0)
    return Evaluation(CROSS_ARTIST, _train_val(track_ids, genres, val_fraction, seed))


def kfold(
    track_ids: Sequence[str], genres: Sequence[str], *, k: int, val_fraction: float, seed: int
) -> list[Evaluation]:
    """Stratified, seeded k-fold over whole tracks.

    Fold ``i`` tests on its ``1/k`` of the tracks; the rest are split into train and a
    stratified ``val_fraction`` for early stopping. Every track is tested exactly once.

    Args:
        track_ids: one per track.
        genres: genre per track (the stratification label).
        k: number of folds, >= 2.
        val_fraction: share of the non-test tracks held out for early stopping, in (0, 1).
        seed: seeds the fold shuffle and the validation draw.

    Raises:
        ValueError: ``k < 2``, bad ``val_fraction``, or a genre with fewer than ``k + 1`` tracks.
    """
    if k < 2 or not 0 < val_fraction < 1:
        raise ValueError(f"need k >= 2 and 0 < val_fraction < 1, got k={k}, val_fraction={val_fraction}")
    _check(track_ids, genres, k)
    ids, labels = np.asarray(track_ids), np.asarray(genres)
    folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(ids, labels)
    out = []
    for i, (rest, test) in enumerate(folds, start=1):
        assignment = _train_val(ids[rest].tolist(), labels[rest].tolist(), val_fraction, seed + i)
        out.append(Evaluation(f"fold-{i}", assignment | {t: "test" for t in ids[test].tolist()}))
    return out


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value)."""
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def summarize(cross: Mapping[str, float], folds: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """The protocol's summary metrics from the cross-artist and per-fold test metrics.

    Args:
        cross: the cross-artist evaluation's ``test/track_accuracy``, ``test/macro_f1``,
            ``test/recall/<genre>`` and (when present) ``test/ece``, ``test/selective_accuracy``
            and ``test/uncertain_share`` metrics (an excerpt is one clip, so track = clip accuracy).
        folds: each fold's ``test/track_accuracy`` and ``test/macro_f1``.

    Returns:
        ``cross_artist/accuracy``, ``cross_artist/macro_f1``, ``cross_artist/recall/<genre>``,
        ``cross_artist/ece``, ``cross_artist/selective_accuracy``, ``cross_artist/uncertain_share``,
        ``kfold/track_accuracy_mean``/``_std`` and ``kfold/macro_f1_mean``/``_std``.
    """
    out = {"cross_artist/accuracy": cross["test/track_accuracy"], "cross_artist/macro_f1": cross["test/macro_f1"]}
    out |= {k.replace("test/", "cross_artist/"): v for k, v in cross.items() if k.startswith("test/recall/")}
    calibration = ("test/ece", "test/selective_accuracy", "test/uncertain_share")
    out |= {k.replace("test/", "cross_artist/"): cross[k] for k in calibration if k in cross}
    for name in ("track_accuracy", "macro_f1"):
        mean, std = mean_std([f[f"test/{name}"] for f in folds])
        out |= {f"kfold/{name}_mean": mean, f"kfold/{name}_std": std}
    return out
