"""Tests for crnn.splits: the filtered, index and stratified splits and the split CSV."""

from __future__ import annotations

import csv
import importlib.resources
from collections import Counter

import pytest

from crnn import GENRES
from crnn.config import SplitConfig
from crnn.splits import (
    SPLITS,
    assign_split,
    filtered_split,
    index_split,
    read_split_csv,
    stratified_split,
    write_split_csv,
)


def gtzan_ids(numbers: range = range(100)) -> tuple[list[str], list[str]]:
    """Track ids and genres of every genre with the given track numbers."""
    ids = [f"{g}.{n:05d}" for g in GENRES for n in numbers]
    return ids, [t.split(".")[0] for t in ids]


def genres_per_split(mapping: dict[str, str]) -> dict[str, set[str]]:
    return {s: {t.split(".")[0] for t, v in mapping.items() if v == s} for s in SPLITS}


def test_filtered_split_counts_and_invariants() -> None:
    mapping = filtered_split()

    assert Counter(mapping.values()) == {"train": 443, "val": 197, "test": 290}
    assert all(genres == set(GENRES) for genres in genres_per_split(mapping).values())
    resource = importlib.resources.files("crnn").joinpath("resources/gtzan_filtered_split.csv")
    rows = list(csv.DictReader(resource.read_text(encoding="utf-8").splitlines()))
    assert len(rows) == 930 and len({r["track_id"] for r in rows}) == 930  # no id in two splits


def test_filtered_split_returns_a_fresh_copy() -> None:
    filtered_split()["blues.00000"] = "test"
    assert filtered_split()["blues.00000"] == "val"


def test_filtered_resource_matches_torchaudio_lists() -> None:
    gtzan = pytest.importorskip("torchaudio.datasets.gtzan")
    expected = {
        t: s
        for s, ids in [("train", gtzan.filtered_train), ("val", gtzan.filtered_valid), ("test", gtzan.filtered_test)]
        for t in ids
    }
    assert filtered_split() == expected


@pytest.mark.parametrize(
    ("number", "split"), [(0, "train"), (69, "train"), (70, "val"), (89, "val"), (90, "test"), (99, "test")]
)
def test_index_split_boundaries(number: int, split: str) -> None:
    assert index_split([f"jazz.{number:05d}"]) == {f"jazz.{number:05d}": split}


def test_index_split_rejects_numbers_above_99() -> None:
    with pytest.raises(ValueError, match="rock.00100"):
        index_split(["rock.00100"])


def stratify(ids: list[str], genres: list[str], seed: int = 0) -> dict[str, str]:
    return stratified_split(ids, genres, val_fraction=0.2, test_fraction=0.2, seed=seed)


def test_stratified_split_is_deterministic_and_seed_dependent() -> None:
    ids, genres = gtzan_ids(range(10))

    first = stratify(ids, genres, seed=3)

    assert stratify(ids, genres, seed=3) == first
    assert stratify(ids[::-1], genres[::-1], seed=3) == first  # input order does not matter
    assert stratify(ids, genres, seed=4) != first


def test_stratified_split_covers_every_genre_with_6_2_2() -> None:
    ids, genres = gtzan_ids(range(10))

    mapping = stratify(ids, genres)

    assert set(mapping) == set(ids)  # every track in exactly one split
    assert set(mapping.values()) <= set(SPLITS)
    per_genre = Counter((t.split(".")[0], s) for t, s in mapping.items())
    assert all(
        per_genre[(g, "train")] == 6 and per_genre[(g, "val")] == 2 and per_genre[(g, "test")] == 2 for g in GENRES
    )


def test_stratified_split_of_one_genre_ignores_the_others() -> None:
    ids, genres = gtzan_ids(range(10))
    blues = [t for t in ids if t.startswith("blues.")]

    assert stratify(blues, ["blues"] * 10) == {t: s for t, s in stratify(ids, genres).items() if t in blues}


@pytest.mark.parametrize(
    ("n", "expected"), [(1, (1, 0, 0)), (2, (2, 0, 0)), (3, (1, 1, 1)), (4, (2, 1, 1)), (5, (3, 1, 1)), (13, (7, 3, 3))]
)
def test_stratified_split_small_genres(n: int, expected: tuple[int, int, int]) -> None:
    ids = [f"pop.{i:05d}" for i in range(n)]

    counts = Counter(stratify(ids, ["pop"] * n).values())

    assert tuple(counts[s] for s in SPLITS) == expected


