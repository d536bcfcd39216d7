"""End-to-end (issue 13's Done-when): train on a tagged library through README's commands, then fill in missing tags.

A library of gtzan_mini tracks transcoded to MP3/FLAC/M4A with messy genre tags and artist tags is
trained on with a label map, the model is registered, and an untagged copy is scored with
``--tags fill-missing``: labels come from the map, no artist is in two splits, the untagged files
get a genre and the tagged files keep every byte.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import mutagen
import pandas as pd
import pytest

from crnn.audio import load_audio
from crnn.labelmap import load_label_map
from crnn.tagged import read_file_tags
from tests.conftest import ROOT, readme_command, user_shell_env
from tests.crnn.test_fma import TRACKS_CSV, audio
from tests.tagged_audio import SAMPLE_RATE, set_tags, song, write_samples

RAW = {  # label -> the messy spellings its tracks carry (and the label map lists)
    "blues": ["Blues", "blues", "Delta Blues"],
    "classical": ["Classical", "classical music", "Klassik"],
    "metal": ["Metal", "Heavy Metal", "METAL"],
    "reggae": ["Reggae", "Roots Reggae", "reggae"],
}
LABEL_MAP = "".join(f"{label} = {values}\n".replace("'", '"') for label, values in RAW.items())
FORMATS = (".mp3", ".flac", ".m4a")


def _run(command: str, tmp_path: Path, api: str) -> str:
    """Run a README command line in a user's shell (no venv activated); return its stdout and stderr."""
    env = user_shell_env(PREFECT_HOME=str(tmp_path / "prefect"), PREFECT_API_URL=api)
    done = subprocess.run(["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return done.stdout + done.stderr


def _readme(fragment: str, library: Path, label_map: Path) -> str:
    return readme_command(fragment).replace("~/Music", str(library)).replace("labels.toml", str(label_map))


@pytest.fixture
def tagged_library(gtzan_mini: Path, tmp_path: Path) -> Path:
    """4 genres x 6 tracks (4 s of each), 3 artists per genre, in MP3/FLAC/M4A; plus a polka and an untagged file."""
    root = tmp_path / "Music"
    for label, spellings in RAW.items():
        for n in range(6):
            y = load_audio(gtzan_mini / label / f"{label}.{n:05d}.wav", SAMPLE_RATE)[
                10 * SAMPLE_RATE : 14 * SAMPLE_RATE
            ]
            artist = f"{label.title()} Artist {n // 2}"
            path = root / artist / f"{n:02d}{FORMATS[n % 3]}"
            write_samples(path, y)
            set_tags(path, genre=spellings[n % 3], artist=artist if n % 2 else artist.upper())  # case: one artist
    song(root / "Polka Kings/01.mp3", genre="Polka", artist="Polka Kings", seconds=4)
    song(root / "Unsorted/01.flac", seconds=4)
    (tmp_path / "labels.toml").write_text(LABEL_MAP)
    return root


@pytest.mark.slow
def test_train_on_tagged_library_then_fill_missing_tags(
    mlflow_store, prefect_api: str, tagged_library: Path, tmp_path: Path
) -> None:
    label_map, work = tmp_path / "labels.toml", tmp_path / "work"
    train = _readme("train --source ~/Music --source-layout tags", tagged_library, label_map)
    _run(f"{train} --work-dir {work} --epochs 1 --patience 1 --batch-size 16", tmp_path, prefect_api)

    manifest = pd.read_csv(next(work.glob("manifests/*/manifest.csv")))
    assert len(manifest) == 24 and set(manifest["genre"]) == set(RAW)  # labels from the map
    reasons = set(pd.read_csv(next(work.glob("manifests/*/exclusions.csv")))["reason"])
    assert reasons == {"genre 'Polka' is not in the label map", "no genre tag"}
    (table,) = work.glob("manifests/*/split-grouped-stratified-*.csv")
    split = pd.read_csv(table)
    assert split["group"].nunique() == 12 and split.groupby("group")["split"].nunique().max() == 1  # artist-aware
    from mlflow.tracking import MlflowClient

    champion = MlflowClient().get_model_version_by_alias("genre-crnn", "champion")
    assert champion.tags["labels"] == '["blues", "classical", "metal", "reggae"]'

    copy = tmp_path / "Copy"
    shutil.copytree(tagged_library, copy)
    untagged = sorted(copy.glob("*/0[0-2].*"))  # tracks 0-2 of every artist's folder lose their tags
    for path in untagged:
        f = mutagen.File(path)
        f.delete()
        f.save() if path.suffix != ".mp3" else None
    assert all(read_file_tags(p).genre is None for p in untagged)
    tagged = {p: p.read_bytes() for p in copy.rglob("*.*") if p not in untagged}
    score = _readme("score --library ~/Music --tags fill-missing", copy, label_map)
    _run(f"{score} --output-dir {tmp_path / 'scores'} --uncertain-below 0", tmp_path, prefect_api)

    labels = load_label_map(label_map)
    for path in untagged:
        assert labels.label_for(read_file_tags(path).genre) in RAW, path  # tagged now, with a label of the model
    assert all(p.read_bytes() == data for p, data in tagged.items())  # tagged files untouched


def test_readme_downloads_of_a_tagged_library_and_of_fma(prefect_api: str, tmp_path: Path) -> None:
    """README's two `download` lines (one shell, one start-up cost): a tagged library's exclusions, FMA's official split."""
    library, label_map, fma = tmp_path / "Music", tmp_path / "labels.toml", tmp_path / "fma"
    for n in range(2):
        song(library / f"A{n}/01.mp3", genre="Hip Hop", artist=f"A{n}", freq_hz=300 + 50 * n)
    song(library / "B/01.flac", genre="Polka", artist="B")
    label_map.write_text('hiphop = ["Hip-Hop"]\n')
    (fma / "fma_metadata").mkdir(parents=True)
    (fma / "fma_metadata" / "tracks.csv").write_text(TRACKS_CSV)
    for n, track_id in enumerate((2, 3, 5, 140, 141)):
        audio(fma, track_id, 200 + 50 * n)
    tagged = _readme("download --source ~/Music --source-layout tags", library, label_map)
    fma_line = readme_command("--source-layout fma").replace("data/fma", str(fma))
    options = "--min-tracks-per-label 2 --work-dir"
    _run(f"{tagged} {options} {tmp_path / 'w1'} && {fma_line} {options} {tmp_path / 'w2'}", tmp_path, prefect_api)
    reasons = pd.read_csv(next((tmp_path / "w1").glob("manifests/*/exclusions.csv")))["reason"]
    assert list(reasons) == ["genre 'Polka' is not in the label map"]
    reasons = pd.read_csv(next((tmp_path / "w2").glob("manifests/*/exclusions.csv")))["reason"]
    assert list(reasons) == ["listed in tracks.csv (small) but missing"] * 3  # tracks 10, 134 and 148

    manifest = pd.read_csv(next((tmp_path / "w1").glob("manifests/*/manifest.csv")))
    assert list(manifest["track_id"]) == ["A0/01.mp3", "A1/01.mp3"] and set(manifest["genre"]) == {"hiphop"}
    manifest = pd.read_csv(next((tmp_path / "w2").glob("manifests/*/manifest.csv")))
    assert dict(zip(manifest["track_id"], manifest["official_split"])) == {
        "fma_small/000/000002.mp3": "train",
        "fma_small/000/000003.mp3": "train",
        "fma_small/000/000005.mp3": "test",
        "fma_small/000/000140.mp3": "val",
        "fma_small/000/000141.mp3": "test",
    }
    assert set(manifest["genre"]) == {"hiphop", "folk"}
