"""Track manifest: find GTZAN files under a folder, check each one decodes, record the result.

GTZAN files are named ``<genre>.<5 digits>.(au|wav)``; the genre comes from the file name, never
from the folder. A collection with other labels than GTZAN's ten names them in a ``labels.txt`` at
its root (:data:`LABELS_FILE`, one lowercase label per line); its files are ``<label>.<5 digits>.(au|wav)``. The layouts of the original archive (``genres/<genre>/``) and of the Kaggle copy
(``genres_original/<genre>/``, ``Data/genres_original/<genre>/``) are all found by a recursive
search. Files that cannot be used (macOS ``._*`` resource forks, files that do not decode or are
truncated, second copies of a track id) are returned as :class:`Exclusion` records with a reason.
"""

from __future__ import annotations

import csv
import os
import re
import struct
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import av

from crnn import GENRES
from crnn.atomic import atomic_open
from crnn.audio import FFMPEG_EXTENSIONS, AudioDecodeError, audio_info, file_sha256, load_audio

APPLEDOUBLE_REASON = "macOS resource fork (._ file)"
"""Exclusion reason of every ``._*`` AppleDouble file."""

MIN_DURATION_S = 1.0
"""Tracks shorter than this (in seconds) are excluded: too short for one model segment."""
LABELS_FILE = "labels.txt"
"""At a collection's root: the labels its file names use, one per line, instead of :data:`crnn.GENRES`."""
MANIFEST_COLUMNS = ("track_id", "genre", "path", "duration_s", "sample_rate", "sha256", "group", "official_split")
"""Columns of a manifest; ``group`` and ``official_split`` may be missing in manifests of earlier versions."""
_OPTIONAL_COLUMNS = ("group", "official_split")
EXCLUSION_COLUMNS = ("path", "reason")

_LABEL = r"[a-z][a-z0-9_-]*"
_FILE_RE = re.compile(rf"^(?P<genre>{_LABEL})\.(?P<number>\d{{5}})\.(?:au|wav)$", re.IGNORECASE)
_TRACK_ID_RE = re.compile(rf"^(?P<genre>{_LABEL})\.(?P<number>\d{{5}})$")


def label_list(genres: Iterable[str], *, gtzan: bool = True) -> tuple[str, ...]:
    """The label list (class order) of a model trained on tracks of ``genres``.

    Args:
        genres: each training track's label.
        gtzan: the tracks come from a GTZAN-layout collection (ids ``<genre>.<5 digits>``, see
            :func:`is_gtzan_id`); a tagged library, folder layout or FMA passes ``False``.

    Returns:
        :data:`crnn.GENRES` when ``gtzan`` and every genre is one of GTZAN's (so GTZAN models keep
        their ten classes and their order), else the distinct genres sorted (the data's own labels).
    """
    present = set(genres)
    return GENRES if gtzan and present <= set(GENRES) else tuple(sorted(present))


def is_gtzan_id(track_id: str) -> bool:
    """``track_id`` has GTZAN's form ``<label>.<5 digits>`` (other layouts use relative paths, with a suffix)."""
    return _TRACK_ID_RE.match(track_id) is not None


def is_label(value: str) -> bool:
    """``value`` is a label: lowercase letter first, then letters, digits, ``_`` or ``-`` (``"hip-hop"``)."""
    return re.fullmatch(_LABEL, value) is not None


def read_labels_file(root: Path) -> tuple[str, ...] | None:
    """The labels declared in ``root``/:data:`LABELS_FILE`, or ``None`` when there is none.

    Raises:
        ValueError: a line is not a lowercase label (letters, then letters, digits, ``_`` or ``-``).
    """
    path = Path(root) / LABELS_FILE
    if not path.is_file():
        return None
    labels = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    bad = [g for g in labels if not re.fullmatch(_LABEL, g)]
    if bad or not labels:
        raise ValueError(f"{path}: labels must be lowercase words, one per line, got {bad or 'none'}")
    return labels


