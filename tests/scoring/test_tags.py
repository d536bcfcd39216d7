"""Tests for scoring.tags: genre tags written with mutagen on real files of every taggable format."""

from __future__ import annotations

import os
from pathlib import Path

import av
import mutagen
import numpy as np
import pytest
import soundfile as sf
from mutagen.id3 import TCON, TIT2

from crnn.audio import load_audio
from scoring.tags import GENRE_TAG_VALUES, TagError, read_genre, write_genre

FORMATS = {  # suffix: (soundfile format, subtype, rate in Hz); None: M4A through PyAV
    ".mp3": ("MP3", "MPEG_LAYER_III", 44100),
    ".flac": ("FLAC", "PCM_16", 44100),
    ".ogg": ("OGG", "VORBIS", 44100),
    ".opus": ("OGG", "OPUS", 48000),
    ".m4a": (None, None, 44100),
    ".wav": ("WAV", "PCM_16", 44100),
    ".aiff": ("AIFF", "PCM_16", 44100),
}
ID3 = {".mp3", ".wav", ".aiff"}
VORBIS = {".flac", ".ogg", ".opus"}


def write_audio(path: Path, rate: int | None = None, channels: int = 2) -> Path:
    """0.3 s of a seeded tone + noise in the format of ``path``'s suffix, without tags."""
    fmt, subtype, native = FORMATS.get(path.suffix, ("AU", "PCM_16", 44100))
    rate = rate or native
    rng = np.random.default_rng(0)
    t = np.arange(int(0.3 * rate)) / rate
    y = 0.3 * np.sin(2 * np.pi * 440 * t)[:, None] + 0.01 * rng.standard_normal((t.size, channels))
    y = y.astype(np.float32)
    if fmt is None:
        with av.open(str(path), "w") as out:
            stream = out.add_stream("aac", rate=rate, layout="stereo")
            for i in range(0, len(y), 1024):
                frame = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(y[i : i + 1024].T), format="fltp", layout="stereo"
                )
                frame.sample_rate = rate
                for packet in stream.encode(frame):
                    out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)
        return path
    with sf.SoundFile(path, "w", rate, channels, format=fmt, subtype=subtype) as f:
        for i in range(0, len(y), 4096):  # one big write of Ogg can crash libsndfile
            f.write(y[i : i + 4096])
    return path


def set_tags(path: Path, genre: str | None, title: str) -> None:
    """Give ``path`` a title (and a genre) with mutagen directly."""
    f = mutagen.File(path)
    if f.tags is None:
        f.add_tags()
    if path.suffix in ID3:
        f.tags.add(TIT2(encoding=3, text=[title]))
        if genre:
            f.tags.add(TCON(encoding=3, text=[genre]))
    elif path.suffix in VORBIS:
        f.tags["title"] = [title]
        if genre:
            f.tags["genre"] = [genre]
    else:
        f.tags["\xa9nam"] = [title]
        if genre:
            f.tags["\xa9gen"] = [genre]
    f.save()


def tags_of(path: Path) -> tuple[list[str], list[str]]:
    """(genre values, title values) as mutagen reads them."""
    f = mutagen.File(path)
    if path.suffix in ID3:
        return [str(v) for fr in f.tags.getall("TCON") for v in fr.text], [
            str(v) for fr in f.tags.getall("TIT2") for v in fr.text
        ]
    if path.suffix in VORBIS:
        return list(f.tags.get("genre", [])), list(f.tags.get("title", []))
    return list(f.tags.get("\xa9gen", [])), list(f.tags.get("\xa9nam", []))


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture(params=list(FORMATS))
def song(request, tmp_path: Path) -> Path:
    return write_audio(tmp_path / f"song{request.param}")


def test_untagged_file_reads_none(song: Path) -> None:
    assert read_genre(song) is None


def test_write_genre_sets_tag_and_keeps_audio(song: Path) -> None:
    before = load_audio(song, 22050)
    names = listing(song.parent)
    assert write_genre(song, "hiphop") == "Hip-Hop"
    assert read_genre(song) == "Hip-Hop"
    assert tags_of(song) == (["Hip-Hop"], [])
    np.testing.assert_array_equal(load_audio(song, 22050), before)
    assert listing(song.parent) == names  # the temporary copy is gone


def test_write_genre_replaces_genre_and_keeps_title(song: Path) -> None:
    set_tags(song, "Blues", "Take Five")
    assert read_genre(song) == "Blues"
    before = load_audio(song, 22050)
    write_genre(song, "jazz")
    assert tags_of(song) == (["Jazz"], ["Take Five"])
    assert read_genre(song) == "Jazz"
    write_genre(song, "metal")  # and again: still one value
    assert tags_of(song) == (["Metal"], ["Take Five"])
    np.testing.assert_array_equal(load_audio(song, 22050), before)
    assert listing(song.parent) == [song.name]


def test_write_genre_keeps_file_mode(song: Path) -> None:
    os.chmod(song, 0o640)
    write_genre(song, "rock")
    assert song.stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize("genre", sorted(GENRE_TAG_VALUES))
def test_every_genre_spelling_round_trips(tmp_path: Path, genre: str) -> None:
    path = write_audio(tmp_path / "g.flac")
    assert read_genre(path) is None
    assert write_genre(path, genre) == GENRE_TAG_VALUES[genre]
    assert read_genre(path) == GENRE_TAG_VALUES[genre]