def test_stratified_split_keeps_one_train_track_with_large_fractions() -> None:
    ids = [f"pop.{i:05d}" for i in range(4)]
    mapping = stratified_split(ids, ["pop"] * 4, val_fraction=0.49, test_fraction=0.49, seed=0)
    assert Counter(mapping.values()) == {"train": 1, "val": 2, "test": 1}  # rounded 2 + 2 cut to fit


@pytest.mark.parametrize(
    "kwargs", [{"val_fraction": 0.0}, {"test_fraction": 1.0}, {"val_fraction": 0.6, "test_fraction": 0.5}, {"seed": -1}]
)
def test_stratified_split_rejects_bad_arguments(kwargs: dict) -> None:
    args = {"val_fraction": 0.2, "test_fraction": 0.2, "seed": 0} | kwargs
    with pytest.raises(ValueError):
        stratified_split(["pop.00000"], ["pop"], **args)


def test_assign_split_auto_picks_stratified_on_a_subset() -> None:
    ids, genres = gtzan_ids(range(10))

    method, mapping = assign_split(ids, genres, SplitConfig(method="auto", seed=1))

    assert method == "stratified"
    assert mapping == stratify(ids, genres, seed=1)


def test_assign_split_auto_picks_filtered_on_full_gtzan() -> None:
    ids, genres = gtzan_ids()  # all 1000 ids: the 930 filtered ones plus GTZAN's faulty 70

    method, mapping = assign_split(ids, genres, SplitConfig(method="auto"))

    assert method == "filtered"
    assert mapping == filtered_split()  # tracks outside the filtered lists are left out


def test_assign_split_filtered_tolerates_the_kaggle_corrupt_track() -> None:
    ids, genres = gtzan_ids()
    keep = [i for i, t in enumerate(ids) if t != "jazz.00054"]  # excluded as undecodable in the Kaggle copy
    ids, genres = [ids[i] for i in keep], [genres[i] for i in keep]

    for method in ("auto", "filtered"):
        used, mapping = assign_split(ids, genres, SplitConfig(method=method))
        assert used == "filtered"
        assert "jazz.00054" not in mapping and len(mapping) == 929


def test_assign_split_filtered_on_a_subset_names_what_is_missing() -> None:
    ids, genres = gtzan_ids()
    ids, genres = ids[6:], genres[6:]  # drop blues.00000-00005, all in the filtered lists

    with pytest.raises(ValueError, match=r"6 are missing \(e\.g\. 'blues\.00000'\)"):
        assign_split(ids, genres, SplitConfig(method="filtered"))
    assert assign_split(ids, genres, SplitConfig(method="auto"))[0] == "stratified"


def test_assign_split_index() -> None:
    ids, genres = gtzan_ids()
    method, mapping = assign_split(ids, genres, SplitConfig(method="index"))
    assert method == "index" and Counter(mapping.values()) == {"train": 700, "val": 200, "test": 100}
    with pytest.raises(ValueError, match=r"\['val', 'test'\] empty"):
        assign_split(*gtzan_ids(range(13)), SplitConfig(method="index"))


def test_assign_split_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match="no tracks"):
        assign_split([], [], SplitConfig())
    with pytest.raises(ValueError, match="2 track ids and 1 genres"):
        assign_split(["pop.00000", "pop.00001"], ["pop"], SplitConfig())
    with pytest.raises(ValueError, match="repeated"):
        assign_split(["pop.00000", "pop.00000"], ["pop", "pop"], SplitConfig())


def test_split_csv_round_trip(tmp_path) -> None:
    mapping = stratify(*gtzan_ids(range(10)))
    path = tmp_path / "splits" / "split.csv"

    write_split_csv(mapping, path)

    assert read_split_csv(path) == mapping
    assert path.read_text(encoding="utf-8").splitlines()[0] == "track_id,split"


def test_split_csv_errors_name_file_and_value(tmp_path) -> None:
    with pytest.raises(ValueError, match="valid"):
        write_split_csv({"pop.00000": "valid"}, tmp_path / "a.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("track_id,split\npop.00000,train\npop.00000,test\n", encoding="utf-8")
    with pytest.raises(ValueError, match="bad.csv, line 3.*twice"):
        read_split_csv(bad)
    (tmp_path / "cols.csv").write_text("id,split\n", encoding="utf-8")
    with pytest.raises(ValueError, match="cols.csv.*track_id"):
        read_split_csv(tmp_path / "cols.csv")