@dataclass(frozen=True)
class Track:
    """One decodable audio file.

    Attributes:
        track_id: GTZAN: ``"<genre>.<5 digits>"``, e.g. ``"blues.00000"``; other layouts (tagged
            library, folder per label, FMA): the file's path relative to the collection root, in
            POSIX form (``"Artist/Album/01 Song.mp3"``), stable across runs and unique.
        genre: the track's label: one of :data:`crnn.GENRES`, of the collection's :data:`LABELS_FILE`
            (taken from the file name), or of the library's tags / folders / metadata.
        path: absolute path of the file.
        duration_s: decoded length (in seconds).
        sample_rate: native rate (in Hz).
        sha256: hex SHA-256 of the file's bytes.
        group: what must stay in one split (``"artist:<name>"`` or ``"folder:<relative album folder>"``);
            ``""``: the track is its own group.
        official_split: the collection's own split of the track (FMA's ``train``/``val``/``test``), else ``""``.
    """

    track_id: str
    genre: str
    path: str
    duration_s: float
    sample_rate: int
    sha256: str
    group: str = ""
    official_split: str = ""


@dataclass(frozen=True)
class Exclusion:
    """A file left out of the manifest, and why."""

    path: str
    reason: str


def parse_track_id(track_id: str, labels: Collection[str] | None = GENRES) -> tuple[str, int]:
    """Split ``"blues.00012"`` into ``("blues", 12)``.

    Args:
        track_id: ``<genre>.<5 digits>``.
        labels: the genres accepted; ``None`` accepts any lowercase label.

    Raises:
        ValueError: ``track_id`` is not ``<genre>.<5 digits>`` with a genre in ``labels``.
    """
    match = _TRACK_ID_RE.match(track_id)
    if match is None or (labels is not None and match["genre"] not in labels):
        raise ValueError(f"track id {track_id!r} is not '<genre>.<5 digits>' with a genre in {labels or 'any'}")
    return match["genre"], int(match["number"])


def _track_id_of(name: str, labels: Collection[str] = GENRES) -> str | None:
    """Track id of a GTZAN file name (``"blues.00000.wav"`` -> ``"blues.00000"``), else ``None``."""
    match = _FILE_RE.match(name)
    if match is None or match["genre"] not in labels:
        return None
    return f"{match['genre']}.{match['number']}"


def _walk_files(root: Path) -> Iterator[Path]:
    """Every file under ``root`` (symlinked folders followed once each), in sorted order."""
    seen: set[str] = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:  # a symlink loop or a second link to a folder already walked
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()
        for name in sorted(files):
            yield Path(folder, name)


def discover_tracks(root: Path) -> list[Path]:
    """GTZAN audio files under ``root``, searched recursively.

    Args:
        root: folder holding the collection in any layout (``genres/<g>/``,
            ``genres_original/<g>/``, ``Data/genres_original/<g>/``, or flat).

    Returns:
        Files named ``<genre>.<5 digits>.(au|wav)`` (extension in any case) with a genre in
        :data:`crnn.GENRES` (or in ``root``'s :data:`LABELS_FILE`), sorted by track id then path;
        ``._*`` files are skipped.

    Raises:
        FileNotFoundError: ``root`` is not an existing folder.
        ValueError: a malformed :data:`LABELS_FILE`.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: dataset root is not an existing folder")
    labels = read_labels_file(root) or GENRES
    found = []
    for path in _walk_files(root):
        track_id = None if path.name.startswith("._") else _track_id_of(path.name, labels)
        if track_id is not None:
            found.append((track_id, str(path), path))
    return [path for _, _, path in sorted(found)]


def _header_problem(path: Path) -> str | None:
    """Why a WAV/AU file's own header makes it unusable, else ``None``.

    libsndfile reads an ``.au`` file without the ``.snd`` magic as headerless 8 kHz mu-law (so
    any bytes "decode"), and silently shortens a file whose header declares more audio data than
    the file holds; both are caught here by reading the header directly.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if head[:4] == b".snd" and size >= 24:  # AU: magic, data offset, data size (big-endian)
            offset, declared = struct.unpack(">II", head[4:12])
            held = size - offset
        elif path.suffix.lower() == ".au":
            return "no AU header (missing '.snd' magic); not audio or headerless raw"
        elif head[:4] == b"RIFF" and head[8:12] == b"WAVE":
            chunk = _find_wav_data_chunk(f)
            if chunk is None:
                return None
            declared, held = chunk[0], size - chunk[1]
        else:
            return None
    if declared in (0, 0xFFFFFFFF) or declared <= held:  # 0 / all ones: size left unknown
        return None
    return f"truncated: header declares {declared} bytes of audio data, file holds {max(held, 0)}"


