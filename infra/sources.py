"""Fetch a dataset from a URL, S3 (an archive or a prefix of loose files), a local archive or folder into a local cache.

Downloads resume from a `.part` file, are checked against a SHA-256 digest and renamed
atomically; archives are extracted once, safely, into `cache_dir/extracted/<archive-stem>/`.
Archives may hold only regular files and folders (no symlinks, hardlinks, FIFOs or devices),
and downloads and extractions are bounded by :class:`SourceLimits`.
"""

import hashlib
import logging
import os
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

import requests
import urllib3
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from crnn.audio import file_sha256
from crnn.requests import GTZAN_URL
from infra.redact import RedactFilter, redact
from infra.storage import S3UriError, atomic_path, commit, fsync_dir, s3_client, split_s3_uri

GTZAN_SHA256 = "24347e0223d2ba798e0a558c4c172d9d4a19c00bb7963fe055d183dadb4ef2c6"  # genres.tar.gz, as torchaudio pins

Progress = Callable[[int, int | None], None]

logger = logging.getLogger(__name__)
logger.addFilter(RedactFilter())  # source URLs may carry user:password@ or signed query parameters

_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
_MARKER = ".extraction-complete"
_CHUNK_BYTES = 1 << 20
_TIMEOUT_S = (10.0, 60.0)  # (connect, read) in seconds
RETRY_ATTEMPTS = 5
RETRY_BACKOFF_S = 1.0  # first wait between attempts; doubles each time, at most 30 s


@dataclass(frozen=True)
class SourceLimits:
    """Bounds on what one dataset source may cost; crossing one raises :class:`DatasetSourceError` naming it.

    Attributes:
        max_download_bytes: largest archive downloaded (in bytes; checked against Content-Length and while streaming).
        max_extracted_bytes: largest total size of an archive's members (in bytes).
        max_members: most members (files and folders) in one archive.
        max_compression_ratio: largest ratio of extracted bytes to archive bytes; archives under
            ``RATIO_FLOOR_BYTES`` are measured as if they were that size.
    """

    max_download_bytes: int = 8 * 2**30  # GTZAN's genres.tar.gz is 1.2 GB
    max_extracted_bytes: int = 16 * 2**30
    max_members: int = 200_000
    max_compression_ratio: float = 100.0

    def __post_init__(self) -> None:
        """Reject limits that are not positive."""
        for name in ("max_download_bytes", "max_extracted_bytes", "max_members", "max_compression_ratio"):
            if getattr(self, name) <= 0:
                raise ValueError(f"SourceLimits.{name} must be positive, got {getattr(self, name)}")


DEFAULT_LIMITS = SourceLimits()
RATIO_FLOOR_BYTES = 1 << 20
"""Archives smaller than this (in bytes) may expand to ``max_compression_ratio`` times it."""


class DatasetSourceError(Exception):
    """A dataset source could not be fetched, verified or extracted; the message names source and reason.

    Credentials in the message (URL userinfo, signed query parameters) are redacted.
    """

    def __init__(self, message: str) -> None:
        super().__init__(redact(str(message)))


class CorruptArchiveError(DatasetSourceError):
    """An archive is not a readable tar/zip file (truncated, damaged or of another format)."""


class _TransientHTTPError(Exception):
    """A 5xx answer or an unusable partial download: worth another attempt."""


_NETWORK_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
_STREAM_ERRORS = (urllib3.exceptions.ProtocolError, urllib3.exceptions.ReadTimeoutError)  # resp.raw does not wrap them
_TRANSIENT = (*_NETWORK_ERRORS, *_STREAM_ERRORS, _TransientHTTPError)  # retried; 4xx and checksum mismatches are not


