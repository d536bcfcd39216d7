"""Atomic file writes: readers see the old file or the complete new one, never a partial write.

Pure standard library, so every layer may use it (``crnn/`` imports no ``infra``; ``infra.storage``
re-exports these names). One implementation for every writer of the project:

1. a temporary file is created in the destination's folder (same file system, so the rename is atomic);
2. the caller writes it, through its path (:func:`atomic_path`) or an open file (:func:`atomic_open`);
3. its data is flushed to disk (``fsync``) and its mode set explicitly;
4. it is renamed over the destination (``os.replace``) and the folder is fsynced where the OS allows,
   so the rename itself survives a power loss;
5. on any error (an exception, ``KeyboardInterrupt`` included) the temporary file is removed and the
   destination is left as it was.

A process killed with SIGKILL between 1 and 4 leaves its temporary file behind (named
``.<name>.<8 random characters>.tmp`` unless the caller chose another prefix/suffix); the destination is
still intact.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

DEFAULT_MODE = 0o644
"""Permission bits of a written file (``tempfile`` would leave 0600): readable by others, like ``open()`` with umask 022."""


def fsync_dir(folder: str | Path) -> None:
    """Flush ``folder``'s entries (a rename in it) to disk; a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):  # some file systems refuse fsync on a folder
            os.fsync(fd)
    finally:
        os.close(fd)


def commit(tmp: str | Path, path: str | Path, *, mode: int | None = DEFAULT_MODE) -> Path:
    """Make the finished file ``tmp`` durable and rename it over ``path`` (same folder); return ``path``.

    Args:
        tmp: a complete file in ``path``'s folder (a temporary or staging name).
        path: the destination, replaced atomically if it exists.
        mode: permission bits to give the file (e.g. ``0o644``); ``None`` keeps those ``tmp`` has.

    Raises:
        OSError: the flush, ``chmod`` or rename failed (``tmp`` is left for the caller to remove).
    """
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    if mode is not None:
        os.chmod(tmp, mode)
    os.replace(tmp, path)
    fsync_dir(Path(path).parent)
    return Path(path)


@contextlib.contextmanager
def atomic_path(
    path: str | Path, *, mode: int | None = DEFAULT_MODE, prefix: str | None = None, suffix: str = ".tmp"
) -> Iterator[Path]:
    """Yield an empty temporary file beside ``path`` to write by name; commit it to ``path`` when the block ends.

    Use it for writers that want a file name (``torch.save``, ``DataFrame.to_parquet``, ``shutil.copy2``,
    a download). The parent folder is created if needed.

    Args:
        path: the destination file.
        mode: permission bits of the result (default 0o644); ``None`` keeps what the writer left.
        prefix: start of the temporary name (default ``.<name>.``: hidden, and says whose it is).
        suffix: end of the temporary name (default ``.tmp``; keep the real suffix for writers that
            pick the format by name).

    Yields:
        The temporary file's path (it exists, empty, mode 0600 until committed).

    Raises:
        OSError: the folder or temporary file cannot be created, or the commit failed. Whatever the
            block raises propagates; in every error case the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}." if prefix is None else prefix, suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        commit(tmp, path, mode=mode)
    finally:
        tmp.unlink(missing_ok=True)  # gone after a commit; the partial file after an error


@contextlib.contextmanager
def atomic_open(
    path: str | Path,
    binary: bool = False,
    *,
    mode: int | None = DEFAULT_MODE,
    encoding: str | None = "utf-8",
    newline: str | None = None,
) -> Iterator[IO]:
    """Yield a file open for writing (``"wb"`` if ``binary``, else text ``"w"``) that replaces ``path`` on success.

    Args:
        path: the destination file.
        binary: bytes (``np.save``, ``torch.save``) rather than text.
        mode: permission bits of the result (default 0o644).
        encoding: text encoding (default UTF-8; ignored when ``binary``).
        newline: as for :func:`open` (``""`` for :mod:`csv`).

    Raises:
        OSError: as for :func:`atomic_path`; nothing is written to ``path`` when the block raises.
    """
    with atomic_path(path, mode=mode) as tmp:
        if binary:
            with open(tmp, "wb") as f:
                yield f
        else:
            with open(tmp, "w", encoding=encoding, newline=newline) as f:
                yield f


def write_text_atomic(path: str | Path, text: str, *, mode: int | None = DEFAULT_MODE) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; return ``path``."""
    with atomic_open(path, mode=mode) as f:
        f.write(text)
    return Path(path)