def _find_wav_data_chunk(f: BinaryIO) -> tuple[int, int] | None:
    """(declared size, byte offset) of the ``data`` chunk of a RIFF file positioned after ``WAVE``."""
    while True:
        header = f.read(8)
        if len(header) < 8:
            return None
        size = struct.unpack("<I", header[4:])[0]
        if header[:4] == b"data":
            return size, f.tell()
        f.seek(size + (size & 1), os.SEEK_CUR)


def inspect_track(path: Path, track_id: str, *, genre: str | None = None) -> Track:
    """Check the header, decode the whole file once and hash it.

    Args:
        path: an audio file of any suffix in :data:`crnn.audio.AUDIO_EXTENSIONS`.
        track_id: its id; a GTZAN id when ``genre`` is ``None`` (the genre is read from it).
        genre: the track's label, for ids of other layouts.

    Raises:
        AudioDecodeError: unreadable or missing header, truncated, zero-length, undecodable or
            shorter than :data:`MIN_DURATION_S`; the reason names the fault.
    """
    sample_rate = native_sample_rate(path)
    problem = _header_problem(path)
    if problem is not None:
        raise AudioDecodeError(path, problem)
    samples = load_audio(path, sample_rate)  # native rate: no resampling
    duration_s = samples.shape[0] / sample_rate
    if duration_s < MIN_DURATION_S:
        raise AudioDecodeError(path, f"too short: {duration_s:.3f} s of audio, under {MIN_DURATION_S} s")
    if genre is None:
        genre, _ = parse_track_id(track_id, labels=None)  # the caller matched its label set
    return Track(
        track_id=track_id,
        genre=genre,
        path=os.path.abspath(path),
        duration_s=duration_s,
        sample_rate=sample_rate,
        sha256=file_sha256(path),
    )


def native_sample_rate(path: Path) -> int:
    """The rate (in Hz) ``path`` declares: libsndfile's header, or FFmpeg's for MPEG-4/AAC files.

    Raises:
        AudioDecodeError: unreadable header, no audio stream, or a rate outside the accepted range.
    """
    if Path(path).suffix.lower() not in FFMPEG_EXTENSIONS:
        return audio_info(path).sample_rate
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AudioDecodeError(path, "no audio stream")
            rate = container.streams.audio[0].codec_context.sample_rate
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise AudioDecodeError(path, f"unreadable header: {exc}") from exc
    if not rate:
        raise AudioDecodeError(path, "no sample rate in the audio stream")
    return int(rate)


def _appledouble_exclusions(root: Path) -> list[Exclusion]:
    return [Exclusion(os.path.abspath(p), APPLEDOUBLE_REASON) for p in _walk_files(root) if p.name.startswith("._")]


