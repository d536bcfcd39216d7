"""Music libraries: list files under local folders or ``s3://bucket/prefix``, and fetch S3 objects to a local cache."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from crnn.audio import AUDIO_EXTENSIONS, non_regular_reason
from infra.storage import S3UriError, atomic_path, is_s3, s3_client, split_s3_uri


class LibraryError(Exception):
    """A library root cannot be listed (missing folder, bad S3 URI, no access)."""


@dataclass(frozen=True)
class LibraryFile:
    """Identity of one file of the library.

    Attributes:
        path: absolute local path, or ``s3://bucket/key``.
        size: bytes.
        mtime_ns: modification time (in ns since the epoch; S3: LastModified).
        etag: S3 ETag (a content hash for single-part uploads); ``None`` for local files.
        broken: a symlink whose target is missing (size and mtime are the link's own).
        special: why the file (symlinks followed) is never opened: a FIFO, device or socket; else ``None``.
    """

    path: str
    size: int
    mtime_ns: int
    etag: str | None = None
    broken: bool = False
    special: str | None = None

    @property
    def suffix(self) -> str:
        """Lower-case suffix, with the dot (``.mp3``)."""
        return Path(self.path).suffix.lower()  # not urlparse: '#' and '?' are ordinary characters of S3 keys

    @property
    def is_s3(self) -> bool:
        """The file is an S3 object."""
        return is_s3(self.path)

    def to_dict(self) -> dict:
        """Plain dict (for task arguments)."""
        return asdict(self)


def unsupported_reason(file: LibraryFile) -> str | None:
    """Why ``file`` cannot be scored before decoding it (suffix, empty file), or ``None``."""
    if file.broken:
        return "broken symlink: its target does not exist"
    if file.special:
        return file.special
    if file.suffix not in AUDIO_EXTENSIONS:
        return (
            f"unsupported format {file.suffix or '(no suffix)'}: expected one of {' '.join(sorted(AUDIO_EXTENSIONS))}"
        )
    if file.size == 0:
        return "zero-length file"
    return None


def scan_library(roots: Sequence[str]) -> list[LibraryFile]:
    """Every file under ``roots`` (local folders or ``s3://bucket/prefix``), recursively, sorted by path.

    Hidden files and folders (names starting with ``.``, e.g. macOS ``._*`` and ``.DS_Store``) are left out.
    FIFOs, devices and sockets (or symlinks to them) are listed with ``special`` set, so they get a
    failed row without ever being opened.

    Raises:
        LibraryError: a root does not exist or cannot be listed.
    """
    files: dict[str, LibraryFile] = {}
    for root in roots:
        found = _scan_s3(root) if is_s3(root) else _scan_local(Path(root))
        files.update((f.path, f) for f in found)
    return [files[p] for p in sorted(files)]


def _scan_local(root: Path) -> Iterator[LibraryFile]:
    if not root.is_dir():
        raise LibraryError(f"{root}: not a folder")
    for dirpath, dirnames, filenames in os.walk(root.resolve(), onerror=None):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            try:
                st = path.stat()
            except OSError:  # a broken symlink: listed, so it is reported rather than silently missing
                st = path.lstat()
                yield LibraryFile(str(path), st.st_size, st.st_mtime_ns, broken=True)
                continue
            if path.is_file():
                yield LibraryFile(str(path), st.st_size, st.st_mtime_ns)
            elif reason := non_regular_reason(path):  # a FIFO, device or socket: listed, never opened
                yield LibraryFile(str(path), st.st_size, st.st_mtime_ns, special=reason)


def split_library_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` -> ``(bucket, prefix)`` (:func:`infra.storage.split_s3_uri`).

    Raises:
        LibraryError: ``uri`` is not ``s3://bucket[/prefix]``.
    """
    try:
        return split_s3_uri(uri)
    except S3UriError as exc:
        raise LibraryError(str(exc)) from exc


def _scan_s3(uri: str) -> Iterator[LibraryFile]:
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, prefix = split_library_uri(uri)
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    try:
        pages = s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for page in pages:
            for obj in page.get("Contents", []):
                key = obj["Key"]
                if key.endswith("/") or any(part.startswith(".") for part in key[len(prefix) :].split("/")):
                    continue
                mtime_ns = int(obj["LastModified"].timestamp() * 1e9)
                yield LibraryFile(f"s3://{bucket}/{key}", int(obj["Size"]), mtime_ns, obj["ETag"].strip('"'))
    except (BotoCoreError, ClientError) as exc:
        raise LibraryError(f"{uri}: cannot list ({exc})") from exc


def local_copy(file: LibraryFile, cache_dir: str | Path) -> Path:
    """A local path for ``file``: the file itself, or the S3 object downloaded into ``cache_dir``.

    Downloads are keyed by path and ETag, written to a temporary name and renamed when complete.

    Raises:
        OSError: the download failed (the message names the object).
    """
    if not file.is_s3:
        return Path(file.path)
    from botocore.exceptions import BotoCoreError, ClientError

    key = hashlib.sha256(f"{file.path}\0{file.etag}".encode()).hexdigest()[:24]
    target = Path(cache_dir) / f"{key}{file.suffix}"
    if target.exists() and target.stat().st_size == file.size:
        return target
    bucket, name = split_library_uri(file.path)
    try:
        with atomic_path(target, prefix=".part-", suffix="") as tmp:
            s3_client().download_file(bucket, name, str(tmp))
    except (BotoCoreError, ClientError) as exc:
        raise OSError(f"{file.path}: download failed ({exc})") from exc
    return target
