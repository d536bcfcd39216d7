"""Write the predicted genre into a file's own tags with mutagen: ID3 ``TCON``, Vorbis ``GENRE``, MP4 ``©gen``.

Only the tag block changes: mutagen rewrites the metadata and copies the audio frames as they are.
The file is tagged as a copy next to it and renamed over the original, so a crash never leaves a
half-written file; copies left by a killed run are removed by :func:`remove_stale_copies`. Files whose
real path leaves the library, hardlinked files and WAV files whose header does not match their
size are refused, never written.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import mutagen
from mutagen.aiff import AIFF
from mutagen.flac import FLAC
from mutagen.id3 import TCON
from mutagen.mp3 import MP3
from mutagen.mp4 import MP4
from mutagen.oggopus import OggOpus
from mutagen.oggvorbis import OggVorbis
from mutagen.wave import WAVE

from crnn.audio import UNKNOWN_CHUNK_SIZE, wav_layout
from infra.storage import atomic_path

GENRE_TAG_VALUES = {
    "blues": "Blues",
    "classical": "Classical",
    "country": "Country",
    "disco": "Disco",
    "hiphop": "Hip-Hop",
    "jazz": "Jazz",
    "metal": "Metal",
    "pop": "Pop",
    "reggae": "Reggae",
    "rock": "Rock",
}
"""How each genre is spelled in tags (the ID3v1 genre names)."""


def tag_value(genre: str) -> str:
    """How ``genre`` is spelled in tags: its ID3v1 name, or the label itself for a model's other labels.

    Raises:
        KeyError: ``genre`` is not a label (lowercase letters, digits, ``_`` or ``-``), e.g. a tag spelling.
    """
    if genre in GENRE_TAG_VALUES:
        return GENRE_TAG_VALUES[genre]
    if not re.fullmatch(r"[a-z][a-z0-9_-]*", genre):
        raise KeyError(genre)
    return genre


TAG_ACTIONS = ("written", "kept-existing", "dry-run", "skipped", "failed", "off")
"""What the tag policy did to one scored file (the ``tag_action`` column of the results).