def fetch_dataset(
    source: str,
    cache_dir: Path,
    *,
    sha256: str | None = None,
    progress: Progress | None = None,
    limits: SourceLimits = DEFAULT_LIMITS,
) -> Path:
    """Return a local folder that contains the dataset's audio files.

    Args:
        source: `http(s)://` URL or `s3://bucket/key` of a .tar.gz/.tgz/.tar/.zip archive, an
            `s3://bucket/prefix` of loose files (a music library; mirrored, see `_mirror_s3`), a
            local archive path, or a local folder (returned resolved, not copied).
        cache_dir: root of `downloads/<slot>/` and `extracted/<slot>/` (see `source_slot`).
        sha256: expected hex digest of the archive; defaults to GTZAN_SHA256 for GTZAN_URL ("" = None).
            Without one, a `.part` file left by an earlier run is discarded rather than resumed.
        progress: called as `progress(bytes_done, bytes_total_or_None)` while downloading.
        limits: download and extraction bounds.

    Returns:
        The source folder, `cache_dir/extracted/<slot>/<archive-stem>/`, or `cache_dir/mirrors/<slot>/`.

    Raises:
        DatasetSourceError: the source is missing, unreachable, fails its checksum, is unsafe or too
            large. A downloaded archive that turns out unreadable is removed, so a rerun downloads it again.
    """
    sha256 = sha256 or None
    if source == GTZAN_URL and sha256 is None:
        sha256 = GTZAN_SHA256
    if sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", sha256):
        raise DatasetSourceError(f"{source}: --sha256 must be 64 hex digits, got {sha256!r}")
    cache_dir = Path(cache_dir)
    slot = source_slot(source)
    if _is_s3_prefix(source):
        if sha256 is not None:
            raise DatasetSourceError(f"{source}: --sha256 applies to an archive, not to an s3:// prefix of files")
        return _mirror_s3(source, cache_dir / "mirrors" / slot, limits)
    if urlparse(source).scheme.lower() in ("http", "https", "s3"):
        archive = _fetch_remote(source, cache_dir / "downloads" / slot, sha256, progress, limits)
        try:
            return _extract(archive, cache_dir / "extracted" / slot, source, limits)
        except CorruptArchiveError as exc:
            archive.unlink(missing_ok=True)
            raise CorruptArchiveError(
                f"{exc}; removed the downloaded {archive.name}, a rerun downloads it again"
            ) from exc
    else:
        path = Path(source).expanduser()
        if path.is_dir():
            return path.resolve()
        if not path.is_file():
            raise DatasetSourceError(f"{source}: no such file or folder")
        _archive_name(source, path.name)
        if sha256 is not None:
            _verify(path, sha256, source)
        archive = path
    return _extract(archive, cache_dir / "extracted" / slot, source, limits)


def _is_s3_prefix(source: str) -> bool:
    """`s3://bucket[/prefix]` whose last part is not an archive name: a folder of files to mirror."""
    parsed = urlparse(source)
    return parsed.scheme.lower() == "s3" and not PurePosixPath(parsed.path).name.lower().endswith(_ARCHIVE_SUFFIXES)


