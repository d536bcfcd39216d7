"""One entry point for every collection layout: GTZAN, a tagged library, a folder per label, FMA.

``auto`` picks FMA when the folder holds ``tracks.csv`` and an ``fma_<subset>`` folder, GTZAN when
any file is named ``<genre>.<5 digits>.(au|wav)``, a tagged library when any audio file carries a
genre tag, and a folder per label otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from crnn.dataset import Exclusion, Track, build_manifest, discover_tracks
from crnn.fma import fma_candidates, is_fma
from crnn.labelmap import load_label_map
from crnn.requests import SOURCE_LAYOUTS
from crnn.tagged import LabelOf, audio_files, default_label, finish_manifest, library_candidates, read_file_tags


def detect_layout(root: Path) -> str:
    """The layout of the collection at ``root``: ``fma``, ``gtzan``, ``tags`` or ``folders`` (see the module docstring).

    Raises:
        FileNotFoundError: ``root`` is not an existing folder.
    """
    root = Path(root)
    if is_fma(root):
        return "fma"
    if discover_tracks(root):
        return "gtzan"
    for path in audio_files(root)[0]:
        try:
            if read_file_tags(path).genre is not None:
                return "tags"
        except ValueError:
            continue
    return "folders"


def label_function(label_map: str | Path | None) -> LabelOf:
    """``label_for`` of the TOML label map at ``label_map``, or :func:`crnn.tagged.default_label` without one.

    Raises:
        crnn.labelmap.LabelMapError: the map cannot be read or is inconsistent (one line naming the file).
    """
    return load_label_map(label_map).label_for if label_map else default_label


def build_layout_manifest(
    root: Path,
    *,
    layout: str,
    label_map: str | Path | None,
    min_tracks: int,
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[str, list[Track], list[Exclusion]]:
    """Decode every usable file of the collection at ``root`` and sort it into tracks and exclusions.

    Args:
        root: the collection folder.
        layout: one of :data:`crnn.requests.SOURCE_LAYOUTS` (``auto``: :func:`detect_layout`).
        label_map: TOML label map for raw genre values (tags, folder names, FMA genres); ``None``:
            :func:`crnn.tagged.default_label`. GTZAN takes its labels from file names and ignores it.
        min_tracks: labels with fewer tracks are excluded (tags, folders and FMA layouts).
        on_progress: called as ``on_progress(done, total)`` after each decoded file.

    Returns:
        (layout used, tracks sorted by track id, exclusions sorted by path).

    Raises:
        FileNotFoundError: ``root`` is not an existing folder.
        ValueError: an unknown layout, ``min_tracks`` under 1, a bad label map or FMA metadata (the
            message names the file).
    """
    if layout not in SOURCE_LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(SOURCE_LAYOUTS)}, got {layout!r}")
    if min_tracks < 1:
        raise ValueError(f"min_tracks must be at least 1, got {min_tracks}")
    if not Path(root).is_dir():
        raise FileNotFoundError(f"{root}: dataset root is not an existing folder")
    layout = detect_layout(root) if layout == "auto" else layout
    if layout == "gtzan":
        return layout, *build_manifest(root, on_progress=on_progress)
    label_of = label_function(label_map)
    candidates, excluded = fma_candidates(root) if layout == "fma" else library_candidates(root, layout)
    tracks, exclusions = finish_manifest(
        candidates, excluded, label_of=label_of, min_tracks=min_tracks, on_progress=on_progress
    )
    return layout, tracks, exclusions
