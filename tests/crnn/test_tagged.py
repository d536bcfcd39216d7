"""Tagged-library and folder-per-label sources: tags read, labels mapped, exclusions with reasons, groups."""

from __future__ import annotations

from pathlib import Path

import mutagen
import pytest
from mutagen.id3 import TCON

from crnn.dataset import read_manifest, write_manifest
from crnn.labelmap import LabelMapError
from crnn.layouts import build_layout_manifest, detect_layout
from crnn.tagged import default_label, read_file_tags
from tests.tagged_audio import song, tone, write_samples

LABEL_MAP = 'rock = ["Rock", "Hard Rock", "Rock & Roll"]\nhiphop = ["Hip-Hop", "hip hop", "Rap"]\n'


@pytest.mark.parametrize("suffix", [".mp3", ".flac", ".m4a", ".wav"])
def test_genre_and_artist_tags_are_read_from_every_format(tmp_path: Path, suffix: str) -> None:
    path = song(tmp_path / f"a{suffix}", genre="Hip-Hop", artist="MC Test", seconds=0.3)
    assert read_file_tags(path).genre == "Hip-Hop" and read_file_tags(path).artist == "MC Test"
    bare = song(tmp_path / f"b{suffix}", seconds=0.3)
    assert read_file_tags(bare).genre is None and read_file_tags(bare).artist is None


def test_an_id3v1_genre_reference_is_resolved(tmp_path: Path) -> None:
    path = song(tmp_path / "a.mp3", seconds=0.3)
    f = mutagen.File(path)
    f.add_tags()
    f.tags.add(TCON(encoding=3, text=["(17)"]))  # ID3v1 genre 17 is Rock
    f.save()
    assert read_file_tags(path).genre == "Rock"


@pytest.mark.parametrize(
    ("raw", "label"),
    [("Hip-Hop", "hiphop"), ("hip hop", "hiphop"), ("Drum & Bass", "drum-bass"), ("Électro", "electro"), ("!!", None)],
)
def test_default_label_matches_gtzan_loosely_and_slugs_the_rest(raw: str, label: str | None) -> None:
    assert default_label(raw) == label


@pytest.fixture
def library(tmp_path: Path) -> Path:
    """Messy tags: 3 rock (two spellings), 3 hip-hop (three spellings), 1 polka, 1 untagged, a cover and a broken MP3."""
    root = tmp_path / "Music"
    song(root / "Band A/Album 1/01.mp3", genre="Rock", artist="Band A", freq_hz=300)
    song(root / "Band A/Album 1/02.flac", genre="Hard Rock", artist="band a", freq_hz=310)
    song(root / "Loose/03.m4a", genre="Rock & Roll", freq_hz=320)
    song(root / "MC B/01.mp3", genre="Hip-Hop", artist="MC B", freq_hz=600)
    song(root / "MC B/02.flac", genre="hip hop", artist="MC B", freq_hz=610)
    song(root / "top.m4a", genre="RAP", freq_hz=620)
    song(root / "Polka/01.mp3", genre="Polka", artist="Polka Kings", freq_hz=900)
    song(root / "Unknown/01.flac", freq_hz=1000)
    (root / "Band A/Album 1/cover.jpg").write_bytes(b"\xff\xd8\xff")
    (root / "MC B/broken.mp3").write_bytes(b"not audio at all" * 100)
    (tmp_path / "labels.toml").write_text(LABEL_MAP)
    return root


def _reasons(exclusions, root: Path) -> dict[str, str]:
    return {str(Path(e.path).relative_to(root)): e.reason for e in exclusions}


def test_a_label_map_maps_messy_tags_and_lists_every_exclusion(library: Path) -> None:
    layout, tracks, excluded = build_layout_manifest(
        library, layout="auto", label_map=library.parent / "labels.toml", min_tracks=2
    )
    assert layout == "tags"
    assert {t.track_id: t.genre for t in tracks} == {
        "Band A/Album 1/01.mp3": "rock",
        "Band A/Album 1/02.flac": "rock",
        "Loose/03.m4a": "rock",
        "MC B/01.mp3": "hiphop",
        "MC B/02.flac": "hiphop",
        "top.m4a": "hiphop",
    }
    reasons = _reasons(excluded, library)
    assert reasons["Polka/01.mp3"] == "genre 'Polka' is not in the label map"
    assert reasons["Unknown/01.flac"] == "no genre tag"
    assert reasons["Band A/Album 1/cover.jpg"] == "not an audio file (.jpg)"
    assert "MC B/broken.mp3" in reasons and len(reasons) == 4
    groups = {t.track_id: t.group for t in tracks}
    assert groups["Band A/Album 1/01.mp3"] == groups["Band A/Album 1/02.flac"] == "artist:band a"  # case-folded
    assert groups["Loose/03.m4a"] == "folder:Loose" and groups["top.m4a"] == ""  # no artist: album folder, or none