def _list_s3_prefix(uri: str, limits: SourceLimits) -> tuple[str, list[dict]]:
    """(bucket, objects) under `uri`'s prefix, hidden names and folder markers left out, within `limits`."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        bucket, prefix = split_s3_uri(uri)
    except S3UriError as exc:
        raise DatasetSourceError(str(exc)) from exc
    prefix = f"{prefix.rstrip('/')}/" if prefix else ""
    objects: list[dict] = []
    try:
        for page in s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                rel = obj["Key"][len(prefix) :]
                if rel and not rel.endswith("/") and not any(p.startswith(".") for p in rel.split("/")):
                    objects.append(obj | {"rel": rel})
    except (BotoCoreError, ClientError) as exc:
        raise DatasetSourceError(f"{uri}: cannot list ({exc})") from exc
    total = sum(o["Size"] for o in objects)
    if len(objects) > limits.max_members or total > limits.max_download_bytes:
        raise DatasetSourceError(f"{uri}: {len(objects)} objects, {total} bytes: over the source limits")
    if not objects:
        raise DatasetSourceError(f"{uri}: no files under this prefix")
    return bucket, objects


def _mirror_s3(uri: str, dest: Path, limits: SourceLimits) -> Path:
    """Mirror the files under `s3://bucket/prefix` into `dest`, keeping their relative keys; return `dest`.

    Each object is downloaded to a temporary name and renamed when complete, then stamped with its
    LastModified time; a rerun fetches only objects whose size or time changed (so an interrupted
    mirror resumes), and removes local files whose object is gone.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, objects = _list_s3_prefix(uri, limits)
    dest.mkdir(parents=True, exist_ok=True)
    fetched = 0
    for obj in objects:
        _check_name(obj["rel"], dest, uri)
        target, mtime_ns = dest / obj["rel"], int(obj["LastModified"].timestamp() * 1e9)
        if target.is_file() and target.stat().st_size == obj["Size"] and target.stat().st_mtime_ns == mtime_ns:
            continue
        try:
            with atomic_path(target) as tmp:
                s3_client().download_file(bucket, obj["Key"], str(tmp))
        except (BotoCoreError, ClientError) as exc:
            raise DatasetSourceError(f"s3://{bucket}/{obj['Key']}: download failed ({exc})") from exc
        os.utime(target, ns=(mtime_ns, mtime_ns))
        fetched += 1
    keep = {dest / o["rel"] for o in objects}
    for path in [p for p in dest.rglob("*") if p.is_file() and p not in keep and not p.name.startswith(".")]:
        path.unlink()
    logger.info("Mirrored %s to %s: %d of %d files fetched", uri, dest, fetched, len(objects))
    return dest.resolve()


def source_slot(source: str) -> str:
    """Cache sub-folder of a source (a hash of its string), so two sources never share a download or extraction."""
    return hashlib.sha256(source.encode()).hexdigest()[:12]


def _fetch_remote(
    source: str, downloads: Path, sha256: str | None, progress: Progress | None, limits: SourceLimits
) -> Path:
    """Download an http(s) or s3 archive into `downloads/` and return its path."""
    name = _archive_name(source, PurePosixPath(urlparse(source).path).name)
    downloads.mkdir(parents=True, exist_ok=True)
    if urlparse(source).scheme.lower() == "s3":
        return _download_s3(source, downloads / name, sha256, progress, limits)
    return _download_http(source, downloads / name, sha256, progress, limits)


def _archive_name(source: str, name: str) -> str:
    """Return `name` if it has a supported archive suffix, else raise."""
    if not name.lower().endswith(_ARCHIVE_SUFFIXES):
        raise DatasetSourceError(f"{source}: not a supported archive (expected one of {', '.join(_ARCHIVE_SUFFIXES)})")
    return name


def _verify(path: Path, sha256: str, source: str) -> None:
    """Raise (naming both digests) when `path` does not hash to `sha256`."""
    actual = file_sha256(path)
    if actual != sha256.lower():
        raise DatasetSourceError(f"{source}: SHA-256 mismatch for {path.name}: expected {sha256.lower()}, got {actual}")


def _cached(final: Path, sha256: str | None, source: str) -> bool:
    """True when `final` exists and matches `sha256` (if given); a bad copy is deleted."""
    if not final.is_file():
        return False
    if sha256 is None or file_sha256(final) == sha256.lower():
        logger.info("Using cached %s for %s", final, source)
        return True
    logger.warning("Cached %s does not match its SHA-256; downloading %s again", final, source)
    final.unlink()
    return False


def _finish(part: Path, final: Path, sha256: str | None, source: str) -> Path:
    """Verify the `.part` file, then rename it atomically to `final`; a bad one is deleted."""
    if sha256 is not None:
        try:
            _verify(part, sha256, source)
        except DatasetSourceError:
            part.unlink(missing_ok=True)
            raise
    commit(part, final)  # fsynced, mode 0644, renamed, folder fsynced
    logger.info("Downloaded %s to %s", source, final)
    return final


