"""Track-level train/val/test splits of GTZAN.

Every segment of a track lands in the split of its track, so no audio is shared between
splits. Three methods:

- ``filtered``: the fault-filtered, artist-conditional split of Kereliuk, Sturm & Larsen
  (2015), 443/197/290 tracks, stored in ``crnn/resources/gtzan_filtered_split.csv``. Only this
  one keeps artists apart; it needs the full GTZAN.
- ``index``: per genre, track numbers 0-69 train, 70-89 val, 90-99 test (seed ``000``).
- ``stratified``: per genre, a seeded shuffle cut by fractions (for subsets such as
  ``gtzan_mini``; artists are shared between splits, so its accuracy is optimistic).

Two more for other collections (:mod:`crnn.tagged`, :mod:`crnn.fma`), whose tracks carry a group:

- ``grouped-stratified``: no group (artist, else album folder) in two splits, labels balanced
  across splits as far as the groups allow (scikit-learn's ``StratifiedGroupKFold``).
- ``official``: the collection's own split (FMA's artist-filtered ``set/split`` column).
"""

from __future__ import annotations

import csv
import functools
import importlib.resources
import io
import math
import warnings
import zlib
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from crnn.config import SplitConfig
from crnn.dataset import parse_track_id, read_csv_rows, write_csv_atomic

SPLITS: tuple[str, ...] = ("train", "val", "test")
"""Split names, in order."""

_FILTERED_RESOURCE = "resources/gtzan_filtered_split.csv"
_COLUMNS = ("track_id", "split")


def _parse_split_rows(rows: list[dict[str, str]], source: str) -> dict[str, str]:
    """``track_id -> split`` from CSV rows, checking split names and duplicate ids."""
    mapping: dict[str, str] = {}
    for line, row in enumerate(rows, start=2):
        track_id, split = row["track_id"], row["split"]
        if split not in SPLITS:
            raise ValueError(f"{source}, line {line}: split {split!r} is not one of {SPLITS}")
        if track_id in mapping:
            raise ValueError(f"{source}, line {line}: track id {track_id!r} appears twice")
        mapping[track_id] = split
    return mapping


@functools.lru_cache(maxsize=1)
def _filtered_split_cached() -> tuple[tuple[str, str], ...]:
    resource = importlib.resources.files("crnn").joinpath(_FILTERED_RESOURCE)
    text = resource.read_text(encoding="utf-8")
    mapping = _parse_split_rows(list(csv.DictReader(io.StringIO(text))), f"crnn/{_FILTERED_RESOURCE}")
    return tuple(mapping.items())


def filtered_split() -> dict[str, str]:
    """The fault-filtered artist-conditional split (Kereliuk, Sturm & Larsen, 2015).

    Returns:
        ``track_id -> split`` for 930 GTZAN tracks: 443 train, 197 val, 290 test.
    """
    return dict(_filtered_split_cached())


def index_split(track_ids: Sequence[str]) -> dict[str, str]:
    """Split by track number inside each genre: 0-69 train, 70-89 val, 90-99 test.

    Raises:
        ValueError: a track id is malformed or its number is above 99.
    """
    mapping = {}
    for track_id in track_ids:
        _, number = parse_track_id(track_id, labels=None)
        if number > 99:
            raise ValueError(f"index split needs track numbers 00000-00099, got {track_id!r}")
        mapping[track_id] = "train" if number < 70 else "val" if number < 90 else "test"
    return mapping


