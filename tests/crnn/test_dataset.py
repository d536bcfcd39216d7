"""Tests for crnn.dataset: discovery, decode checks, exclusions and the manifest CSV."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from crnn import GENRES
from crnn.dataset import (
    APPLEDOUBLE_REASON,
    Exclusion,
    Track,
    build_manifest,
    discover_tracks,
    inspect_track,
    label_list,
    parse_track_id,
    read_manifest,
    write_manifest,
)

SAMPLE_RATE = 22050
MINI = Path("/work/shared/data/gtzan_mini")


def write_noise(path: Path, *, seed: int = 0, duration_s: float = 1.2) -> Path:
    """Write seeded noise as 16-bit PCM; the format (WAV or AU) follows the extension."""
    rng = np.random.default_rng(seed)
    samples = (0.1 * rng.standard_normal(int(duration_s * SAMPLE_RATE))).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = "AU" if path.suffix.lower() == ".au" else "WAV"
    sf.write(path, samples, SAMPLE_RATE, format=fmt, subtype="PCM_16")
    return path


def truncate_half(path: Path) -> Path:
    """Chop the second half of the bytes, so the header claims more frames than the file holds."""
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size // 2)
    return path


@pytest.mark.parametrize("layout", ["genres/{g}", "genres_original/{g}", "Data/genres_original/{g}", "."])
def test_discover_tracks_finds_gtzan_names_in_every_layout(tmp_path: Path, layout: str) -> None:
    for name in ["rock.00004.wav", "blues.00001.au", "pop.00003.WAV", "blues.00000.wav"]:
        write_noise(tmp_path / layout.format(g=name.split(".")[0]) / name)
    ignored = ["rock.0004.wav", "opera.00000.wav", "blues.00002.mp3", "README.txt", "._blues.00000.wav"]
    for name in ignored:
        (tmp_path / layout.format(g="blues") / name).write_bytes(b"x")

    found = discover_tracks(tmp_path)

    assert [p.name for p in found] == ["blues.00000.wav", "blues.00001.au", "pop.00003.WAV", "rock.00004.wav"]
    assert all(p.is_file() for p in found)


def test_discover_tracks_missing_root_names_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope"):
        discover_tracks(tmp_path / "nope")


@pytest.fixture
def messy_root(tmp_path: Path) -> Path:
    """A genres/ tree with good files and every kind of bad file."""
    genres = tmp_path / "genres"
    write_noise(genres / "blues" / "blues.00000.wav", seed=1)
    write_noise(genres / "blues" / "blues.00000.au", seed=2)  # duplicate id, sorts first
    write_noise(genres / "rock" / "blues.00003.wav", seed=3)  # folder disagrees with name
    write_noise(genres / "jazz" / "jazz.00001.au", seed=4)
    truncate_half(write_noise(genres / "jazz" / "jazz.00002.wav", seed=5))
    truncate_half(write_noise(genres / "jazz" / "jazz.00003.au", seed=6))
    (genres / "jazz" / "jazz.00054.wav").write_bytes(np.random.default_rng(7).bytes(4096))
    (genres / "pop" / "pop.00000.wav").parent.mkdir(parents=True)
    (genres / "pop" / "pop.00000.wav").write_bytes(b"")
    (genres / "blues" / "._blues.00000.wav").write_bytes(b"\x00\x05\x16\x07")
    (tmp_path / "__MACOSX" / "genres").mkdir(parents=True)
    (tmp_path / "__MACOSX" / "genres" / "._jazz.00001.au").write_bytes(b"\x00\x05\x16\x07")
    return tmp_path


def test_build_manifest_keeps_good_files_and_excludes_bad_ones(messy_root: Path) -> None:
    progress: list[tuple[int, int]] = []

    tracks, exclusions = build_manifest(messy_root, on_progress=lambda done, total: progress.append((done, total)))

    assert [t.track_id for t in tracks] == ["blues.00000", "blues.00003", "jazz.00001"]
    assert tracks[0].path.endswith("blues.00000.au")
    assert tracks[1].genre == "blues"  # from the file name, not the rock/ folder
    reasons = {Path(e.path).name: e.reason for e in exclusions}
    assert set(reasons) == {
        "blues.00000.wav",
        "jazz.00002.wav",
        "jazz.00003.au",
        "jazz.00054.wav",
        "pop.00000.wav",
        "._blues.00000.wav",
        "._jazz.00001.au",
    }
    assert reasons["blues.00000.wav"].startswith("duplicate track id blues.00000")
    assert reasons["jazz.00002.wav"].startswith("truncated")
    assert reasons["jazz.00003.au"].startswith("truncated")
    assert "unreadable header" in reasons["jazz.00054.wav"]
    assert "unreadable header" in reasons["pop.00000.wav"]
    assert reasons["._blues.00000.wav"] == APPLEDOUBLE_REASON == reasons["._jazz.00001.au"]
    assert progress == [(i, 8) for i in range(1, 9)]
    assert all(Path(e.path).is_absolute() for e in exclusions)


def test_build_manifest_track_fields(tmp_path: Path) -> None:
    path = write_noise(tmp_path / "genres_original" / "disco" / "disco.00042.wav", duration_s=1.2)

    (track,), exclusions = build_manifest(tmp_path)

    assert exclusions == []
    assert track == Track(
        track_id="disco.00042",
        genre="disco",
        path=os.path.abspath(path),
        duration_s=pytest.approx(1.2, abs=1 / SAMPLE_RATE),
        sample_rate=SAMPLE_RATE,
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
    )


def test_duplicate_keeps_the_copy_that_decodes(tmp_path: Path) -> None:
    # libsndfile would read these bytes as headerless mu-law; the missing '.snd' magic must exclude it
    (tmp_path / "metal.00005.au").write_bytes(b"not audio at all")  # sorts before .wav
    write_noise(tmp_path / "metal.00005.wav")

    tracks, exclusions = build_manifest(tmp_path)

    assert [Path(t.path).name for t in tracks] == ["metal.00005.wav"]
    assert [(Path(e.path).name, e.reason[:12]) for e in exclusions] == [("metal.00005.au", "no AU header")]


def test_manifest_round_trip(messy_root: Path, tmp_path: Path) -> None:
    tracks, exclusions = build_manifest(messy_root)
    manifest_csv, exclusions_csv = tmp_path / "out" / "manifest.csv", tmp_path / "out" / "exclusions.csv"

    write_manifest(tracks, exclusions, manifest_csv, exclusions_csv)

    assert read_manifest(manifest_csv) == tracks
    lines = exclusions_csv.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "path,reason" and len(lines) == len(exclusions) + 1
    assert sorted(os.listdir(manifest_csv.parent)) == ["exclusions.csv", "manifest.csv"]  # no temp files left


def test_write_manifest_replaces_existing_file(tmp_path: Path) -> None:
    track = Track("rock.00001", "rock", "/x/rock.00001.wav", 30.0, 22050, "ab" * 32)
    manifest_csv = tmp_path / "manifest.csv"
    manifest_csv.write_text("old content\n", encoding="utf-8")

    write_manifest([track], [Exclusion("/x/._a", APPLEDOUBLE_REASON)], manifest_csv, tmp_path / "ex.csv")

    assert read_manifest(manifest_csv) == [track]


def test_read_manifest_errors_name_file_and_line(tmp_path: Path) -> None:
    missing = tmp_path / "missing_column.csv"
    missing.write_text("track_id,genre\nblues.00000,blues\n", encoding="utf-8")
    with pytest.raises(ValueError, match="missing_column.csv.*sha256"):
        read_manifest(missing)
    bad = tmp_path / "bad_rate.csv"
    bad.write_text("track_id,genre,path,duration_s,sample_rate,sha256\nblues.00000,blues,/a.wav,30.0,fast,ab\n")
    with pytest.raises(ValueError, match="bad_rate.csv, line 2"):
        read_manifest(bad)


@pytest.mark.parametrize("bad_id", ["opera.00001", "blues.1", "blues.00001.wav", ""])
def test_parse_track_id_rejects_bad_ids(bad_id: str) -> None:
    with pytest.raises(ValueError, match="track id"):
        parse_track_id(bad_id)


def test_parse_track_id_accepts_every_genre() -> None:
    assert [parse_track_id(f"{g}.00099") for g in GENRES] == [(g, 99) for g in GENRES]


@pytest.mark.skipif(not (MINI / "genres").is_dir(), reason="gtzan_mini not available")
def test_real_gtzan_files_decode_and_match_checksums() -> None:
    sums = {name: digest for digest, name in (line.split() for line in (MINI / "SHA256SUMS").read_text().splitlines())}
    for track_id in ["blues.00000", "jazz.00011", "rock.00009"]:
        genre = track_id.split(".")[0]
        path = MINI / "genres" / genre / f"{track_id}.wav"
        track = inspect_track(path, track_id)
        assert track.sample_rate == 22050 and 29.9 < track.duration_s < 30.5
        assert track.sha256 == sums[f"genres/{genre}/{track_id}.wav"]


def test_tracks_shorter_than_one_segment_are_excluded(tmp_path: Path) -> None:
    genres = tmp_path / "genres"
    write_noise(genres / "pop" / "pop.00000.wav")
    write_noise(genres / "pop" / "pop.00001.wav", duration_s=0.5)

    tracks, exclusions = build_manifest(tmp_path)

    assert [t.track_id for t in tracks] == ["pop.00000"]
    assert [Path(e.path).name for e in exclusions] == ["pop.00001.wav"]
    assert exclusions[0].reason.startswith("too short: 0.500 s")


def test_fifo_named_like_a_track_is_excluded_without_hanging(tmp_path: Path) -> None:
    """A FIFO (no writer: opening it would block forever) becomes an exclusion with its reason."""
    import threading

    write_noise(tmp_path / "genres" / "blues" / "blues.00000.wav")
    os.mkfifo(tmp_path / "genres" / "blues" / "blues.00001.wav")
    (tmp_path / "genres" / "rock").mkdir()
    (tmp_path / "genres" / "rock" / "rock.00000.wav").symlink_to("/dev/zero")
    result: list = []
    worker = threading.Thread(target=lambda: result.append(build_manifest(tmp_path)), daemon=True)
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive(), "build_manifest hung on a FIFO"
    tracks, exclusions = result[0]
    assert [t.track_id for t in tracks] == ["blues.00000"]
    reasons = {Path(e.path).name: e.reason for e in exclusions}
    assert reasons == {
        "blues.00001.wav": "not a regular file (a FIFO); not opened",
        "rock.00000.wav": "not a regular file (a character device); not opened",
    }


def test_label_list_keeps_gtzan_order_for_gtzan_and_sorts_other_labels() -> None:
    assert label_list(["rock", "blues", "rock"]) == GENRES  # a GTZAN subset: still the ten, in GTZAN's order
    assert label_list(["hum", "chirp", "hiss", "hum"]) == ("chirp", "hiss", "hum")
    assert label_list(["rock", "polka"]) == ("polka", "rock")
    assert label_list(["rock", "jazz"], gtzan=False) == ("jazz", "rock")  # a tagged library: the data's labels


def test_a_labels_file_declares_other_labels(tmp_path: Path) -> None:
    for name in ["hum.00000.wav", "chirp.00001.wav", "rock.00000.wav", "polka.00000.wav"]:
        write_noise(tmp_path / "sounds" / name)
    assert discover_tracks(tmp_path) == [tmp_path / "sounds" / "rock.00000.wav"]
    (tmp_path / "labels.txt").write_text("hum\n\nchirp\n")
    assert [p.name for p in discover_tracks(tmp_path)] == ["chirp.00001.wav", "hum.00000.wav"]
    tracks, _ = build_manifest(tmp_path)
    assert [(t.track_id, t.genre) for t in tracks] == [("chirp.00001", "chirp"), ("hum.00000", "hum")]
    (tmp_path / "labels.txt").write_text("Hum\n")
    with pytest.raises(ValueError, match="labels.txt.*Hum"):
        discover_tracks(tmp_path)