def test_labels_with_too_few_tracks_are_excluded_with_the_count(library: Path) -> None:
    _, tracks, excluded = build_layout_manifest(library, layout="tags", label_map=None, min_tracks=2)
    assert {t.genre for t in tracks} == {"hiphop"}  # no map: "hiphop" x3; rock's three spellings are three labels
    reasons = _reasons(excluded, library)
    assert reasons["Polka/01.mp3"] == "label 'polka' has 1 tracks, under the minimum of 2"
    assert reasons["Loose/03.m4a"] == "label 'rock-roll' has 1 tracks, under the minimum of 2"


def test_manifest_of_a_library_round_trips(library: Path, tmp_path: Path) -> None:
    _, tracks, excluded = build_layout_manifest(library, layout="tags", label_map=library.parent / "labels.toml",
                                                min_tracks=1)  # fmt: skip
    write_manifest(tracks, excluded, tmp_path / "m.csv", tmp_path / "x.csv")
    assert read_manifest(tmp_path / "m.csv") == tracks


def test_a_bad_label_map_is_one_error_naming_the_file(library: Path) -> None:
    bad = library.parent / "bad.toml"
    bad.write_text("rock = [1, 2]\n")
    with pytest.raises(LabelMapError, match="bad.toml"):
        build_layout_manifest(library, layout="tags", label_map=bad, min_tracks=1)


def test_the_same_audio_twice_is_kept_once(tmp_path: Path) -> None:
    a = song(tmp_path / "lib/a/01.flac", genre="Jazz", artist="X")
    (tmp_path / "lib/b").mkdir()
    (tmp_path / "lib/b/01.flac").write_bytes(a.read_bytes())
    _, tracks, excluded = build_layout_manifest(tmp_path / "lib", layout="tags", label_map=None, min_tracks=1)
    assert [t.track_id for t in tracks] == ["a/01.flac"]
    assert excluded[0].reason == "same audio bytes as a/01.flac"


def test_folder_per_label_layout(tmp_path: Path) -> None:
    root = tmp_path / "by-label"
    song(root / "Jazz/Miles/Kind/01.flac", freq_hz=300)
    song(root / "Jazz/02.mp3", freq_hz=310)
    song(root / "Hip Hop/03.mp3", artist="MC C", freq_hz=600)
    song(root / "stray.mp3", freq_hz=700)
    assert detect_layout(root) == "folders"  # no genre tags
    _, tracks, excluded = build_layout_manifest(root, layout="auto", label_map=None, min_tracks=1)
    assert {t.track_id: (t.genre, t.group) for t in tracks} == {
        "Jazz/Miles/Kind/01.flac": ("jazz", "folder:Jazz/Miles/Kind"),
        "Jazz/02.mp3": ("jazz", ""),  # the label folder is not an album
        "Hip Hop/03.mp3": ("hiphop", "artist:mc c"),
    }
    assert _reasons(excluded, root) == {"stray.mp3": "not inside a label folder (<root>/<label>/...)"}


def test_detect_layout_prefers_gtzan_names(tmp_path: Path) -> None:
    write_samples(tmp_path / "g/blues/blues.00000.wav", tone(200, 1.2))
    song(tmp_path / "t/x.mp3", genre="Blues")
    assert detect_layout(tmp_path / "g") == "gtzan" and detect_layout(tmp_path / "t") == "tags"


def test_unknown_layout_and_missing_root_are_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="layout must be one of"):
        build_layout_manifest(tmp_path, layout="itunes", label_map=None, min_tracks=1)
    with pytest.raises(FileNotFoundError, match="not an existing folder"):
        build_layout_manifest(tmp_path / "nope", layout="tags", label_map=None, min_tracks=1)


def test_a_bad_label_map_is_a_usage_error_of_the_request(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from crnn.requests import DownloadRequest, TrainRequest

    bad = tmp_path / "labels.toml"
    bad.write_text('rock = "Rock"\nrock = "Hard Rock"\n')  # a label twice: not valid TOML
    for request in (DownloadRequest, TrainRequest):
        with pytest.raises(ValidationError, match="labels.toml: not valid TOML"):
            request(source=str(tmp_path), label_map=str(bad))


def test_a_fifo_a_broken_link_and_a_link_loop_never_stop_the_scan(tmp_path: Path) -> None:
    import os

    root = tmp_path / "lib"
    song(root / "A/01.flac", genre="Jazz", artist="A")
    os.mkfifo(root / "A/pipe.mp3")  # opening it to read tags would block
    (root / "A/gone.mp3").symlink_to(tmp_path / "missing.mp3")
    (root / "A/loop").symlink_to(root)
    _, tracks, excluded = build_layout_manifest(root, layout="tags", label_map=None, min_tracks=1)
    assert [t.track_id for t in tracks] == ["A/01.flac"]
    reasons = _reasons(excluded, root)
    assert reasons["A/pipe.mp3"].startswith("not a regular file (a FIFO)")
    assert reasons["A/gone.mp3"] == "broken symlink: its target does not exist"
