"""An s3:// prefix of loose files (a tagged music library) is mirrored, resumed and kept in step (moto server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.sources import DatasetSourceError, fetch_dataset
from tests.tagged_audio import song


def test_an_s3_prefix_is_mirrored_with_its_relative_paths(tmp_path: Path, s3) -> None:
    s3.create_bucket(Bucket="music")
    one = song(tmp_path / "one.mp3", genre="Rock", artist="A", seconds=0.3)
    s3.upload_file(str(one), "music", "lib/A/Album/01.mp3")
    s3.upload_file(str(one), "music", "lib/B/02.mp3")
    s3.put_object(Bucket="music", Key="lib/._01.mp3", Body=b"resource fork")
    s3.put_object(Bucket="music", Key="other/03.mp3", Body=b"outside the prefix")

    root = fetch_dataset("s3://music/lib", tmp_path / "cache")
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert files == ["A/Album/01.mp3", "B/02.mp3"]
    assert (root / "A/Album/01.mp3").read_bytes() == one.read_bytes()

    stamp = (root / "B/02.mp3").stat().st_mtime_ns
    s3.delete_object(Bucket="music", Key="lib/A/Album/01.mp3")
    again = fetch_dataset("s3://music/lib", tmp_path / "cache")
    assert again == root and not (root / "A/Album/01.mp3").exists()  # gone from S3: gone from the mirror
    assert (root / "B/02.mp3").stat().st_mtime_ns == stamp  # unchanged: not fetched again


def test_an_empty_prefix_and_a_digest_are_errors(tmp_path: Path, s3) -> None:
    s3.create_bucket(Bucket="music")
    with pytest.raises(DatasetSourceError, match="no files under this prefix"):
        fetch_dataset("s3://music/nothing", tmp_path / "cache")
    with pytest.raises(DatasetSourceError, match="applies to an archive"):
        fetch_dataset("s3://music/lib", tmp_path / "cache", sha256="0" * 64)
