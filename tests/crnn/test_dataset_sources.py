"""The same tracks give the same manifest through the GTZAN source and through the library sources."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from crnn.dataset import build_manifest
from crnn.layouts import build_layout_manifest


def _without_ids(tracks) -> list[dict]:
    return [{k: v for k, v in dataclasses.asdict(t).items() if k != "track_id"} for t in tracks]


def test_gtzan_folder_and_folder_per_label_sources_give_the_same_manifest(gtzan_mini: Path, tmp_path: Path) -> None:
    root = tmp_path / "gtzan"
    for genre in ("blues", "metal"):  # a slice of the real collection: 2 genres x 2 tracks
        (root / "genres" / genre).mkdir(parents=True)
        for n in (0, 1):
            shutil.copy(gtzan_mini / genre / f"{genre}.{n:05d}.wav", root / "genres" / genre)
    gtzan, gtzan_excluded = build_manifest(root)
    layout, folders, folders_excluded = build_layout_manifest(
        root / "genres", layout="folders", label_map=None, min_tracks=1
    )
    assert layout == "folders" and len(gtzan) == 4 and not gtzan_excluded and not folders_excluded
    by_path = sorted(folders, key=lambda t: t.path)
    assert _without_ids(by_path) == _without_ids(sorted(gtzan, key=lambda t: t.path))
    assert [t.track_id for t in by_path] == ["blues/blues.00000.wav", "blues/blues.00001.wav",
                                             "metal/metal.00000.wav", "metal/metal.00001.wav"]  # fmt: skip
