"""bench.learning_curve's own rules: nested seeded subsets, the split table it trains on, the tables it writes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from bench.learning_curve import BEGIN, COLUMNS, END, draw_subset, markdown, subset_table, with_section
from crnn.dataset import write_csv_atomic
from tasks.split import SPLIT_TABLE_COLUMNS

GENRES = ("blues", "jazz", "rock")


@pytest.fixture
def cross_artist_csv(tmp_path: Path) -> Path:
    """A cross-artist split table: 10 training tracks per genre (train/val) and 3 test clips per genre."""
    rows = [(f"{g}.{i:05d}", g, "val" if i < 2 else "train", f"/d/{g}.{i:05d}.wav", f"{g}{i}", "30.0") for g in GENRES for i in range(10)]  # fmt: skip
    rows += [
        (f"{g}.{i:05d}", g, "test", f"/x/{g}.{i:05d}.wav", f"x{g}{i}", "2.5") for g in GENRES for i in range(31, 34)
    ]
    path = tmp_path / "cross-artist.csv"
    write_csv_atomic(path, SPLIT_TABLE_COLUMNS, rows)
    return path


def test_subsets_are_per_genre_seeded_and_nested(cross_artist_csv: Path) -> None:
    table = pd.read_csv(cross_artist_csv)
    training = table[table["split"] != "test"]
    for seed in (42, 43):
        sets = {n: set(draw_subset(training, n, seed)["track_id"]) for n in (2, 4, 6, 8, 10)}
        assert all(draw_subset(training, n, seed)["genre"].value_counts().eq(n).all() for n in sets)
        assert sets[2] < sets[4] < sets[6] < sets[8] < sets[10] == set(training["track_id"])
        assert sets[2] == set(draw_subset(training, 2, seed)["track_id"])  # the same seed draws the same tracks
    assert set(draw_subset(training, 4, 42)["track_id"]) != set(draw_subset(training, 4, 43)["track_id"])


def test_the_subset_table_keeps_the_test_clips_and_holds_one_val_track_per_genre(cross_artist_csv, tmp_path) -> None:
    path = subset_table(str(cross_artist_csv), 2, 42, 0.2, tmp_path / "lc")
    table = pd.read_csv(path)
    assert list(table.columns) == list(SPLIT_TABLE_COLUMNS)
    assert (table[table["split"] == "test"]["track_id"].str.endswith(("31", "32", "33"))).all()
    assert len(table[table["split"] == "test"]) == 9
    training = table[table["split"] != "test"]
    assert training.groupby("genre")["split"].apply(sorted).tolist() == [["train", "val"]] * 3
    with pytest.raises(ValueError, match="smallest genre has 1"):
        subset_table(str(cross_artist_csv), 1, 42, 0.2, tmp_path / "lc")


def test_markdown_averages_seeds_and_the_results_section_is_replaced_not_repeated() -> None:
    rows = [
        {"model": "musicnn-linear", "tracks_per_label": n, "train_tracks_per_label": n - 1, "seed": s,
         "cross_artist_accuracy": acc, "cross_artist_macro_f1": acc, "cross_artist_selective_accuracy": acc,
         "cross_artist_uncertain_share": 0.5, "train_seconds": 1.0, "epochs": 30, "mixup_alpha": 0.4,
         "device": "cpu", "hardware": "test cpu", "run_id": "r"}
        for n, s, acc in [(2, 42, 0.3), (2, 43, 0.5), (10, 42, 0.6)]
    ]  # fmt: skip
    text = markdown(pd.DataFrame(rows, columns=COLUMNS), "python -m bench.learning_curve")
    assert (
        "| musicnn-linear | 2 | 1 | 2 | 0.400 ± 0.141 |" in text and "| musicnn-linear | 10 | 9 | 1 | 0.600 |" in text
    )
    doc = with_section("# Model zoo benchmark\n\ntable\n", text)
    again = with_section(doc, text.replace("0.600", "0.700"))
    assert again.count(BEGIN) == again.count(END) == 1 and "0.700" in again and again.startswith("# Model zoo")


def test_zoo_rewrite_keeps_the_learning_curve_section(tmp_path):
    """bench.zoo rewrites RESULTS.md's zoo table; the learning-curve section between its markers survives it."""
    from bench.zoo import write_results_md

    results = tmp_path / "RESULTS.md"
    results.write_text(with_section("# Model zoo benchmark\n\nold table\n", "## Learning curve\n\nrows\n"))
    write_results_md(results, "# Model zoo benchmark\n\nnew table\n")
    text = results.read_text()
    assert "new table" in text and "old table" not in text
    assert text.count(BEGIN) == 1 and "## Learning curve\n\nrows\n" in text and text.endswith(f"{END}\n")
