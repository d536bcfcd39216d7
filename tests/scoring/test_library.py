"""Tests for scoring.library: local and S3 (real moto server) scans, format checks and the S3 download cache."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from scoring.library import LibraryError, LibraryFile, local_copy, scan_library, unsupported_reason


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def library(tmp_path: Path) -> Path:
    """A folder with nested audio, hidden files and folders, and a non-audio file."""
    root = tmp_path / "music"
    for rel in ["b/song.mp3", "a/z.flac", "a/deep/er/track.m4a", "top.wav", "notes.txt"]:
        touch(root / rel, rel.encode())
    for rel in [".DS_Store", "a/._z.flac", "._x.mp3", ".hidden/x.wav", "a/.cache/y.ogg"]:
        touch(root / rel)
    return root


def test_scan_is_recursive_sorted_and_skips_hidden(library: Path) -> None:
    files = scan_library([str(library)])
    rel = [Path(f.path).relative_to(library.resolve()).as_posix() for f in files]
    assert rel == ["a/deep/er/track.m4a", "a/z.flac", "b/song.mp3", "notes.txt", "top.wav"]
    assert [f.path for f in files] == sorted(f.path for f in files)
    for f in files:
        assert Path(f.path).is_absolute()
        st = os.stat(f.path)
        assert (f.size, f.mtime_ns, f.etag) == (st.st_size, st.st_mtime_ns, None)
        assert not f.is_s3


def test_scan_deduplicates_overlapping_roots(library: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    once = scan_library([str(library)])
    monkeypatch.chdir(library.parent)
    twice = scan_library([str(library), "music/a", "music", str(library / "b")])
    assert twice == once


def test_scan_several_roots_are_merged_sorted(tmp_path: Path) -> None:
    touch(tmp_path / "two" / "a.mp3")
    touch(tmp_path / "one" / "b.mp3")
    files = scan_library([str(tmp_path / "two"), str(tmp_path / "one")])
    assert [Path(f.path).relative_to(tmp_path.resolve()).as_posix() for f in files] == ["one/b.mp3", "two/a.mp3"]


def test_scan_lists_a_broken_symlink_as_unscorable(tmp_path: Path) -> None:
    touch(tmp_path / "m" / "ok.mp3")
    (tmp_path / "m" / "gone.mp3").symlink_to(tmp_path / "nowhere.mp3")
    gone, ok = scan_library([str(tmp_path / "m")])
    assert (Path(gone.path).name, gone.broken, Path(ok.path).name, ok.broken) == ("gone.mp3", True, "ok.mp3", False)
    assert "broken symlink" in unsupported_reason(gone) and unsupported_reason(ok) is None


@pytest.mark.parametrize("name", ["missing", "file.mp3"])
def test_scan_missing_or_not_folder_raises(tmp_path: Path, name: str) -> None:
    touch(tmp_path / "file.mp3")
    with pytest.raises(LibraryError, match=name):
        scan_library([str(tmp_path / name)])


def test_scan_empty_roots() -> None:
    assert scan_library([]) == []


@pytest.mark.parametrize(
    ("path", "size", "match"),
    [
        ("/m/notes.txt", 10, r"unsupported format \.txt"),
        ("/m/README", 10, r"unsupported format \(no suffix\)"),
        ("/m/a.mp3", 0, "zero-length file"),
        ("s3://b/k/cover.jpg", 10, r"\.jpg"),
    ],
)
def test_unsupported_reason_names_the_problem(path: str, size: int, match: str) -> None:
    reason = unsupported_reason(LibraryFile(path, size, 0))
    assert reason is not None
    assert re.search(match, reason)


def test_unsupported_reason_lists_expected_formats() -> None:
    reason = unsupported_reason(LibraryFile("/m/notes.txt", 1, 0))
    assert ".mp3" in reason and ".m4a" in reason and ".flac" in reason


@pytest.mark.parametrize(
    "path", ["/m/a.mp3", "/m/b.m4a", "/m/C.MP3", "/m/d.flac", "/m/e.opus", "s3://b/x/y.m4a", "s3://b/x.y/z.wav"]
)
def test_supported_files_have_no_reason(path: str) -> None:
    assert unsupported_reason(LibraryFile(path, 100, 0, "etag")) is None


def test_local_copy_returns_local_file_as_is(tmp_path: Path) -> None:
    f = LibraryFile(str(tmp_path / "a.mp3"), 5, 0)
    assert local_copy(f, tmp_path / "cache") == tmp_path / "a.mp3"
    assert not (tmp_path / "cache").exists()


# --- S3 against a real moto server -------------------------------------------------------------


@pytest.fixture
def bucket(s3) -> str:
    """Bucket ``lib`` with nested keys under ``music/``, hidden keys, a folder marker and a look-alike prefix."""
    s3.create_bucket(Bucket="lib")
    for key in [
        "music/b.mp3",
        "music/a/deep/c.m4a",
        "music/a/x.flac",
        "music/.DS_Store",
        "music/a/._x.flac",
        "music/.trash/old.mp3",
        "music/empty/",
        "musicB/not-mine.mp3",
        "music.mp3",
        "other/d.mp3",
    ]:
        s3.put_object(Bucket="lib", Key=key, Body=key.encode() * 3)
    return "lib"


def test_s3_scan_lists_nested_keys_with_identity(s3, bucket: str) -> None:
    files = scan_library([f"s3://{bucket}/music"])
    assert [f.path for f in files] == ["s3://lib/music/a/deep/c.m4a", "s3://lib/music/a/x.flac", "s3://lib/music/b.mp3"]
    for f in files:
        key = f.path.removeprefix("s3://lib/")
        head = s3.head_object(Bucket=bucket, Key=key)
        assert f.is_s3
        assert f.size == len(key.encode()) * 3 == head["ContentLength"]
        assert f.etag == head["ETag"].strip('"') and '"' not in f.etag
        assert f.mtime_ns == pytest.approx(head["LastModified"].timestamp() * 1e9, abs=1e6)


@pytest.mark.parametrize("root", ["s3://lib/music", "s3://lib/music/"])
def test_s3_prefix_is_a_folder_boundary(s3, bucket: str, root: str) -> None:
    paths = [f.path for f in scan_library([root])]
    assert not any("musicB" in p or p.endswith("music.mp3") for p in paths)
    assert len(paths) == 3


def test_s3_whole_bucket_and_sub_prefix(s3, bucket: str) -> None:
    assert [f.path for f in scan_library(["s3://lib/music/a"])] == [
        "s3://lib/music/a/deep/c.m4a",
        "s3://lib/music/a/x.flac",
    ]
    whole = [f.path for f in scan_library(["s3://lib"])]
    assert "s3://lib/musicB/not-mine.mp3" in whole and "s3://lib/other/d.mp3" in whole
    assert not any("/." in p or p.endswith("/") for p in whole)


def test_s3_and_local_roots_together(s3, bucket: str, tmp_path: Path) -> None:
    touch(tmp_path / "loc" / "z.mp3")
    files = scan_library([str(tmp_path / "loc"), "s3://lib/other", "s3://lib/other/"])
    assert [f.path for f in files] == [str((tmp_path / "loc" / "z.mp3").resolve()), "s3://lib/other/d.mp3"]


@pytest.mark.parametrize("root", ["s3://no-such-bucket/music", "s3:///music"])
def test_s3_missing_bucket_raises(s3, root: str) -> None:
    with pytest.raises(LibraryError, match=root.replace("/", ".")):
        scan_library([root])


def test_local_copy_downloads_once(s3, bucket: str, tmp_path: Path) -> None:
    (f,) = [f for f in scan_library(["s3://lib/music"]) if f.path.endswith("b.mp3")]
    cache = tmp_path / "cache"
    local = local_copy(f, cache)
    assert local.parent == cache and local.suffix == ".mp3"
    assert local.read_bytes() == b"music/b.mp3" * 3
    mtime = local.stat().st_mtime_ns
    s3.delete_object(Bucket=bucket, Key="music/b.mp3")  # a second download would now fail
    assert local_copy(f, cache) == local
    assert local.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in cache.iterdir()) == [local.name]  # no .part- leftovers


def test_local_copy_new_etag_is_a_new_download(s3, bucket: str, tmp_path: Path) -> None:
    (old,) = scan_library(["s3://lib/other"])
    first = local_copy(old, tmp_path / "cache")
    s3.put_object(Bucket=bucket, Key="other/d.mp3", Body=b"NEW CONTENT, SAME KEY!!!!")
    (new,) = scan_library(["s3://lib/other"])
    assert new.etag != old.etag
    second = local_copy(new, tmp_path / "cache")
    assert second != first
    assert second.read_bytes() == b"NEW CONTENT, SAME KEY!!!!"
    assert first.read_bytes() == b"other/d.mp3" * 3


def test_local_copy_replaces_partial_cache_file(s3, bucket: str, tmp_path: Path) -> None:
    (f,) = scan_library(["s3://lib/other"])
    target = local_copy(f, tmp_path / "cache")
    target.write_bytes(b"half")  # e.g. an older, interrupted copy under the same name
    assert local_copy(f, tmp_path / "cache") == target
    assert target.read_bytes() == b"other/d.mp3" * 3


def test_local_copy_missing_object_raises_oserror(s3, bucket: str, tmp_path: Path) -> None:
    f = LibraryFile("s3://lib/music/gone.mp3", 10, 0, "abc")
    with pytest.raises(OSError, match="s3://lib/music/gone.mp3"):
        local_copy(f, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_s3_key_with_hash_sign(s3, bucket: str, tmp_path: Path) -> None:
    s3.put_object(Bucket=bucket, Key="classics/Symphony #5.mp3", Body=b"ludwig")
    (f,) = scan_library(["s3://lib/classics"])
    assert f.path == "s3://lib/classics/Symphony #5.mp3"
    assert f.suffix == ".mp3"
    assert unsupported_reason(f) is None
    assert local_copy(f, tmp_path / "cache").read_bytes() == b"ludwig"


def test_scan_lists_fifos_and_devices_as_unscorable(tmp_path: Path) -> None:
    """A FIFO and a symlink to /dev/zero get a row with a reason (never opened), not a silent skip."""
    root = tmp_path / "music"
    touch(root / "ok.wav")
    os.mkfifo(root / "pipe.mp3")
    (root / "zero.flac").symlink_to("/dev/zero")
    files = {Path(f.path).name: f for f in scan_library([str(root)])}
    assert set(files) == {"ok.wav", "pipe.mp3", "zero.flac"}
    assert unsupported_reason(files["pipe.mp3"]) == "not a regular file (a FIFO); not opened"
    assert unsupported_reason(files["zero.flac"]) == "not a regular file (a character device); not opened"
    assert unsupported_reason(files["ok.wav"]) is None
    assert LibraryFile(**files["pipe.mp3"].to_dict()) == files["pipe.mp3"]  # survives the trip through a task
