"""A user's music library as training data: labels from the files' genre tags or from a folder per label.

Layouts (:mod:`crnn.layouts` chooses one):

- ``tags``: any folder tree of audio files; the label is the file's genre tag (ID3 ``TCON``, Vorbis
  ``GENRE``, MP4 ``©gen``), mapped to a label by a label map or by :func:`default_label`.
- ``folders``: ``<root>/<label>/[artist/album/]file``; the label is the first folder under the root.

Track ids are the files' paths relative to the root (POSIX form), so they are stable across runs
and unique. Each track has a group that must stay inside one split: its artist (or album artist)
tag when it has one, else its album folder (the parent folder, unless that is the root or the label
folder itself), else none (the track alone). Files that cannot be used are returned as
:class:`crnn.dataset.Exclusion` records with the reason: untagged, unmapped tag values, undecodable,
second copies of the same audio bytes, and labels with fewer tracks than asked for.
"""

from __future__ import annotations

import dataclasses
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import mutagen
from mutagen.id3 import ID3
from mutagen.mp4 import MP4Tags

from crnn import GENRES
from crnn.audio import AUDIO_EXTENSIONS, AudioDecodeError, non_regular_reason
from crnn.dataset import APPLEDOUBLE_REASON, Exclusion, Track, inspect_track, is_label

LabelOf = Callable[[str], "str | None"]
"""Maps a raw genre value (a tag, a folder name, FMA's ``genre_top``) to a label, or ``None`` when unmapped."""


@dataclass(frozen=True)
class FileTags:
    """The tags of one file that training uses; ``None`` where the file has none.

    Attributes:
        genre: first genre value, as written (``"Hip-Hop"``; ID3v1 references such as ``"(7)"`` resolved).
        artist: the artist, else the album artist.
    """

    genre: str | None
    artist: str | None


@dataclass(frozen=True)
class Candidate:
    """A file that may become a track, before it is decoded.

    Attributes:
        path: the audio file.
        track_id: its id (path relative to the collection root, POSIX form).
        raw_label: the raw genre value, or ``None`` when the file has none.
        group: what keeps it in one split (``"artist:<name>"``, ``"folder:<rel folder>"``, or ``""``).
        official_split: the collection's own split (``train``/``val``/``test``), else ``""``.
        unlabelled_reason: the exclusion reason when ``raw_label`` is ``None``.
    """

    path: Path
    track_id: str
    raw_label: str | None
    group: str = ""
    official_split: str = ""
    unlabelled_reason: str = "no genre tag"


def _first(values: object) -> str | None:
    """The first non-blank value of a tag (a list of values, or one value), stripped."""
    items = values if isinstance(values, list) else [values] if values is not None else []
    texts = [str(v).strip() for v in items if str(v).strip()]
    return texts[0] if texts else None


def read_file_tags(path: str | Path) -> FileTags:
    """Genre and artist tags of ``path`` (ID3, MP4 or Vorbis comments, read with mutagen).

    A format without tag support (e.g. AU) reads as untagged.

    Raises:
        ValueError: mutagen recognises the format but cannot read its tags (the message names the file).
    """
    try:
        f = mutagen.File(str(path))
    except (mutagen.MutagenError, OSError) as exc:
        raise ValueError(f"{path}: unreadable tags ({exc})") from exc
    tags = None if f is None else f.tags
    if tags is None:
        return FileTags(None, None)
    if isinstance(tags, ID3):  # MP3, WAV, AIFF
        genres = [g for frame in tags.getall("TCON") for g in frame.genres]
        artists = [str(t) for key in ("TPE1", "TPE2") for frame in tags.getall(key) for t in frame.text]
        return FileTags(_first(genres), _first(artists))
    if isinstance(tags, MP4Tags):
        return FileTags(_first(tags.get("\xa9gen")), _first(tags.get("\xa9ART")) or _first(tags.get("aART")))
    # Vorbis comments (FLAC, Ogg) and APEv2: case-insensitive keys
    artist = _first(tags.get("artist")) or _first(tags.get("albumartist"))
    return FileTags(_first(tags.get("genre")), artist)


def default_label(raw: str) -> str | None:
    """The label of a raw genre value without a label map.

    GTZAN's names match ignoring case and punctuation (``"Hip-Hop"`` -> ``"hiphop"``, the spelling
    batch scoring writes); any other value becomes a lowercase slug (``"Drum & Bass"`` ->
    ``"drum-bass"``, accents dropped). ``None`` when no letter is left to start a label.
    """
    ascii_text = unicodedata.normalize("NFKD", raw).encode("ascii", "ignore").decode().casefold()
    compact = re.sub(r"[^a-z0-9]", "", ascii_text)
    if compact in GENRES:
        return compact
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text).strip("-")
    return slug if is_label(slug) else None


def _walk(root: Path) -> Iterator[Path]:
    """Files under ``root``, sorted, hidden folders skipped (``._*`` files are yielded, to be reported).

    Symlinked folders are followed once each (a link loop is walked once).
    """
    seen: set[str] = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        if os.path.realpath(folder) in seen:
            dirs[:] = []
            continue
        seen.add(os.path.realpath(folder))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") or name.startswith("._"):
                yield Path(folder, name)


