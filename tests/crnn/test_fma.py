"""The FMA source: a synthetic tracks.csv in FMA's exact three-row header layout, with synthetic MP3s."""

from __future__ import annotations

from pathlib import Path

import pytest

from crnn.config import SplitConfig
from crnn.fma import read_tracks_csv
from crnn.layouts import build_layout_manifest, detect_layout
from crnn.splits import assign_split
from tests.tagged_audio import song

# Like FMA's fma_metadata/tracks.csv: two rows of column names (a 2-level MultiIndex), then the index name.
TRACKS_CSV = """\
,album,album,artist,artist,set,set,track,track,track
,id,title,bio,name,split,subset,genre_top,genres,title
track_id,,,,,,,,,
2,1,AWOL - A Way Of Life,"<p>A Way Of Life, A Collective of Hip-Hop
from the UK</p>",AWOL,training,small,Hip-Hop,[21],Food
3,1,AWOL - A Way Of Life,,AWOL,training,small,Hip-Hop,[21],Electric Ave
5,1,AWOL - A Way Of Life,,AWOL,test,small,Hip-Hop,[21],This World
10,6,Constant Hitmaker,,Kurt Vile,training,small,Pop,[10],Freeway
20,4,Niris,,Nicky Cook,training,medium,Pop,[10],Spiritual Level
134,1,AWOL - A Way Of Life,,AWOL,training,small,,[21],Street Music
140,61,Constant Hitmaker,,Alec K. Redfearn,validation,small,Folk,[17],Queen Of The Wires
141,60,Every Man For Himself,,Alec K. Redfearn,test,small,Folk,[17],Ohio
148,66,Untitled,,Amoebic Ensemble,training,small,Experimental,[1],Hangman
"""


def audio(root: Path, track_id: int, freq_hz: float, subset: str = "small") -> Path:
    return song(root / f"fma_{subset}" / f"{track_id // 1000:03d}" / f"{track_id:06d}.mp3", freq_hz=freq_hz)


@pytest.fixture
def fma(tmp_path: Path) -> Path:
    root = tmp_path / "fma"
    (root / "fma_metadata").mkdir(parents=True)
    (root / "fma_metadata" / "tracks.csv").write_text(TRACKS_CSV)
    for n, track_id in enumerate((2, 3, 5, 10, 20, 134, 140, 141)):  # 148 is listed but has no file
        audio(root, track_id, 200 + 50 * n)
    return root


def test_tracks_csv_reads_with_pandas_two_level_header(fma: Path) -> None:
    meta = read_tracks_csv(fma / "fma_metadata" / "tracks.csv")
    assert list(meta.index) == [2, 3, 5, 10, 20, 134, 140, 141, 148]
    assert meta.loc[2, "genre"] == "Hip-Hop" and meta.loc[140, "split"] == "validation"
    assert meta.loc[2, "artist"] == "AWOL"


def test_fma_source_labels_splits_and_exclusions(fma: Path) -> None:
    assert detect_layout(fma) == "fma"
    layout, tracks, excluded = build_layout_manifest(fma, layout="auto", label_map=None, min_tracks=2)
    assert layout == "fma"
    assert {t.track_id: (t.genre, t.official_split) for t in tracks} == {
        "fma_small/000/000002.mp3": ("hiphop", "train"),
        "fma_small/000/000003.mp3": ("hiphop", "train"),
        "fma_small/000/000005.mp3": ("hiphop", "test"),
        "fma_small/000/000140.mp3": ("folk", "val"),
        "fma_small/000/000141.mp3": ("folk", "test"),
    }
    assert {t.group for t in tracks} == {"artist:awol", "artist:alec k. redfearn"}
    reasons = {Path(e.path).name: e.reason for e in excluded}
    assert reasons == {
        "000010.mp3": "label 'pop' has 1 tracks, under the minimum of 2",
        "000020.mp3": "not in the small subset of tracks.csv",
        "000134.mp3": "no top-level genre (track/genre_top) in tracks.csv",
        "000148.mp3": "listed in tracks.csv (small) but missing",
    }
    ids = [t.track_id for t in tracks]
    method, mapping = assign_split(
        ids, [t.genre for t in tracks], SplitConfig(), groups=[t.group for t in tracks],
        official=[t.official_split for t in tracks],
    )  # fmt: skip
    assert method == "official" and mapping == {t.track_id: t.official_split for t in tracks}


def test_the_medium_folder_holds_small_and_medium_tracks(fma: Path) -> None:
    (fma / "fma_small").rename(fma / "fma_medium")
    _, tracks, _ = build_layout_manifest(fma, layout="fma", label_map=None, min_tracks=2)
    assert "fma_medium/000/000020.mp3" in {t.track_id for t in tracks}  # medium; Pop now has 2 tracks


def test_a_csv_without_fma_headers_is_an_error_naming_the_file(fma: Path) -> None:
    (fma / "fma_metadata" / "tracks.csv").write_text("track_id,genre_top\n2,Hip-Hop\n")
    with pytest.raises(ValueError, match="tracks.csv"):
        build_layout_manifest(fma, layout="fma", label_map=None, min_tracks=1)
