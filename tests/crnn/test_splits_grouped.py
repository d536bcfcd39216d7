"""Tests for the grouped-stratified and official splits (tagged libraries, FMA)."""

from __future__ import annotations

from collections import defaultdict

import pytest

from crnn.config import SplitConfig
from crnn.splits import SPLITS, assign_split, grouped_stratified_split, official_split

FRACTIONS = {"val_fraction": 0.2, "test_fraction": 0.2}


def library(n_genres: int = 4, artists_per_genre: int = 5, tracks_per_artist: int = 3):
    """(track ids, genres, groups): every artist plays one genre; track ids are relative paths."""
    ids, genres, groups = [], [], []
    for g in range(n_genres):
        for a in range(artists_per_genre):
            for t in range(tracks_per_artist):
                ids.append(f"Artist {g}-{a}/Album/{t:02d}.mp3")
                genres.append(f"genre{g}")
                groups.append(f"artist:artist {g}-{a}")
    return ids, genres, groups


def splits_of_group(ids, groups, mapping) -> dict[str, set[str]]:
    found: dict[str, set[str]] = defaultdict(set)
    for track_id, group in zip(ids, groups):
        found[group].add(mapping[track_id])
    return found


@pytest.mark.parametrize("seed", [0, 1, 42])
def test_no_artist_is_in_two_splits_and_every_split_is_used(seed: int) -> None:
    ids, genres, groups = library()
    mapping = grouped_stratified_split(ids, genres, groups, seed=seed, **FRACTIONS)
    assert set(mapping) == set(ids)
    assert all(len(s) == 1 for s in splits_of_group(ids, groups, mapping).values())
    counts = {s: sum(v == s for v in mapping.values()) for s in SPLITS}
    assert counts["train"] > counts["val"] > 0 and counts["test"] > 0
    for split in SPLITS:  # stratified: each genre's 5 artists are spread so every split sees most genres
        assert len({g for t, g in zip(ids, genres) if mapping[t] == split}) >= 3


def test_grouped_split_is_deterministic_and_order_independent() -> None:
    ids, genres, groups = library()
    first = grouped_stratified_split(ids, genres, groups, seed=7, **FRACTIONS)
    backwards = grouped_stratified_split(ids[::-1], genres[::-1], groups[::-1], seed=7, **FRACTIONS)
    assert first == backwards
    assert first != grouped_stratified_split(ids, genres, groups, seed=8, **FRACTIONS)


def test_tracks_without_a_group_are_their_own_group() -> None:
    ids, genres, _ = library(artists_per_genre=2)
    mapping = grouped_stratified_split(ids, genres, [""] * len(ids), seed=0, **FRACTIONS)
    assert set(mapping.values()) == set(SPLITS)


def test_too_few_groups_is_an_error_naming_the_count() -> None:
    ids, genres, groups = library(n_genres=1, artists_per_genre=2)
    with pytest.raises(ValueError, match="at least 3 groups.*got 2"):
        grouped_stratified_split(ids, genres, groups, seed=0, **FRACTIONS)


def test_auto_picks_grouped_when_tracks_have_groups_and_official_when_all_have_one() -> None:
    ids, genres, groups = library()
    method, mapping = assign_split(ids, genres, SplitConfig(), groups=groups, official=[""] * len(ids))
    assert method == "grouped-stratified"
    assert all(len(s) == 1 for s in splits_of_group(ids, groups, mapping).values())
    official = [SPLITS[i % 3] for i in range(len(ids))]
    assert assign_split(ids, genres, SplitConfig(), groups=groups, official=official) == (
        "official",
        dict(zip(ids, official)),
    )
    assert assign_split(ids, genres, SplitConfig(method="stratified"), groups=groups)[0] == "stratified"


def test_official_split_needs_every_track() -> None:
    with pytest.raises(ValueError, match="official.*needs every track"):
        official_split(["a.mp3", "b.mp3"], ["train", ""])