def _download_http(url: str, final: Path, sha256: str | None, progress: Progress | None, limits: SourceLimits) -> Path:
    """Download `url` to `final` with retries and resume; return `final`."""
    if _cached(final, sha256, url):
        return final
    part = final.with_name(final.name + ".part")
    if sha256 is None and part.exists():  # nothing could tell a stale or foreign .part from a good one
        logger.warning("Discarding %s from an earlier run: without a SHA-256 a resumed file cannot be verified", part)
        part.unlink()
    retrying = Retrying(
        retry=retry_if_exception_type(_TRANSIENT),
        stop=stop_after_attempt(RETRY_ATTEMPTS),
        wait=wait_exponential(multiplier=RETRY_BACKOFF_S, max=30),
        before_sleep=lambda state: logger.warning("Retrying %s after: %s", url, state.outcome.exception()),
        reraise=True,
    )
    try:
        retrying(_stream_to_part, url, part, progress, limits.max_download_bytes)
    except _TRANSIENT as exc:
        raise DatasetSourceError(f"{url}: download failed after {RETRY_ATTEMPTS} attempts: {exc}") from exc
    return _finish(part, final, sha256, url)


def _stream_to_part(url: str, part: Path, progress: Progress | None, max_bytes: int) -> None:
    """One download attempt: append to `part` from its current size, or restart if the server ignores Range.

    Raises:
        DatasetSourceError: the announced or received size passes `max_bytes` (the `.part` is removed).
    """
    offset = part.stat().st_size if part.is_file() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    with requests.get(url, headers=headers | {"Accept-Encoding": "identity"}, stream=True, timeout=_TIMEOUT_S) as resp:
        if resp.status_code == 416 and offset:
            part.unlink()  # the partial file is longer than the resource or stale: start over
            raise _TransientHTTPError(f"HTTP 416 resuming at byte {offset}")
        if resp.status_code >= 500:
            raise _TransientHTTPError(f"HTTP {resp.status_code} {resp.reason}")
        if resp.status_code not in (200, 206):
            raise DatasetSourceError(f"{url}: HTTP {resp.status_code} {resp.reason}")
        if resp.status_code == 206 and not resp.headers.get("Content-Range", "").startswith(f"bytes {offset}-"):
            part.unlink(missing_ok=True)
            raise _TransientHTTPError(f"unexpected Content-Range {resp.headers.get('Content-Range')!r}")
        if resp.status_code == 200 and offset:
            logger.info("Server ignored Range for %s; restarting from byte 0", url)
            offset = 0
        elif offset:
            logger.info("Resuming %s at byte %d", url, offset)
        length = resp.headers.get("Content-Length")
        total = offset + int(length) if length is not None and length.isdigit() else None
        if total is not None and total > max_bytes:
            part.unlink(missing_ok=True)
            raise DatasetSourceError(f"{url}: Content-Length announces {total} bytes, over the {max_bytes}-byte limit")
        with part.open("ab" if offset else "wb") as f:
            for chunk in resp.raw.stream(_CHUNK_BYTES, decode_content=False):  # the archive's bytes, as hashed
                if offset + len(chunk) > max_bytes:
                    f.close()
                    part.unlink(missing_ok=True)
                    raise DatasetSourceError(f"{url}: download passed the {max_bytes}-byte limit; stopped")
                f.write(chunk)
                offset += len(chunk)
                if progress is not None:
                    progress(offset, total)