def _split_counts(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """(val, test) track counts for a genre of ``n`` tracks.

    Counts are rounded half up; at least one track stays in train, and a genre of three or more
    tracks gets at least one val and one test track.
    """
    n_val = math.floor(n * val_fraction + 0.5)
    n_test = math.floor(n * test_fraction + 0.5)
    if n >= 3:
        n_val, n_test = max(1, n_val), max(1, n_test)
    while n_val + n_test > max(n - 1, 0):
        if n_val > n_test:
            n_val -= 1
        else:
            n_test -= 1
    return n_val, n_test


def stratified_split(
    track_ids: Sequence[str], genres: Sequence[str], *, val_fraction: float, test_fraction: float, seed: int
) -> dict[str, str]:
    """Per-genre seeded shuffle, cut into test, val and train by fractions.

    Each genre's tracks are sorted, then shuffled by ``numpy.random.default_rng([seed,
    crc32(genre)])``, so a genre's split depends only on its own tracks and the seed (not on the
    order of ``track_ids`` or on which other genres are present).

    Args:
        track_ids: unique track ids.
        genres: genre of each track, same length as ``track_ids``.
        val_fraction: share of each genre for val, in (0, 1).
        test_fraction: share of each genre for test, in (0, 1); ``val + test < 1``.
        seed: non-negative shuffle seed.

    Returns:
        ``track_id -> split`` for every track (see :func:`_split_counts` for the rounding).

    Raises:
        ValueError: lengths differ, ids repeat, or a fraction or the seed is out of range.
    """
    _check_inputs(track_ids, genres)
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(f"need 0 < val_fraction, test_fraction and their sum < 1, got {val_fraction}, {test_fraction}")
    if seed < 0:
        raise ValueError(f"stratified split seed must be >= 0, got {seed}")
    by_genre: dict[str, list[str]] = defaultdict(list)
    for track_id, genre in zip(track_ids, genres):
        by_genre[genre].append(track_id)
    mapping: dict[str, str] = {}
    for genre, ids in sorted(by_genre.items()):
        rng = np.random.default_rng([seed, zlib.crc32(genre.encode("utf-8"))])
        ordered = sorted(ids)
        order = [ordered[i] for i in rng.permutation(len(ordered))]
        n_val, n_test = _split_counts(len(ids), val_fraction, test_fraction)
        for rank, track_id in enumerate(order):
            mapping[track_id] = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
    return mapping


def _check_inputs(track_ids: Sequence[str], genres: Sequence[str]) -> None:
    if len(track_ids) != len(genres):
        raise ValueError(f"need one genre per track, got {len(track_ids)} track ids and {len(genres)} genres")
    if len(set(track_ids)) != len(track_ids):
        repeated = sorted(t for t, n in Counter(track_ids).items() if n > 1)
        raise ValueError(f"track ids must be unique; repeated: {repeated[:5]}")


FILTERED_MAX_MISSING = 5
"""Filtered-split tracks that may be absent (excluded as undecodable, e.g. the Kaggle copy's
corrupt ``jazz.00054.wav``) while the split still counts as the fault-filtered one."""


def _filtered_missing(track_ids: Sequence[str]) -> list[str]:
    return sorted(set(filtered_split()) - set(track_ids))


def _filtered_for(track_ids: Sequence[str]) -> dict[str, str]:
    filtered = filtered_split()
    missing = _filtered_missing(track_ids)
    if len(missing) > FILTERED_MAX_MISSING:
        raise ValueError(
            f"split method 'filtered' needs the {len(filtered)} tracks of the fault-filtered GTZAN split "
            f"(at most {FILTERED_MAX_MISSING} missing); "
            f"{len(missing)} are missing (e.g. {missing[0]!r}); use 'stratified' or 'index' for a subset"
        )
    return {t: filtered[t] for t in track_ids if t in filtered}


def _index_for(track_ids: Sequence[str]) -> dict[str, str]:
    mapping = index_split(track_ids)
    empty = [s for s in SPLITS if s not in set(mapping.values())]
    if empty:
        raise ValueError(
            f"split method 'index' leaves split(s) {empty} empty for these {len(track_ids)} tracks "
            "(it needs track numbers 0-69, 70-89 and 90-99); use 'stratified' for a subset"
        )
    return mapping


def _pick_fold(
    y: np.ndarray, groups: np.ndarray, idx: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(rest, held) positions of ``idx``: one fold of about ``fraction`` of the groups, stratified by ``y``."""
    n_groups, largest_label = len(set(groups[idx])), max(np.unique(y[idx], return_counts=True)[1])
    n_splits = min(max(2, round(1 / fraction)), n_groups, largest_label)  # scikit-learn's bounds
    if n_splits < 2:
        raise ValueError(f"a grouped split needs a label with 2 or more tracks in 2 or more groups, got {len(idx)}")
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # a label with fewer groups than folds is expected in small libraries
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        rest, held = next(folds.split(np.zeros(len(idx)), y[idx], groups[idx]))
    return idx[rest], idx[held]


def grouped_stratified_split(
    track_ids: Sequence[str],
    genres: Sequence[str],
    groups: Sequence[str],
    *,
    val_fraction: float,
    test_fraction: float,
    seed: int,
) -> dict[str, str]:
    """Track-level split in which no group (an artist, an album folder) is in two splits, stratified by genre.

    Test is one fold of ``StratifiedGroupKFold`` with ``round(1 / test_fraction)`` folds (at most one per
    group); val is one fold of the rest cut the same way by ``val_fraction / (1 - test_fraction)``.
    Tracks are sorted by id first, so the result depends on the tracks, groups and seed only.

    Args:
        track_ids: unique track ids.
        genres: genre of each track.
        groups: group of each track; ``""`` makes the track its own group.
        val_fraction: share of tracks for val, in (0, 1), approximately (whole groups move).
        test_fraction: share of tracks for test, in (0, 1); ``val + test < 1``.
        seed: non-negative shuffle seed.

    Returns:
        ``track_id -> split`` for every track.

    Raises:
        ValueError: lengths differ, ids repeat, fractions or seed out of range, or fewer than 3 groups.
    """
    _check_inputs(track_ids, genres)
    if len(groups) != len(track_ids):
        raise ValueError(f"need one group per track, got {len(track_ids)} track ids and {len(groups)} groups")
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1) or seed < 0:
        raise ValueError(
            f"need 0 < val_fraction, test_fraction, their sum < 1 and seed >= 0, got {val_fraction}, "
            f"{test_fraction}, {seed}"
        )
    order = sorted(range(len(track_ids)), key=lambda i: track_ids[i])
    ids = np.asarray([track_ids[i] for i in order])
    y = np.asarray([genres[i] for i in order])
    g = np.asarray([groups[i] or f"track:{track_ids[i]}" for i in order])
    if len(set(g)) < 3:
        raise ValueError(f"a grouped split needs at least 3 groups (artists or album folders), got {len(set(g))}")
    rest, test = _pick_fold(y, g, np.arange(len(ids)), test_fraction, seed)
    if len(set(g[rest])) < 2:
        raise ValueError(f"a grouped split needs groups left for train and val, got {len(set(g[rest]))}")
    train, val = _pick_fold(y, g, rest, val_fraction / (1 - test_fraction), seed)
    mapping = {str(t): "train" for t in ids[train]}
    mapping.update({str(t): "val" for t in ids[val]})
    mapping.update({str(t): "test" for t in ids[test]})
    return mapping


def official_split(track_ids: Sequence[str], official: Sequence[str]) -> dict[str, str]:
    """The collection's own split (FMA's ``set/split``, already in :data:`SPLITS` names).

    Raises:
        ValueError: a track has no official split or an unknown one (the message names one).
    """
    bad = [(t, s) for t, s in zip(track_ids, official) if s not in SPLITS]
    if bad or len(official) != len(track_ids):
        raise ValueError(f"split method 'official' needs every track's own split; e.g. {bad[:1] or 'lengths differ'}")
    return dict(zip(track_ids, official))


def _auto_method(track_ids: Sequence[str], groups: Sequence[str] | None, official: Sequence[str] | None) -> str:
    if official and all(official):
        return "official"
    if groups and any(groups):
        return "grouped-stratified"
    return "filtered" if len(_filtered_missing(track_ids)) <= FILTERED_MAX_MISSING else "stratified"


def assign_split(
    track_ids: list[str],
    genres: list[str],
    cfg: SplitConfig,
    *,
    groups: Sequence[str] | None = None,
    official: Sequence[str] | None = None,
) -> tuple[str, dict[str, str]]:
    """Choose and apply the split method of ``cfg``.

    ``"auto"`` means ``"official"`` when every track has an ``official`` split, else
    ``"grouped-stratified"`` when any track has a group, else ``"filtered"`` when the 930 filtered
    ids are in ``track_ids`` (up to :data:`FILTERED_MAX_MISSING` may be missing, e.g. excluded as
    corrupt), else ``"stratified"``. With ``"filtered"``, tracks outside the filtered lists (GTZAN's
    faulty excerpts) are left out of the mapping.

    Args:
        track_ids: unique track ids.
        genres: genre of each track.
        cfg: the method, fractions and seed.
        groups: each track's group (``crnn.dataset.Track.group``; ``""``: none), or ``None``.
        official: each track's own split (``crnn.dataset.Track.official_split``; ``""``: none), or ``None``.

    Returns:
        (method actually used, ``track_id -> split``).

    Raises:
        ValueError: no tracks; ``"filtered"`` with more than :data:`FILTERED_MAX_MISSING` filtered ids missing (the message says how
            many and names one); ``"index"`` leaving a split empty; ``"official"`` without every track's
            split; bad stratified or grouped inputs.
    """
    _check_inputs(track_ids, genres)
    if not track_ids:
        raise ValueError("no tracks to split")
    method = _auto_method(track_ids, groups, official) if cfg.method == "auto" else cfg.method
    if method == "official":
        return method, official_split(track_ids, official or [])
    if method == "grouped-stratified":
        fractions = {"val_fraction": cfg.val_fraction, "test_fraction": cfg.test_fraction, "seed": cfg.seed}
        return method, grouped_stratified_split(track_ids, genres, groups or [""] * len(track_ids), **fractions)
    if method == "filtered":
        return method, _filtered_for(track_ids)
    if method == "index":
        return method, _index_for(track_ids)
    mapping = stratified_split(
        track_ids, genres, val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction, seed=cfg.seed
    )
    return method, mapping


def write_split_csv(mapping: Mapping[str, str], path: Path) -> None:
    """Write ``track_id,split`` rows sorted by track id, atomically.

    Raises:
        ValueError: a split is not one of :data:`SPLITS`.
    """
    bad = {t: s for t, s in mapping.items() if s not in SPLITS}
    if bad:
        raise ValueError(f"{path}: split values must be one of {SPLITS}, got {dict(list(bad.items())[:3])}")
    write_csv_atomic(path, _COLUMNS, sorted(mapping.items()))


def read_split_csv(path: Path) -> dict[str, str]:
    """``track_id -> split`` from a CSV written by :func:`write_split_csv`.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: a column is missing, a split is unknown or a track id repeats (file and line named).
    """
    return _parse_split_rows(read_csv_rows(path, _COLUMNS), str(path))