``written``: the file carries the model's genre (now, or already did); ``kept-existing``: it has a genre
tag of its own, left alone (``fill-missing``); ``dry-run``: reported only; ``skipped``: not taggable
(S3, uncertain, unsafe to rewrite, no tag support); ``failed``: an error while tagging; ``off``: no policy ran."""

_WRITTEN = re.compile(r"(?:would write )?(?P<value>.*?)(?: \((?:replaced|now): (?P<existing>.*)\))?")


@dataclass(frozen=True)
class TagOutcome:
    """The tag policy's decision for one file, stored as its one-line ``tag_status`` text.

    Attributes:
        action: one of :data:`TAG_ACTIONS`.
        detail: the tag value written (or that would be written), or the reason of ``skipped``/``failed``.
        existing: the genre tag the file had before (``None``: none, or not read).
    """

    action: str
    detail: str = ""
    existing: str | None = None

    @property
    def status(self) -> str:
        """The ``tag_status`` text, e.g. ``written: Jazz (replaced: Rock)`` or ``kept-existing: Rock``."""
        if self.action == "kept-existing":
            return f"kept-existing: {self.existing}"
        if self.action == "dry-run":
            return f"dry-run: would write {self.detail} (now: {self.existing or 'none'})"
        if self.action == "written" and self.existing and self.existing != self.detail:
            return f"written: {self.detail} (replaced: {self.existing})"
        return f"{self.action}: {self.detail}"

    @classmethod
    def parse(cls, status: str | None) -> TagOutcome:
        """The outcome a ``tag_status`` text records; ``None`` (no policy ran) is ``off``."""
        if not status:
            return cls("off")
        action, _, rest = status.partition(": ")
        if action == "kept-existing":
            return cls(action, existing=rest)
        if action in ("written", "dry-run"):
            m = _WRITTEN.fullmatch(rest)
            existing = m["existing"] if m["existing"] != "none" or action == "written" else None
            return cls(action, m["value"], existing)
        return cls(action, rest)


class TagError(Exception):
    """The file cannot or may not carry a genre tag (format without tags, unreadable tags, unsafe to rewrite)."""


_TEMP_COPY = re.compile(r"\..+\.tagging-[a-z0-9_]{8}(\.[^.]+)?")
"""Names of the temporary copies :func:`write_genre` makes (``tempfile.mkstemp`` adds 8 characters)."""


def read_genre(path: str | Path) -> str | None:
    """The genre tag of ``path`` (its first value), or ``None`` when it has none or only a blank one.

    Raises:
        TagError: mutagen does not recognise the format.
    """
    f = _open(path)
    if isinstance(f, MP4):
        values = (f.tags or {}).get("\xa9gen")
    elif isinstance(f, (MP3, WAVE, AIFF)):
        values = f.tags.getall("TCON")[0].text if f.tags and f.tags.getall("TCON") else None
    else:
        values = (f.tags or {}).get("genre")
    return (str(values[0]).strip() or None) if values else None


def write_genre(path: str | Path, genre: str, *, roots: Sequence[str | Path] | None = None) -> str:
    """Set the genre tag of ``path`` to ``genre``'s tag spelling and return that value.

    Replaces an existing genre tag (callers record it: see :class:`TagOutcome`); every other tag and the
    audio data are kept. A symlink's
    target is tagged (the link stays a link) when it lies inside ``roots``.

    Args:
        path: the file to tag.
        genre: a label of the model (GTZAN's are written with their ID3v1 names).
        roots: library folders; a file whose real path (symlinks resolved) is outside all of them is
            refused. ``None``: no such check.

    Raises:
        KeyError: ``genre`` is not a label (see :func:`tag_value`).
        TagError: the format cannot carry tags (e.g. AU), its tags cannot be read, or rewriting it is
            unsafe (outside ``roots``, hardlinked, a WAV whose header does not match its size).
    """
    value = tag_value(genre)
    path = Path(path).resolve()  # a symlink: tag its target, and keep the link
    check_writable(path, roots)
    _open(path)  # fail before copying anything
    # The copy keeps the suffix: mutagen picks the format by name as well as by content.
    mode = stat.S_IMODE(path.stat().st_mode)  # the file keeps its permissions
    with atomic_path(path, mode=mode, prefix=f".{path.stem}.tagging-", suffix=path.suffix) as tmp:
        shutil.copy2(path, tmp)
        try:
            _set(_open(tmp), value)
        except TagError as exc:
            raise TagError(str(exc).replace(str(tmp), str(path))) from exc
    return value


def check_writable(path: Path, roots: Sequence[str | Path] | None = None) -> None:
    """Raise :class:`TagError` when rewriting the resolved ``path`` could escape ``roots`` or damage data."""
    if roots is not None and not any(path.is_relative_to(Path(r).resolve()) for r in roots):
        raise TagError(f"{path}: real path is outside the library folders (a symlink leading out); not tagged")
    st = path.stat()
    if st.st_nlink > 1:
        raise TagError(f"{path}: hardlinked ({st.st_nlink} links); tagging a copy would split the link; not tagged")
    try:
        layout = wav_layout(path)
    except OSError as exc:
        raise TagError(f"{path}: cannot read ({exc})") from exc
    if layout is None:
        return
    if layout.streaming:
        raise TagError(f"{path}: WAV header of unknown size (0x{UNKNOWN_CHUNK_SIZE:X}, streaming); not tagged")
    if layout.missing_data_bytes or layout.riff_bytes + 8 > layout.file_bytes:
        raise TagError(f"{path}: WAV holds less data than its header promises (truncated); not tagged")


def remove_stale_copies(roots: Iterable[str | Path]) -> list[Path]:
    """Delete the temporary ``.<name>.tagging-*`` copies a killed run left under the local ``roots``; return them."""
    removed = []
    for root in roots:
        if str(root).startswith("s3://") or not Path(root).is_dir():
            continue
        for dirpath, _, filenames in os.walk(root):
            for name in filenames:
                if _TEMP_COPY.fullmatch(name):
                    path = Path(dirpath) / name
                    path.unlink(missing_ok=True)
                    removed.append(path)
    return removed


def _open(path: str | Path) -> mutagen.FileType:
    try:
        f = mutagen.File(str(path))
    except mutagen.MutagenError as exc:
        raise TagError(f"{path}: unreadable tags ({exc})") from exc
    if f is None:
        raise TagError(f"{path}: format {Path(path).suffix or '(no suffix)'} has no tag support")
    return f


def _set(f: mutagen.FileType, value: str) -> None:
    if isinstance(f, MP4):
        if f.tags is None:
            f.add_tags()
        f.tags["\xa9gen"] = [value]
    elif isinstance(f, (MP3, WAVE, AIFF)):
        if f.tags is None:
            f.add_tags()
        f.tags.setall("TCON", [TCON(encoding=3, text=[value])])
    elif isinstance(f, (FLAC, OggVorbis, OggOpus)):
        if f.tags is None:
            f.add_tags()
        f.tags["GENRE"] = [value]
    else:
        raise TagError(f"{f.filename}: no genre tag for {type(f).__name__} files")
    f.save()