def build_manifest(
    root: Path, *, on_progress: Callable[[int, int], None] | None = None
) -> tuple[list[Track], list[Exclusion]]:
    """Decode every GTZAN file under ``root`` once and sort it into tracks and exclusions.

    A file that fails never stops the scan: it becomes an exclusion naming the reason. Of two
    files with the same track id (e.g. ``.au`` and ``.wav``) the first that decodes, in
    :func:`discover_tracks` order, is kept and the other excluded.

    Args:
        root: dataset folder (see :func:`discover_tracks`).
        on_progress: called as ``on_progress(done, total)`` after each candidate file.

    Returns:
        Tracks sorted by track id, and exclusions sorted by path.

    Raises:
        FileNotFoundError: ``root`` is not an existing folder.
    """
    root = Path(root)
    candidates = discover_tracks(root)
    exclusions = _appledouble_exclusions(root)
    kept: dict[str, Track] = {}
    labels = read_labels_file(root) or GENRES
    for done, path in enumerate(candidates, start=1):
        track_id = _track_id_of(path.name, labels)
        if track_id in kept:
            reason = f"duplicate track id {track_id} (kept {kept[track_id].path})"
            exclusions.append(Exclusion(os.path.abspath(path), reason))
        else:
            try:
                kept[track_id] = inspect_track(path, track_id)
            except AudioDecodeError as exc:
                exclusions.append(Exclusion(os.path.abspath(path), exc.reason))
            except Exception as exc:  # noqa: BLE001 - one bad file must never stop the scan
                exclusions.append(Exclusion(os.path.abspath(path), f"{type(exc).__name__}: {exc}"))
        if on_progress is not None:
            on_progress(done, len(candidates))
    return sorted(kept.values(), key=lambda t: t.track_id), sorted(exclusions, key=lambda e: e.path)


def write_csv_atomic(path: Path, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """Write a CSV (UTF-8) with a header row atomically (:func:`crnn.atomic.atomic_open`, mode 0644).

    Readers see either the old file or the complete new one, never a partial write.
    """
    with atomic_open(path, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(rows)


def read_csv_rows(path: Path, columns: Sequence[str]) -> list[dict[str, str]]:
    """Rows of a CSV as dicts, after checking the header holds ``columns``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: a required column is missing.
    """
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; header is {reader.fieldnames}")
        return list(reader)


def write_manifest(
    tracks: Sequence[Track], exclusions: Sequence[Exclusion], manifest_csv: Path, exclusions_csv: Path
) -> None:
    """Write the manifest (one row per track) and the exclusions (path, reason), each atomically."""
    write_csv_atomic(manifest_csv, MANIFEST_COLUMNS, ([getattr(t, c) for c in MANIFEST_COLUMNS] for t in tracks))
    write_csv_atomic(exclusions_csv, EXCLUSION_COLUMNS, ((e.path, e.reason) for e in exclusions))


def read_manifest(manifest_csv: Path) -> list[Track]:
    """Tracks of a manifest written by :func:`write_manifest`.

    Raises:
        FileNotFoundError: ``manifest_csv`` does not exist.
        ValueError: a column is missing, a value does not parse, or a track id repeats; the
            message names the file and line.
    """
    tracks: list[Track] = []
    seen: set[str] = set()
    required = [c for c in MANIFEST_COLUMNS if c not in _OPTIONAL_COLUMNS]
    for line, row in enumerate(read_csv_rows(manifest_csv, required), start=2):
        try:
            genre = row["genre"]
            if is_gtzan_id(row["track_id"]) and parse_track_id(row["track_id"], labels=None)[0] != genre:
                raise ValueError(f"genre {genre!r} disagrees with track id {row['track_id']!r}")
            if not is_label(genre) or not row["track_id"]:
                raise ValueError(f"track id {row['track_id']!r} with genre {genre!r}: need an id and a lowercase label")
            if row["track_id"] in seen:
                raise ValueError(f"duplicate track id {row['track_id']!r}")
            extra = {c: row.get(c) or "" for c in _OPTIONAL_COLUMNS}
            track = Track(
                row["track_id"],
                genre,
                row["path"],
                float(row["duration_s"]),
                int(row["sample_rate"]),
                row["sha256"],
                **extra,
            )
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{manifest_csv}, line {line}: {exc}") from exc
        seen.add(track.track_id)
        tracks.append(track)
    return tracks