def _download_s3(uri: str, final: Path, sha256: str | None, progress: Progress | None, limits: SourceLimits) -> Path:
    """Download `s3://bucket/key` to `final` (boto3 reads endpoint and credentials from the environment)."""
    from botocore.exceptions import BotoCoreError, ClientError  # here: HTTP and local sources need no AWS stack

    try:
        bucket, key = split_s3_uri(uri, need_key=True)
    except S3UriError as exc:
        raise DatasetSourceError(str(exc)) from exc
    part = final.with_name(final.name + ".part")
    client = None
    try:
        client = s3_client()
        size = client.head_object(Bucket=bucket, Key=key)["ContentLength"]
        if size > limits.max_download_bytes:
            raise DatasetSourceError(f"{uri}: object is {size} bytes, over the {limits.max_download_bytes}-byte limit")
        if final.is_file() and final.stat().st_size == size and _cached(final, sha256, uri):
            return final
        done = 0

        def _on_bytes(n: int) -> None:
            nonlocal done
            done += n
            if progress is not None:
                progress(done, size)

        logger.info("Downloading %s (%d bytes)", uri, size)
        client.download_file(bucket, key, str(part), Callback=_on_bytes)
    except (BotoCoreError, ClientError) as exc:
        part.unlink(missing_ok=True)
        raise DatasetSourceError(f"{uri}: {_s3_problem(client, bucket, key, exc)}") from exc
    return _finish(part, final, sha256, uri)


def _s3_problem(client, bucket: str, key: str, exc: Exception) -> str:
    """Say whether the bucket or the key is missing (a HEAD answers a bare 404 for both), or access is denied."""
    from botocore.exceptions import BotoCoreError, ClientError

    code = str(exc.response.get("Error", {}).get("Code", "")) if isinstance(exc, ClientError) else ""
    if code in ("403", "AccessDenied", "Forbidden"):
        return f"access denied to s3://{bucket}/{key} (check the credentials and the bucket policy): {exc}"
    if code not in ("404", "NoSuchKey", "NoSuchBucket", "NotFound"):
        return f"S3 download failed: {exc}"
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as bucket_exc:
        if str(bucket_exc.response.get("Error", {}).get("Code", "")) in ("404", "NoSuchBucket", "NotFound"):
            return f"S3 bucket {bucket!r} does not exist (at this endpoint)"
    except BotoCoreError:
        pass
    return f"S3 bucket {bucket!r} has no object {key!r}"


def _extract(archive: Path, root: Path, source: str, limits: SourceLimits) -> Path:
    """Extract `archive` once into `root/<stem>/` via a temporary sibling folder and an atomic rename."""
    dest = root / next(archive.name[: -len(s)] for s in _ARCHIVE_SUFFIXES if archive.name.lower().endswith(s))
    marker = f"{archive.name} {archive.stat().st_size}\n"  # another archive with this stem extracts again
    if (dest / _MARKER).is_file() and (dest / _MARKER).read_text() == marker:
        logger.info("Using extracted %s for %s", dest, source)
        return dest.resolve()
    root.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        shutil.rmtree(dest)  # from another archive, or left without its marker
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=root))
    try:
        logger.info("Extracting %s to %s", archive, dest)
        unpack = _extract_zip if archive.name.lower().endswith(".zip") else _extract_tar
        unpack(archive, tmp, source, limits)
        _check_tree(tmp, source, limits)
        (tmp / _MARKER).write_text(marker)
        os.replace(tmp, dest)  # a folder: commit() is for files
        fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if (dest / _MARKER).is_file() and (dest / _MARKER).read_text() == marker:  # a concurrent run won
            return dest.resolve()
        raise
    return dest.resolve()


def _check_name(name: str, dest: Path, source: str) -> None:
    """Reject member names that are absolute, hold `..` or resolve outside `dest`."""
    parts = PurePosixPath(name.replace("\\", "/"))
    if (
        parts.is_absolute()
        or ".." in parts.parts
        or not (dest / Path(*parts.parts)).resolve().is_relative_to(dest.resolve())
    ):
        raise DatasetSourceError(f"{source}: unsafe archive member {name!r} (absolute or outside the folder)")


def _check_budget(members: int, total: int, archive: Path, source: str, limits: SourceLimits) -> None:
    """Raise when `members` or their `total` bytes pass a limit of `limits`."""
    if members > limits.max_members:
        raise DatasetSourceError(f"{source}: {archive.name} has more than {limits.max_members} members (limit)")
    if total > limits.max_extracted_bytes:
        raise DatasetSourceError(
            f"{source}: {archive.name} expands to more than {limits.max_extracted_bytes} bytes (limit)"
        )
    size = archive.stat().st_size
    if total > limits.max_compression_ratio * max(size, RATIO_FLOOR_BYTES):
        raise DatasetSourceError(
            f"{source}: {archive.name} ({size} bytes) expands to more than {total} bytes, a compression ratio over "
            f"{limits.max_compression_ratio:g} (limit; a decompression bomb?)"
        )