@pytest.mark.parametrize("kind", ["au", "garbage", "text"])
def test_untaggable_file_raises_and_is_untouched(tmp_path: Path, kind: str) -> None:
    if kind == "au":
        path = write_audio(tmp_path / "song.au")
    elif kind == "garbage":
        path = tmp_path / "broken.mp3"
        path.write_bytes(np.random.default_rng(0).bytes(2000))
    else:
        path = tmp_path / "notes.txt"
        path.write_text("not audio")
    data, mtime = path.read_bytes(), path.stat().st_mtime_ns
    with pytest.raises(TagError, match=path.name):
        write_genre(path, "rock")
    assert path.read_bytes() == data and path.stat().st_mtime_ns == mtime
    assert listing(tmp_path) == [path.name]


def test_read_genre_of_untaggable_file_raises(tmp_path: Path) -> None:
    with pytest.raises(TagError, match=r"song\.au"):
        read_genre(write_audio(tmp_path / "song.au"))


def test_a_label_outside_gtzan_is_written_as_itself(tmp_path: Path) -> None:
    path = write_audio(tmp_path / "song.mp3")
    assert write_genre(path, "polka") == "polka" and read_genre(path) == "polka"


def test_a_tag_spelling_raises_keyerror_and_leaves_file(tmp_path: Path) -> None:
    path = write_audio(tmp_path / "song.mp3")
    data = path.read_bytes()
    with pytest.raises(KeyError):
        write_genre(path, "Rock")  # the tag spelling is not a genre name
    assert path.read_bytes() == data
    assert listing(tmp_path) == [path.name]


def test_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises((TagError, OSError)):
        write_genre(tmp_path / "gone.mp3", "rock")
    assert listing(tmp_path) == []


def test_write_genre_on_low_rate_mp3(tmp_path: Path) -> None:
    path = write_audio(tmp_path / "voice.mp3", rate=11025, channels=1)
    assert read_genre(path) is None  # readable under its own name
    before = load_audio(path, 22050)
    assert write_genre(path, "blues") == "Blues"
    assert read_genre(path) == "Blues"
    np.testing.assert_array_equal(load_audio(path, 22050), before)


def test_a_symlink_stays_a_link_and_its_target_is_tagged(tmp_path: Path) -> None:
    (tmp_path / "store").mkdir()
    target = write_audio(tmp_path / "store" / "song.flac")
    link = tmp_path / "library" / "song.flac"
    link.parent.mkdir()
    link.symlink_to(target)
    write_genre(link, "jazz")
    assert link.is_symlink() and link.resolve() == target.resolve()
    assert read_genre(target) == "Jazz"


def test_wav_shorter_than_its_header_is_never_tagged(tmp_path: Path) -> None:
    """A WAV missing most of its promised data is refused: an appended ID3 chunk would land inside the audio."""
    path = write_audio(tmp_path / "short.wav")
    data = path.read_bytes()
    start = data.index(b"data") + 8
    path.write_bytes(data[: start + (len(data) - start) // 3])
    before = path.read_bytes()
    with pytest.raises(TagError, match="less data than its header promises"):
        write_genre(path, "rock")
    assert path.read_bytes() == before and listing(tmp_path) == ["short.wav"]


def test_symlink_out_of_the_roots_is_refused(tmp_path: Path) -> None:
    """With library roots, a symlink whose target lies outside them leaves the target untouched."""
    (tmp_path / "store").mkdir()
    target = write_audio(tmp_path / "store" / "song.flac")
    link = tmp_path / "library" / "song.flac"
    link.parent.mkdir()
    link.symlink_to(target)
    data = target.read_bytes()
    with pytest.raises(TagError, match="outside the library"):
        write_genre(link, "jazz", roots=[tmp_path / "library"])
    assert target.read_bytes() == data
    inside = write_audio(tmp_path / "library" / "own.flac")
    (tmp_path / "library" / "alias.flac").symlink_to(inside)
    assert write_genre(tmp_path / "library" / "alias.flac", "jazz", roots=[tmp_path / "library"]) == "Jazz"


def test_hardlinked_file_is_refused(tmp_path: Path) -> None:
    """Tagging a copy would split a hardlink: the file is refused and both names still share one inode."""
    path = write_audio(tmp_path / "song.flac")
    os.link(path, tmp_path / "twin.flac")
    with pytest.raises(TagError, match=r"hardlinked \(2 links\)"):
        write_genre(path, "rock")
    assert path.stat().st_ino == (tmp_path / "twin.flac").stat().st_ino and read_genre(path) is None


def test_stale_temporary_copies_are_removed(tmp_path: Path) -> None:
    """Only names write_genre's temporary copies have are removed."""
    from scoring.tags import remove_stale_copies

    (tmp_path / "a").mkdir()
    stale = [tmp_path / "a" / ".song.tagging-k2j_9x0q.flac", tmp_path / ".x.y.tagging-abcdefgh.mp3"]
    keep = [tmp_path / "a" / "song.flac", tmp_path / ".song.tagging-notes.txt", tmp_path / "song.tagging-abcdefgh.mp3"]
    for p in stale + keep:
        p.write_bytes(b"x")
    assert sorted(remove_stale_copies([tmp_path, "s3://bucket/music"])) == sorted(stale)
    assert all(p.exists() for p in keep) and not any(p.exists() for p in stale)
