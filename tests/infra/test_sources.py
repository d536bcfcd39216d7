"""Tests for infra.sources against real local HTTP and moto S3 servers (no mocks)."""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
import zipfile
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from infra import sources
from infra.sources import DatasetSourceError, fetch_dataset

WAV_NAME = "genres/blues/blues.00000.wav"


def _wav_bytes() -> bytes:
    """0.1 s of seeded noise as a 16-bit WAV file."""
    buf = io.BytesIO()
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, 2205).astype(np.float32)
    sf.write(buf, noise, 22050, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _tar_gz(path: Path, members: dict[str, bytes]) -> Path:
    """Write a .tar.gz (or .tar) whose members are the given names and contents."""
    with tarfile.open(path, "w:gz" if path.name.endswith("gz") else "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    """Write a deflated .zip whose members are the given names and contents."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _sha(path: Path) -> str:
    """Hex SHA-256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


class _RangeHandler(BaseHTTPRequestHandler):
    """Serves `server.root`, honours `Range: bytes=N-`, fails the first `server.fail_next` requests with 503."""

    def do_GET(self) -> None:
        """Answer one GET, recording its path and Range header."""
        srv = self.server
        srv.requests.append((self.path, self.headers.get("Range")))
        if srv.fail_next > 0:
            srv.fail_next -= 1
            self.send_error(HTTPStatus.SERVICE_UNAVAILABLE)
            return
        if srv.endless:  # no Content-Length, and a body that never ends
            self.send_response(HTTPStatus.OK)
            self.end_headers()
            try:
                while True:
                    self.wfile.write(b"\0" * 65536)
            except OSError:  # the client hung up
                return
        path = srv.root / self.path.split("?")[0].lstrip("/")
        if not path.is_file():
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        data = path.read_bytes()
        start = 0
        rng = self.headers.get("Range")
        if rng and not srv.ignore_range:
            start = int(rng.removeprefix("bytes=").split("-")[0])
        self.send_response(HTTPStatus.PARTIAL_CONTENT if start else HTTPStatus.OK)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        if srv.truncate_next > 0:  # promise the full length, send half, hang up
            srv.truncate_next -= 1
            self.wfile.write(data[start : start + (len(data) - start) // 2])
            self.close_connection = True
            return
        self.wfile.write(data[start:])

    def log_message(self, *args: object) -> None:
        """Keep test output quiet."""


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shrink the retry backoff so retry tests take milliseconds."""
    monkeypatch.setattr(sources, "RETRY_BACKOFF_S", 0.01)


@pytest.fixture
def http_server(tmp_path: Path):
    """A threaded HTTP server over `tmp_path/www`; yields the server (with `.url`, `.root`, `.requests`)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    server.root = tmp_path / "www"
    server.root.mkdir()
    server.requests, server.fail_next, server.truncate_next, server.ignore_range = [], 0, 0, False
    server.endless = False
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def served_archive(http_server) -> tuple[str, Path]:
    """URL and local copy of a small genres.tar.gz on the HTTP server."""
    archive = _tar_gz(http_server.root / "genres.tar.gz", {WAV_NAME: _wav_bytes()})
    return f"{http_server.url}/genres.tar.gz", archive


def test_http_download_verifies_and_extracts(tmp_path, http_server, served_archive):
    """A served tar.gz is downloaded, verified, extracted, and progress reaches the total."""
    url, archive = served_archive
    calls = []
    out = fetch_dataset(url, tmp_path / "cache", sha256=_sha(archive), progress=lambda d, t: calls.append((d, t)))
    assert out == (tmp_path / "cache" / "extracted" / sources.source_slot(url) / "genres").resolve()
    audio, sample_rate = sf.read(out / WAV_NAME)
    assert sample_rate == 22050
    assert audio.shape == (2205,)
    downloads = tmp_path / "cache" / "downloads" / sources.source_slot(url)
    assert [p.name for p in downloads.iterdir()] == ["genres.tar.gz"]
    assert calls[-1] == (archive.stat().st_size, archive.stat().st_size)


def test_second_call_makes_no_request(tmp_path, http_server, served_archive):
    """A rerun uses the cached archive and extraction: no new request."""
    url, archive = served_archive
    first = fetch_dataset(url, tmp_path / "cache", sha256=_sha(archive))
    n_requests = len(http_server.requests)
    assert fetch_dataset(url, tmp_path / "cache", sha256=_sha(archive)) == first
    assert len(http_server.requests) == n_requests == 1


def test_retries_after_503(tmp_path, http_server, served_archive):
    """Two 503 answers are retried and the third attempt succeeds."""
    url, archive = served_archive
    http_server.fail_next = 2
    out = fetch_dataset(url, tmp_path / "cache", sha256=_sha(archive))
    assert (out / WAV_NAME).is_file()
    assert len(http_server.requests) == 3


def test_persistent_503_gives_up(tmp_path, http_server, served_archive):
    """A server that keeps answering 503 gets RETRY_ATTEMPTS requests, then an error."""
    url, _ = served_archive
    http_server.fail_next = 100
    with pytest.raises(DatasetSourceError, match="503"):
        fetch_dataset(url, tmp_path / "cache")
    assert len(http_server.requests) == sources.RETRY_ATTEMPTS


def test_resume_from_partial_download(tmp_path, http_server, served_archive):
    """An existing .part is resumed with a Range request, not downloaded again."""
    url, archive = served_archive
    data = archive.read_bytes()
    part = tmp_path / "cache" / "downloads" / sources.source_slot(url) / "genres.tar.gz.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(data[: len(data) // 2])
    calls = []
    fetch_dataset(url, tmp_path / "cache", sha256=_sha(archive), progress=lambda d, t: calls.append((d, t)))
    assert http_server.requests == [("/genres.tar.gz", f"bytes={len(data) // 2}-")]
    assert (tmp_path / "cache" / "downloads" / sources.source_slot(url) / "genres.tar.gz").read_bytes() == data
    assert not part.exists()
    assert calls[-1] == (len(data), len(data))


def test_dropped_connection_resumes(tmp_path, http_server, served_archive):
    """A body cut short mid-stream is retried with a Range request from the bytes already on disk."""
    url, archive = served_archive
    http_server.truncate_next = 1
    size = archive.stat().st_size
    fetch_dataset(url, tmp_path / "cache", sha256=_sha(archive))
    assert http_server.requests == [("/genres.tar.gz", None), ("/genres.tar.gz", f"bytes={size // 2}-")]
    assert (
        tmp_path / "cache" / "downloads" / sources.source_slot(url) / "genres.tar.gz"
    ).read_bytes() == archive.read_bytes()


def test_restarts_when_server_ignores_range(tmp_path, http_server, served_archive):
    """A 200 answer to a Range request restarts the download from byte 0."""
    url, archive = served_archive
    http_server.ignore_range = True
    part = tmp_path / "cache" / "downloads" / sources.source_slot(url) / "genres.tar.gz.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"stale bytes from another file")
    fetch_dataset(url, tmp_path / "cache", sha256=_sha(archive))
    assert http_server.requests[0][1] == "bytes=29-"
    assert (
        tmp_path / "cache" / "downloads" / sources.source_slot(url) / "genres.tar.gz"
    ).read_bytes() == archive.read_bytes()


def test_checksum_mismatch_leaves_no_file(tmp_path, http_server, served_archive):
    """A wrong digest raises naming both digests and leaves neither final nor .part file."""
    url, archive = served_archive
    wrong = "0" * 64
    with pytest.raises(DatasetSourceError, match=f"expected {wrong}, got {_sha(archive)}"):
        fetch_dataset(url, tmp_path / "cache", sha256=wrong)
    assert list((tmp_path / "cache" / "downloads" / sources.source_slot(url)).iterdir()) == []
    assert not (tmp_path / "cache" / "extracted").exists()
    assert len(http_server.requests) == 1


def test_404_is_not_retried(tmp_path, http_server):
    """A 404 raises at once, after a single request."""
    with pytest.raises(DatasetSourceError, match="404"):
        fetch_dataset(f"{http_server.url}/missing.tar.gz", tmp_path / "cache")
    assert len(http_server.requests) == 1


@pytest.mark.parametrize(
    ("name", "member"),
    [("dotdot.tar.gz", "../evil.txt"), ("absolute.tar", "ABS"), ("dotdot.zip", "../evil.txt")],
)
def test_path_traversal_is_rejected(tmp_path, name, member):
    """Members escaping the destination raise, and nothing is written anywhere."""
    member = str(tmp_path / "abs_evil.txt") if member == "ABS" else member
    (tmp_path / "src").mkdir()
    write = _zip if name.endswith(".zip") else _tar_gz
    archive = write(tmp_path / "src" / name, {WAV_NAME: b"x", member: b"pwned"})
    with pytest.raises(DatasetSourceError, match=r"evil\.txt"):
        fetch_dataset(str(archive), tmp_path / "cache")
    written = {p.name for p in tmp_path.rglob("*") if p.is_file()}
    assert written == {name}
    assert not any(p.is_file() for p in (tmp_path / "cache" / "extracted").rglob("*"))


def test_other_archive_with_same_stem_is_extracted_again(tmp_path):
    """A cached extraction is reused for the same archive; another archive with the same stem gets its own."""
    first = _tar_gz(tmp_path / "genres.tar.gz", {WAV_NAME: _wav_bytes()})
    out = fetch_dataset(str(first), tmp_path / "cache")
    (out / WAV_NAME).write_bytes(b"touched")
    assert (fetch_dataset(str(first), tmp_path / "cache") / WAV_NAME).read_bytes() == b"touched"
    second = _zip(tmp_path / "genres.zip", {"genres/rock/rock.00000.wav": _wav_bytes()})
    other = fetch_dataset(str(second), tmp_path / "cache")
    assert other != out and other.name == out.name == "genres"
    assert [p.relative_to(other).as_posix() for p in other.rglob("*.wav")] == ["genres/rock/rock.00000.wav"]
    assert (out / WAV_NAME).read_bytes() == b"touched"  # the first extraction is untouched


def test_symlink_outside_is_rejected(tmp_path):
    """A symlink pointing outside the destination raises, naming the member."""
    archive = tmp_path / "link.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("genres/link")
        info.type, info.linkname = tarfile.SYMTYPE, "../../../outside"
        tar.addfile(info)
    with pytest.raises(DatasetSourceError, match="genres/link"):
        fetch_dataset(str(archive), tmp_path / "cache")
    assert not any(p.is_file() for p in (tmp_path / "cache" / "extracted").rglob("*"))


@pytest.mark.parametrize("name", ["genres.zip", "genres.tar.gz"])
def test_local_archive(tmp_path, name):
    """A local archive is verified and extracted without touching downloads/."""
    archive = (_zip if name.endswith(".zip") else _tar_gz)(tmp_path / name, {WAV_NAME: _wav_bytes()})
    out = fetch_dataset(str(archive), tmp_path / "cache", sha256=_sha(archive))
    assert (out / WAV_NAME).is_file()
    assert out == (tmp_path / "cache" / "extracted" / sources.source_slot(str(archive)) / "genres").resolve()
    assert not (tmp_path / "cache" / "downloads").exists()


def test_local_archive_checksum_mismatch(tmp_path):
    """A local archive with the wrong digest raises."""
    archive = _tar_gz(tmp_path / "genres.tar.gz", {WAV_NAME: b"x"})
    with pytest.raises(DatasetSourceError, match="SHA-256 mismatch"):
        fetch_dataset(str(archive), tmp_path / "cache", sha256="f" * 64)


def test_local_folder_returned_as_is(tmp_path):
    """A local folder is returned resolved, without copying."""
    (tmp_path / "data" / "genres" / "blues").mkdir(parents=True)
    assert fetch_dataset(str(tmp_path / "data"), tmp_path / "cache") == (tmp_path / "data").resolve()
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("source", ["missing_folder", "notes.txt"])
def test_bad_local_source(tmp_path, source):
    """A missing path or a non-archive file raises, naming the source."""
    (tmp_path / "notes.txt").write_text("not an archive")
    with pytest.raises(DatasetSourceError, match=source):
        fetch_dataset(str(tmp_path / source), tmp_path / "cache")


def test_s3_download_and_extract(tmp_path, s3):
    """An S3 object is downloaded, extracted, not downloaded again, and a missing key raises."""
    archive = _tar_gz(tmp_path / "genres.tar.gz", {WAV_NAME: _wav_bytes()})
    s3.create_bucket(Bucket="datasets")
    s3.upload_file(str(archive), "datasets", "gtzan/genres.tar.gz")
    calls = []
    out = fetch_dataset(
        "s3://datasets/gtzan/genres.tar.gz",
        tmp_path / "cache",
        sha256=_sha(archive),
        progress=lambda d, t: calls.append((d, t)),
    )
    assert (out / WAV_NAME).is_file()
    assert calls[-1] == (archive.stat().st_size, archive.stat().st_size)
    final = (
        tmp_path / "cache" / "downloads" / sources.source_slot("s3://datasets/gtzan/genres.tar.gz") / "genres.tar.gz"
    )
    mtime = final.stat().st_mtime_ns
    assert fetch_dataset("s3://datasets/gtzan/genres.tar.gz", tmp_path / "cache") == out
    assert final.stat().st_mtime_ns == mtime
    with pytest.raises(DatasetSourceError, match=r"missing\.tar\.gz"):
        fetch_dataset("s3://datasets/missing.tar.gz", tmp_path / "cache")


def test_s3_checksum_mismatch(tmp_path, s3):
    """An S3 object with the wrong digest raises and leaves no file."""
    archive = _tar_gz(tmp_path / "genres.tar.gz", {WAV_NAME: b"x"})
    s3.create_bucket(Bucket="datasets")
    s3.upload_file(str(archive), "datasets", "genres.tar.gz")
    with pytest.raises(DatasetSourceError, match="SHA-256 mismatch"):
        fetch_dataset("s3://datasets/genres.tar.gz", tmp_path / "cache", sha256="0" * 64)
    assert list((tmp_path / "cache" / "downloads" / sources.source_slot("s3://datasets/genres.tar.gz")).iterdir()) == []


def _tar_with(path: Path, member: tarfile.TarInfo) -> Path:
    """A .tar.gz holding one good WAV and `member` (a link or special file, no data)."""
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(WAV_NAME)
        data = _wav_bytes()
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        tar.addfile(member)
    return path


@pytest.mark.parametrize(
    ("kind", "linkname", "message"),
    [
        (tarfile.SYMTYPE, "blues.00000.wav", "is a symlink"),  # even one that stays inside
        (tarfile.SYMTYPE, "a/" * 40 + "../" * 40 + "x", "is a symlink"),  # the realpath-overflow chain class
        (tarfile.LNKTYPE, WAV_NAME, "is a hardlink"),
        (tarfile.FIFOTYPE, "", "is a special file"),
        (tarfile.CHRTYPE, "", "is a special file"),
        (tarfile.BLKTYPE, "", "is a special file"),
    ],
)
def test_links_and_special_members_are_refused(tmp_path, kind, linkname, message):
    """Every link and special file in a tar is refused, naming the member; nothing is left extracted."""
    member = tarfile.TarInfo("genres/blues/odd")
    member.type, member.linkname = kind, linkname
    archive = _tar_with(tmp_path / "genres.tar.gz", member)
    with pytest.raises(DatasetSourceError, match=f"'genres/blues/odd' {message}"):
        fetch_dataset(str(archive), tmp_path / "cache")
    assert not any((tmp_path / "cache" / "extracted").rglob("*.wav"))
    assert {p.name for p in tmp_path.iterdir()} == {"genres.tar.gz", "cache"}


@pytest.mark.parametrize(("mode", "message"), [(0o120777, "is a symlink"), (0o010644, "is a special file")])
def test_zip_symlink_and_special_members_are_refused(tmp_path, mode, message):
    """A zip member whose Unix mode says symlink or FIFO is refused, naming it."""
    archive = tmp_path / "genres.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(WAV_NAME, _wav_bytes())
        info = zipfile.ZipInfo("genres/blues/odd")
        info.external_attr = mode << 16
        zf.writestr(info, "../../outside")
    with pytest.raises(DatasetSourceError, match=f"'genres/blues/odd' {message}"):
        fetch_dataset(str(archive), tmp_path / "cache")
    assert not any((tmp_path / "cache" / "extracted").rglob("*.wav"))


@pytest.mark.parametrize("name", ["genres.zip", "genres.tar.gz"])
@pytest.mark.parametrize(
    ("limits", "message"),
    [
        (sources.SourceLimits(max_members=2), "more than 2 members"),
        (sources.SourceLimits(max_extracted_bytes=100_000), "more than 100000 bytes"),
        (sources.SourceLimits(max_compression_ratio=1.5), "compression ratio over 1.5"),
    ],
)
def test_extraction_limits(tmp_path, name, limits, message):
    """Too many members, too many bytes or a bomb-like ratio raise before anything is written."""
    members = {f"genres/blues/blues.0000{i}.wav": b"\0" * (1 << 20) for i in range(3)}  # 3 MiB of zeros
    archive = (_zip if name.endswith(".zip") else _tar_gz)(tmp_path / name, members)
    with pytest.raises(DatasetSourceError, match=message):
        fetch_dataset(str(archive), tmp_path / "cache", limits=limits)
    assert not any(p.is_file() for p in (tmp_path / "cache" / "extracted").rglob("*"))
    assert fetch_dataset(str(archive), tmp_path / "cache2").is_dir()  # the defaults accept it


def test_tree_check_refuses_a_link_left_after_extraction(tmp_path):
    """The check after extraction refuses a symlink, whatever put it there."""
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "link").symlink_to(tmp_path)
    with pytest.raises(DatasetSourceError, match="link is not a regular file"):
        sources._check_tree(tmp_path / "out", "src", sources.DEFAULT_LIMITS)


def test_download_over_content_length_limit(tmp_path, http_server, served_archive):
    """A Content-Length over the limit raises before any byte is written."""
    url, archive = served_archive
    limits = sources.SourceLimits(max_download_bytes=archive.stat().st_size - 1)
    with pytest.raises(DatasetSourceError, match="Content-Length announces"):
        fetch_dataset(url, tmp_path / "cache", limits=limits)
    assert list((tmp_path / "cache" / "downloads" / sources.source_slot(url)).iterdir()) == []


def test_endless_body_stops_at_the_limit(tmp_path, http_server):
    """A body without Content-Length that never ends is cut at the limit, and its .part removed."""
    http_server.endless = True
    url = f"{http_server.url}/genres.tar.gz"
    with pytest.raises(DatasetSourceError, match="passed the 3000000-byte limit"):
        fetch_dataset(url, tmp_path / "cache", limits=sources.SourceLimits(max_download_bytes=3_000_000))
    assert list((tmp_path / "cache" / "downloads" / sources.source_slot(url)).iterdir()) == []
    assert len(http_server.requests) == 1


def test_stale_part_is_not_resumed_without_checksum(tmp_path, http_server, served_archive):
    """Without a SHA-256, a .part from an earlier run is discarded: the download starts from byte 0."""
    url, archive = served_archive
    part = tmp_path / "cache" / "downloads" / sources.source_slot(url) / "genres.tar.gz.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"stale bytes from another file")
    out = fetch_dataset(url, tmp_path / "cache")
    assert http_server.requests == [("/genres.tar.gz", None)]
    assert (out / WAV_NAME).is_file()


def test_corrupt_download_is_removed_so_a_rerun_downloads_again(tmp_path, http_server):
    """An unreadable downloaded archive raises, is removed from the cache, and the next run fetches a good copy."""
    url = f"{http_server.url}/genres.tar.gz"
    (http_server.root / "genres.tar.gz").write_bytes(b"\x1f\x8b" + b"not really gzip" * 100)
    with pytest.raises(sources.CorruptArchiveError, match="a rerun downloads it again"):
        fetch_dataset(url, tmp_path / "cache")
    assert list((tmp_path / "cache" / "downloads" / sources.source_slot(url)).iterdir()) == []
    _tar_gz(http_server.root / "genres.tar.gz", {WAV_NAME: _wav_bytes()})
    assert (fetch_dataset(url, tmp_path / "cache") / WAV_NAME).is_file()


def test_malformed_sha256_is_refused(tmp_path):
    """A digest that is not 64 hex digits raises before anything is read."""
    archive = _tar_gz(tmp_path / "genres.tar.gz", {WAV_NAME: b"x"})
    with pytest.raises(DatasetSourceError, match="64 hex digits"):
        fetch_dataset(str(archive), tmp_path / "cache", sha256="abc")


def test_credentials_in_the_url_are_never_logged_or_raised(tmp_path, http_server, served_archive, caplog):
    """userinfo and a token in the URL are redacted in log lines and in error messages."""
    url, _ = served_archive
    secret_url = url.replace("http://", "http://reader:S3cretPW@") + "?token=t0psecret"
    with caplog.at_level("INFO", logger="infra.sources"):
        out = fetch_dataset(secret_url, tmp_path / "cache")
        with pytest.raises(DatasetSourceError) as err:
            fetch_dataset(secret_url.replace("genres.tar.gz", "missing.tar.gz"), tmp_path / "cache")
    assert (out / WAV_NAME).is_file()
    assert "404" in str(err.value) and "***@127.0.0.1" in str(err.value)
    for text in (caplog.text, str(err.value)):
        assert "S3cretPW" not in text and "t0psecret" not in text
    assert "Downloaded http://***@127.0.0.1" in caplog.text


def test_s3_missing_bucket_and_missing_key_are_told_apart(tmp_path, s3):
    """A missing bucket and a missing key in an existing bucket give different messages (moto's store is shared)."""
    s3.create_bucket(Bucket="datasets")
    with pytest.raises(DatasetSourceError, match="S3 bucket 'nobucket' does not exist"):
        fetch_dataset("s3://nobucket/genres.tar.gz", tmp_path / "cache")
    with pytest.raises(DatasetSourceError, match="S3 bucket 'datasets' has no object 'gtzan/absent.tar.gz'"):
        fetch_dataset("s3://datasets/gtzan/absent.tar.gz", tmp_path / "cache")


def test_a_full_disk_does_not_discard_the_download(tmp_path, http_server, served_archive, monkeypatch):
    """An OSError with an errno (ENOSPC) while extracting is not corruption: the downloaded archive stays cached."""
    import errno

    url, _ = served_archive

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tarfile.TarFile, "extractall", no_space)
    with pytest.raises(DatasetSourceError, match="No space left") as err:
        fetch_dataset(url, tmp_path / "cache")
    assert not isinstance(err.value, sources.CorruptArchiveError)
    downloads = tmp_path / "cache" / "downloads" / sources.source_slot(url)
    assert [p.name for p in downloads.iterdir()] == ["genres.tar.gz"]
