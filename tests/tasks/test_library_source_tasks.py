"""download-dataset and split-tracks on a tagged library: layout options, label map in the cache key, grouped table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from crnn.config import SplitConfig
from tasks.download import download_dataset
from tasks.split import split_tracks
from tests.tagged_audio import song


def test_a_tagged_library_is_split_by_artist_and_the_table_records_it(tmp_path: Path) -> None:
    library = tmp_path / "Music"
    for g, genre in enumerate(("Rock", "Jazz", "Hip Hop")):
        for a in range(2):
            for t in range(2):
                song(library / f"{genre} {a}/{t}.flac", genre=genre, artist=f"{genre} artist {a}",
                     freq_hz=200 + 200 * g + 20 * a + 5 * t, seconds=1.1)  # fmt: skip
    label_map = tmp_path / "labels.toml"
    label_map.write_text('rock = ["Rock"]\njazz = ["Jazz"]\n')
    work = str(tmp_path / "work")

    mapped = download_dataset.fn(str(library), work, "", "tags", str(label_map), 2)
    assert (mapped["n_tracks"], mapped["n_excluded"]) == (8, 4)  # Hip Hop is not in the map
    assert set(pd.read_csv(mapped["exclusions"])["reason"]) == {"genre 'Hip Hop' is not in the label map"}
    label_map.write_text('rock = ["Rock"]\njazz = ["Jazz"]\nhiphop = ["hip-hop"]\n')
    remapped = download_dataset.fn(str(library), work, "", "tags", str(label_map), 2)
    assert remapped["manifest"] != mapped["manifest"] and remapped["n_tracks"] == 12  # a new map: a new manifest

    info = split_tracks.fn(remapped["manifest"], SplitConfig(), str(tmp_path / "splits"))
    table = pd.read_csv(info["table"])
    assert info["method"] == "grouped-stratified" and set(table["method"]) == {"grouped-stratified"}
    assert info["labels"] == ["hiphop", "jazz", "rock"]
    assert table.groupby("group")["split"].nunique().max() == 1  # no artist in two splits
    assert table["group"].nunique() == 6 and table["track_id"].str.endswith(".flac").all()
