"""download-dataset: manifest written once, reused while the folder is unchanged, rebuilt when it changes."""

from __future__ import annotations

import pandas as pd

from tasks.download import download_dataset


def test_manifest_is_reused_until_the_folder_changes(write_tone, tmp_path) -> None:
    for genre in ("blues", "rock"):
        for i in range(2):
            write_tone(f"data/genres/{genre}/{genre}.0000{i}.wav", freq_hz=200 + 100 * i, seconds=1.2)
    (tmp_path / "data" / "genres" / "rock" / "rock.00009.wav").write_bytes(b"not audio at all")

    first = download_dataset.fn(str(tmp_path / "data"), str(tmp_path / "work"))
    assert (first["n_tracks"], first["n_excluded"]) == (4, 1)
    reasons = pd.read_csv(first["exclusions"])
    assert reasons["path"].str.endswith("rock.00009.wav").all() and reasons["reason"].str.len().gt(0).all()
    stamp = (tmp_path / "work").rglob("manifest.csv").__next__().stat().st_mtime_ns

    again = download_dataset.fn(str(tmp_path / "data"), str(tmp_path / "work"))
    assert again == first and next((tmp_path / "work").rglob("manifest.csv")).stat().st_mtime_ns == stamp

    write_tone("data/genres/blues/blues.00005.wav", seconds=1.2)
    changed = download_dataset.fn(str(tmp_path / "data"), str(tmp_path / "work"))
    assert changed["n_tracks"] == 5