def _check_tar_member(member: tarfile.TarInfo, dest: Path, source: str) -> None:
    """Accept only regular files and folders with safe names: every link and special file is refused."""
    _check_name(member.name, dest, source)
    if member.issym() or member.islnk():
        kind = "symlink" if member.issym() else "hardlink"
        raise DatasetSourceError(
            f"{source}: archive member {member.name!r} is a {kind} (to {member.linkname!r}); "
            "links are refused in dataset archives"
        )
    if not (member.isreg() or member.isdir()):
        raise DatasetSourceError(
            f"{source}: archive member {member.name!r} is a special file (FIFO or device); only regular files "
            "and folders are accepted"
        )


def _extract_tar(archive: Path, dest: Path, source: str, limits: SourceLimits) -> None:
    """Check every member's name, type and the size budget, then extract with tarfile's `data` filter."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            members, total = [], 0
            for member in tar:  # reads headers only, and stops at the first breach
                _check_tar_member(member, dest, source)
                members.append(member)
                total += member.size
                _check_budget(len(members), total, archive, source, limits)
            tar.extractall(dest, members=members, filter="data")
    except tarfile.FilterError as exc:
        raise DatasetSourceError(f"{source}: unsafe archive member {exc.tarinfo.name!r}: {exc}") from exc
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError) as exc:
        raise _extraction_error(exc, archive, source) from exc


def _extract_zip(archive: Path, dest: Path, source: str, limits: SourceLimits) -> None:
    """Check every member's name, type (no symlinks or special files) and the size budget, then extract."""
    try:
        with zipfile.ZipFile(archive) as zf:
            infos, total = zf.infolist(), 0
            for n, info in enumerate(infos, 1):
                _check_name(info.filename, dest, source)
                mode = info.external_attr >> 16  # Unix mode, when the archiver recorded one
                if stat.S_ISLNK(mode):
                    raise DatasetSourceError(
                        f"{source}: archive member {info.filename!r} is a symlink; links are refused in dataset archives"
                    )
                if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                    raise DatasetSourceError(
                        f"{source}: archive member {info.filename!r} is a special file (FIFO or device); only regular "
                        "files and folders are accepted"
                    )
                total += info.file_size  # zipfile never writes more than a member's declared size
                _check_budget(n, total, archive, source, limits)
            zf.extractall(dest)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError) as exc:
        raise _extraction_error(exc, archive, source) from exc


def _extraction_error(exc: Exception, archive: Path, source: str) -> DatasetSourceError:
    """A damaged archive (bad gzip, tar or zip data) is corrupt; a failing disk (ENOSPC, EACCES: errno set) is not."""
    kind = DatasetSourceError if isinstance(exc, OSError) and exc.errno is not None else CorruptArchiveError
    return kind(f"{source}: cannot extract {archive.name}: {exc}")


def _check_tree(dest: Path, source: str, limits: SourceLimits) -> None:
    """After extraction: everything under `dest` is a regular file or folder that resolves inside it, within the byte limit."""
    root, total = dest.resolve(), 0
    for dirpath, dirnames, filenames in os.walk(dest):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)) or not path.resolve().is_relative_to(root):
                raise DatasetSourceError(
                    f"{source}: extracted {path.relative_to(dest)} is not a regular file or folder inside the "
                    "destination; refused"
                )
            total += st.st_size if stat.S_ISREG(st.st_mode) else 0
    if total > limits.max_extracted_bytes:
        raise DatasetSourceError(f"{source}: extracted {total} bytes, over the {limits.max_extracted_bytes}-byte limit")
