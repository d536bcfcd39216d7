"""Tests for crnn.atomic: the one atomic file writer (content, mode, no partial file, temp file cleaned up)."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from crnn.atomic import DEFAULT_MODE, atomic_open, atomic_path, commit, write_text_atomic


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_text_content_mode_and_no_temp_left(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "a.txt"  # the folder is created
    assert write_text_atomic(path, "héllo\n") == path
    assert path.read_text(encoding="utf-8") == "héllo\n"
    assert _mode(path) == DEFAULT_MODE == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["a.txt"]


def test_binary_and_explicit_mode(tmp_path: Path) -> None:
    path = tmp_path / "b.bin"
    with atomic_open(path, binary=True, mode=0o600) as f:
        f.write(b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert _mode(path) == 0o600


def test_replaces_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "c.txt"
    path.write_text("old")
    write_text_atomic(path, "new")
    assert path.read_text() == "new"


@pytest.mark.parametrize("error", [ValueError, KeyboardInterrupt])
def test_an_error_keeps_the_old_file_and_removes_the_temp(tmp_path: Path, error: type[BaseException]) -> None:
    path = tmp_path / "d.csv"
    path.write_text("old,complete\n")
    with pytest.raises(error), atomic_open(path) as f:
        f.write("new,half")
        raise error("killed mid-write")
    assert path.read_text() == "old,complete\n"
    assert [p.name for p in tmp_path.iterdir()] == ["d.csv"]


def test_an_error_before_any_file_existed_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "e.parquet") as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("writer failed")
    assert list(tmp_path.iterdir()) == []


def test_no_partial_file_is_visible_while_writing(tmp_path: Path) -> None:
    path, seen = tmp_path / "f.txt", []
    with atomic_open(path) as f:
        f.write("x" * 10_000)
        f.flush()
        seen.append(path.exists())
    assert seen == [False] and path.read_text() == "x" * 10_000


def test_temp_name_prefix_and_suffix(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "song.mp3", prefix=".song.tagging-", suffix=".mp3") as tmp:
        assert tmp.parent == tmp_path
        assert tmp.name.startswith(".song.tagging-") and tmp.name.endswith(".mp3")
        default = tmp
    with atomic_path(tmp_path / "g.json") as tmp:
        assert tmp.name.startswith(".g.json.") and tmp.name.endswith(".tmp")
    assert not default.exists()


def test_mode_none_keeps_the_writers_mode(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "h", mode=None) as tmp:
        tmp.write_text("x")
        os.chmod(tmp, 0o640)
    assert _mode(tmp_path / "h") == 0o640


def test_commit_fails_loudly_and_keeps_the_source(tmp_path: Path) -> None:
    staging = tmp_path / ".staging"
    staging.write_text("done")
    with pytest.raises(OSError):
        commit(staging, tmp_path / "missing-folder" / "final")
    assert staging.read_text() == "done"
    assert commit(staging, tmp_path / "final") == tmp_path / "final"
    assert (tmp_path / "final").read_text() == "done" and not staging.exists()


def test_concurrent_writers_never_leave_a_mixed_file(tmp_path: Path) -> None:
    path = tmp_path / "i.txt"

    def write(char: str) -> None:
        for _ in range(20):
            write_text_atomic(path, char * 50_000)

    threads = [threading.Thread(target=write, args=(c,)) for c in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    text = path.read_text()
    assert text in ("a" * 50_000, "b" * 50_000)
    assert [p.name for p in tmp_path.iterdir()] == ["i.txt"]