def audio_files(root: Path) -> tuple[list[Path], list[Exclusion]]:
    """Audio files under ``root`` (suffixes of :data:`crnn.audio.AUDIO_EXTENSIONS`), and the other files as exclusions.

    Raises:
        FileNotFoundError: ``root`` is not an existing folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: library root is not an existing folder")
    found, excluded = [], []
    for path in _walk(root):
        if path.name.startswith("._"):
            excluded.append(Exclusion(os.path.abspath(path), APPLEDOUBLE_REASON))
        elif path.suffix.lower() not in AUDIO_EXTENSIONS:
            excluded.append(Exclusion(os.path.abspath(path), f"not an audio file ({path.suffix or 'no suffix'})"))
        elif (reason := non_regular_reason(path)) or not path.exists():  # never opened: a FIFO blocks a reader
            excluded.append(Exclusion(os.path.abspath(path), reason or "broken symlink: its target does not exist"))
        else:
            found.append(path)
    return found, excluded


def _group(tags: FileTags, album: Path) -> str:
    """``artist:<name>`` (case-folded), else ``folder:<album folder>``, else ``""``."""
    if tags.artist:
        return f"artist:{' '.join(tags.artist.casefold().split())}"
    return f"folder:{album.as_posix()}" if album.parts else ""


def _candidate(root: Path, path: Path, raw_of: Callable[[Path, FileTags], str | None], top: int) -> Candidate:
    """One file as a candidate; ``top`` folders of its relative path are the label folder (not an album)."""
    rel = path.relative_to(root)
    tags = read_file_tags(path)
    album = rel.parent if len(rel.parent.parts) > top else Path()
    return Candidate(path, rel.as_posix(), raw_of(rel, tags), _group(tags, album))


def library_candidates(root: Path, layout: str) -> tuple[list[Candidate], list[Exclusion]]:
    """Candidates of a ``tags`` or ``folders`` library (labels not yet mapped), and files left out.

    Raises:
        FileNotFoundError: ``root`` is not an existing folder.
        ValueError: ``layout`` is not ``tags`` or ``folders``.
    """
    if layout not in ("tags", "folders"):
        raise ValueError(f"library layout must be tags or folders, got {layout!r}")
    root = Path(root)
    files, excluded = audio_files(root)
    candidates = []
    for path in files:
        try:
            if layout == "tags":
                candidates.append(_candidate(root, path, lambda rel, tags: tags.genre, 0))
            elif len(path.relative_to(root).parts) < 2:
                excluded.append(Exclusion(os.path.abspath(path), "not inside a label folder (<root>/<label>/...)"))
            else:
                candidates.append(_candidate(root, path, lambda rel, tags: rel.parts[0], 1))
        except ValueError as exc:
            excluded.append(Exclusion(os.path.abspath(path), str(exc).removeprefix(f"{path}: ")))
    return candidates, excluded


def _labelled(
    candidates: Sequence[Candidate], label_of: LabelOf
) -> tuple[list[tuple[Candidate, str]], list[Exclusion]]:
    """Candidates with their labels, and exclusions for untagged files and unmapped values."""
    kept, excluded = [], []
    for c in candidates:
        label = None if c.raw_label is None else label_of(c.raw_label)
        if c.raw_label is None:
            excluded.append(Exclusion(os.path.abspath(c.path), c.unlabelled_reason))
        elif label is None:
            excluded.append(Exclusion(os.path.abspath(c.path), f"genre {c.raw_label!r} is not in the label map"))
        elif not is_label(label):
            excluded.append(Exclusion(os.path.abspath(c.path), f"genre {c.raw_label!r} maps to {label!r}, not a label"))
        else:
            kept.append((c, label))
    return kept, excluded


def finish_manifest(
    candidates: Sequence[Candidate],
    excluded: Sequence[Exclusion],
    *,
    label_of: LabelOf,
    min_tracks: int,
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[list[Track], list[Exclusion]]:
    """Map labels, decode and hash each labelled candidate, and drop labels with too few tracks.

    A file that fails never stops the scan: it becomes an exclusion naming the reason. Of files with
    the same audio bytes (SHA-256) the first by track id is kept, so no recording is in two splits.

    Args:
        candidates: files with raw labels, groups and official splits.
        excluded: files already left out (kept in the result).
        label_of: raw genre value -> label, or ``None`` (unmapped).
        min_tracks: labels with fewer decodable tracks are left out, each track with the reason.
        on_progress: called as ``on_progress(done, total)`` after each decoded file.

    Returns:
        Tracks sorted by track id, and exclusions sorted by path.
    """
    labelled, unlabelled = _labelled(sorted(candidates, key=lambda c: c.track_id), label_of)
    exclusions = [*excluded, *unlabelled]
    tracks: list[Track] = []
    by_sha: dict[str, str] = {}
    for done, (c, label) in enumerate(labelled, start=1):
        try:
            track = inspect_track(c.path, c.track_id, genre=label)
        except AudioDecodeError as exc:
            exclusions.append(Exclusion(os.path.abspath(c.path), exc.reason))
            track = None
        except Exception as exc:  # noqa: BLE001 - one bad file must never stop the scan
            exclusions.append(Exclusion(os.path.abspath(c.path), f"{type(exc).__name__}: {exc}"))
            track = None
        if track is not None and track.sha256 in by_sha:
            exclusions.append(Exclusion(track.path, f"same audio bytes as {by_sha[track.sha256]}"))
        elif track is not None:
            by_sha[track.sha256] = track.track_id
            tracks.append(dataclasses.replace(track, group=c.group, official_split=c.official_split))
        if on_progress is not None:
            on_progress(done, len(labelled))
    counts = Counter(t.genre for t in tracks)
    for t in (t for t in tracks if counts[t.genre] < min_tracks):
        exclusions.append(
            Exclusion(t.path, f"label {t.genre!r} has {counts[t.genre]} tracks, under the minimum of {min_tracks}")
        )
    kept = [t for t in tracks if counts[t.genre] >= min_tracks]
    return kept, sorted(exclusions, key=lambda e: e.path)
