"""The Free Music Archive (FMA, Defferrard et al., ISMIR 2017) as a benchmark collection.

A collection folder holds FMA's metadata, ``fma_metadata/tracks.csv`` (found anywhere under the root),
and one audio folder, ``fma_small/``, ``fma_medium/`` or ``fma_large/``, laid out as
``<3-digit folder>/<6-digit track id>.mp3`` (``fma_small/000/000002.mp3``). ``tracks.csv`` has a
two-level column header (``track``/``genre_top``, ``set``/``subset``, ``set``/``split``,
``artist``/``name``, ...) and the track id as its index. The label is the top-level genre; the
split is FMA's official artist-filtered one (``training``/``validation``/``test``); the subsets are
nested (small within medium within large), so ``fma_medium/`` holds the tracks of both.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd

from crnn.dataset import Exclusion
from crnn.tagged import Candidate, audio_files

METADATA_FILE = "tracks.csv"
SUBSETS = ("small", "medium", "large")
"""FMA's subsets, each holding the ones before it."""
OFFICIAL_SPLITS = {"training": "train", "validation": "val", "test": "test"}
"""FMA's ``set/split`` values -> our split names."""
COLUMNS = {"genre": ("track", "genre_top"), "subset": ("set", "subset"), "split": ("set", "split")}
"""Columns of ``tracks.csv`` read (besides ``artist``/``name``, used when present)."""
_AUDIO_NAME = re.compile(r"^(?P<id>\d{6})\.mp3$", re.IGNORECASE)


def is_fma(root: Path) -> bool:
    """``root`` holds a ``tracks.csv`` and an ``fma_<subset>`` audio folder (at most two levels down)."""
    return _metadata(Path(root)) is not None and bool(_audio_dirs(Path(root)))


def _metadata(root: Path) -> Path | None:
    found = sorted(root.rglob(METADATA_FILE))
    return found[0] if found else None


def _audio_dirs(root: Path) -> list[Path]:
    levels = [root, *(p for p in root.iterdir() if p.is_dir())] if root.is_dir() else []
    return sorted(p / f"fma_{s}" for p in levels for s in SUBSETS if (p / f"fma_{s}").is_dir())


def read_tracks_csv(path: Path) -> pd.DataFrame:
    """FMA's ``tracks.csv`` as a frame indexed by track id with columns ``genre``, ``subset``, ``split``, ``artist``.

    Raises:
        ValueError: the file is not FMA's two-level-header layout or lacks a needed column (named).
    """
    try:
        raw = pd.read_csv(path, index_col=0, header=[0, 1], low_memory=False)
    except (ValueError, pd.errors.ParserError) as exc:
        raise ValueError(f"{path}: not FMA's tracks.csv layout ({exc})") from exc
    missing = [f"{a}/{b}" for a, b in COLUMNS.values() if (a, b) not in raw.columns]
    if missing or not isinstance(raw.columns, pd.MultiIndex):
        raise ValueError(f"{path}: tracks.csv lacks column(s) {missing or list(COLUMNS)} (two header rows expected)")
    frame = pd.DataFrame({name: raw[col] for name, col in COLUMNS.items()})
    frame["artist"] = raw[("artist", "name")] if ("artist", "name") in raw.columns else None
    try:
        frame.index = frame.index.astype(int)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: track ids (first column after the two header rows) are not integers") from exc
    return frame


def _text(value: object) -> str | None:
    return None if pd.isna(value) or not str(value).strip() else str(value).strip()


def fma_candidates(root: Path) -> tuple[list[Candidate], list[Exclusion]]:
    """Candidates of an FMA collection (raw label: ``genre_top``; group: the artist; FMA's split), and files left out.

    Tracks of the audio folder's subset that have no file, and files that are not in that subset,
    are exclusions naming why.

    Raises:
        ValueError: no ``tracks.csv`` or not exactly one ``fma_<subset>`` folder, or a malformed ``tracks.csv``.
    """
    root = Path(root)
    metadata, dirs = _metadata(root), _audio_dirs(root)
    if metadata is None or len(dirs) != 1:
        raise ValueError(
            f"{root}: an FMA collection needs fma_metadata/{METADATA_FILE} and one fma_small/medium/large folder, "
            f"found {METADATA_FILE}: {metadata or 'none'}, audio folders: {[d.name for d in dirs] or 'none'}"
        )
    audio_dir = dirs[0]
    subset = audio_dir.name.removeprefix("fma_")
    meta = read_tracks_csv(metadata)
    meta = meta[meta["subset"].isin(SUBSETS[: SUBSETS.index(subset) + 1])]
    files, excluded = audio_files(audio_dir)
    candidates, seen = [], set()
    for path in files:
        match = _AUDIO_NAME.match(path.name)
        track_id = int(match["id"]) if match else None
        if track_id is None or track_id not in meta.index:
            why = "not an FMA audio file name (<6 digits>.mp3)" if match is None else f"not in the {subset} subset"
            excluded.append(Exclusion(os.path.abspath(path), f"{why} of {metadata.name}"))
            continue
        seen.add(track_id)
        row = meta.loc[track_id]
        artist = _text(row["artist"])
        candidates.append(
            Candidate(
                path,
                path.relative_to(root).as_posix(),
                _text(row["genre"]),
                f"artist:{artist.casefold()}" if artist else "",
                OFFICIAL_SPLITS.get(_text(row["split"]) or "", ""),
                unlabelled_reason=f"no top-level genre (track/genre_top) in {metadata.name}",
            )
        )
    for track_id in sorted(set(meta.index) - seen):
        expected = audio_dir / f"{track_id // 1000:03d}" / f"{track_id:06d}.mp3"
        excluded.append(Exclusion(os.path.abspath(expected), f"listed in {metadata.name} ({subset}) but missing"))
    return candidates, excluded
