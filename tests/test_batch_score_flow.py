"""batch-score-flow end to end on real tracks transcoded into every supported format, with broken files."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import av
import librosa
import mlflow
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from mlflow.tracking import MlflowClient

from crnn.audio import load_audio
from flows.batch_score_flow import batch_score_flow
from infra import registry, tags

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
TRACKS = ("blues.00000", "classical.00001", "metal.00002")
# suffix -> (libsndfile format, subtype, sample rate in Hz); all stereo
LIBSNDFILE = {
    ".aiff": ("AIFF", "PCM_16", 44100),
    ".au": ("AU", "PCM_16", 44100),
    ".flac": ("FLAC", "PCM_24", 44100),
    ".ogg": ("OGG", "VORBIS", 44100),
    ".opus": ("OGG", "OPUS", 48000),
    ".mp3": ("MP3", "MPEG_LAYER_III", 44100),
}
BROKEN = {
    "garbage.mp3": "cannot decode",
    "header-only.wav": "zero-length audio",
    "empty.flac": "zero-length file",
    "cover.jpg": "unsupported format .jpg",
    "too-short.wav": "shorter than min_segment_s",
    "corrupt.m4a": "cannot decode",
}


def _stereo(mono: np.ndarray, sr: int, rate: int) -> np.ndarray:
    """(time, 2) at ``rate``: the right channel a little quieter, so the mix-down is exercised."""
    y = librosa.resample(mono, orig_sr=sr, target_sr=rate) if rate != sr else mono
    return np.stack([y, 0.8 * y], axis=1).astype(np.float32)


def _write_libsndfile(path: Path, data: np.ndarray, rate: int, fmt: str, subtype: str) -> None:
    with sf.SoundFile(path, "w", rate, data.shape[1], subtype, format=fmt) as f:
        for i in range(0, len(data), 4096):  # block writes: one long Ogg write can crash libsndfile
            f.write(data[i : i + 4096])


def _write_m4a(path: Path, data: np.ndarray, rate: int) -> None:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=rate, layout="stereo")
        for i in range(0, len(data), 1024):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(data[i : i + 1024].T), format="fltp", layout="stereo"
            )
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def _transcode(src: Path, folder: Path) -> list[Path]:
    """``src`` as a mono 22.05 kHz WAV copy plus stereo 44.1/48 kHz copies in every other format."""
    mono, sr = sf.read(src, dtype="float32")
    stem = src.name.removesuffix(".wav")
    folder.mkdir(parents=True, exist_ok=True)
    out = [folder / f"{stem}.wav"]
    shutil.copy(src, out[0])
    for suffix, (fmt, subtype, rate) in LIBSNDFILE.items():
        out.append(folder / f"{stem}{suffix}")
        _write_libsndfile(out[-1], _stereo(mono, sr, rate), rate, fmt, subtype)
    out.append(folder / f"{stem}.m4a")
    _write_m4a(out[-1], _stereo(mono, sr, 44100), 44100)
    return out


def _broken(folder: Path, good_wav: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "garbage.mp3").write_bytes(os.urandom(4096))
    (folder / "header-only.wav").write_bytes(good_wav.read_bytes()[:44])
    (folder / "empty.flac").write_bytes(b"")
    (folder / "cover.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    sf.write(folder / "too-short.wav", np.zeros(2205, dtype=np.float32), 22050)
    (folder / "corrupt.m4a").write_bytes(b"\x00\x00\x00\x18ftypM4A " + os.urandom(2048))
    (folder / ".DS_Store").write_bytes(b"hidden: never listed")


@pytest.fixture(scope="module")
def library_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    mini = Path(os.environ.get("GENRE_CRNN_SHARED", ROOT.parent / "shared")) / "data" / "gtzan_mini" / "genres"
    if not mini.is_dir():
        pytest.skip(f"real data not found at {mini}")
    root = tmp_path_factory.mktemp("library")
    for track in TRACKS:
        _transcode(mini / track.split(".")[0] / f"{track}.wav", root / "music" / track.split(".")[0])
    _broken(root / "music" / "incoming", root / "music" / "blues" / "blues.00000.wav")
    return root / "music"


@pytest.fixture
def library(library_template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the transcoded library (tests tag and modify files)."""
    return Path(shutil.copytree(library_template, tmp_path / "music"))


def _score(library: Path, out: Path, **options) -> dict:
    return batch_score_flow(library=[str(library)], output_dir=str(out), **options)


def _rows(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "library.csv").set_index("path")


def test_every_format_is_scored_and_every_bad_file_has_a_reason(prefect_harness, use_champion, library, tmp_path):
    out = tmp_path / "scores"
    result = _score(library, out, timeline=True, parquet=True)

    assert result["model_version"] == "genre-crnn/1"
    assert result["counts"] == {"scored": 3 * 8, "unchanged": 0, "failed": len(BROKEN)}
    rows = _rows(out)
    assert len(rows) == 3 * 8 + len(BROKEN) and not any(".DS_Store" in p for p in rows.index)
    for name, reason in BROKEN.items():
        row = rows.loc[str(library / "incoming" / name)]
        assert row.status == "failed" and reason in row.reason, (name, row.reason)
    scored = rows[rows.status == "scored"]
    assert (scored.model_version == "genre-crnn/1").all() and scored.reason.isna().all()
    for track in TRACKS:
        same = scored[[Path(p).name.startswith(track + ".") for p in scored.index]]
        assert len(same) == 8
        probs = same[[c for c in same.columns if c.startswith("prob_")]].to_numpy()
        wav = same.loc[str(library / track.split(".")[0] / f"{track}.wav")]
        # Every codec, channel layout and rate gives about the same answer as the original WAV.
        assert np.abs(probs - probs[list(same.index).index(wav.name)]).max() < 0.15, track
        top_two = wav.top_k.split()[:2]  # the small test model's top genres can be close: allow either
        assert all(any(t.startswith(g + ":") for t in top_two) for g in same.genre), same.genre.to_dict()
        assert np.allclose(same.duration_s, 30.0, atol=0.1) and (same.n_segments == wav.n_segments).all()

    run_dir = out / "runs" / result["run_id"]
    assert {p.name for p in run_dir.iterdir()} == {"results.csv", "results.jsonl", "results.parquet", "timeline.csv"}
    jsonl = pd.read_json(run_dir / "results.jsonl", lines=True)
    first = jsonl[jsonl.status == "scored"].iloc[0]
    assert len(first.top_k) == 3 and first.top_k[0]["genre"] == first.genre
    assert len(first.timeline) == first.n_segments and first.timeline[-1]["end_s"] <= first.duration_s + 1e-6
    assert len(pd.read_parquet(run_dir / "results.parquet")) == len(rows)


def test_rerun_scores_only_new_or_changed_files(prefect_harness, use_champion, library, tmp_path):
    out = tmp_path / "scores"
    _score(library, out)
    again = _score(library, out)
    assert again["counts"] == {"scored": 0, "unchanged": 3 * 8 + len(BROKEN), "failed": 0}

    touched = library / "blues" / "blues.00000.flac"
    os.utime(touched, ns=(time.time_ns(), time.time_ns() + 10**9))  # new mtime, same bytes
    changed = library / "metal" / "metal.00002.wav"
    shutil.copy(library / "classical" / "classical.00001.wav", changed)  # new content
    shutil.copy(library / "blues" / "blues.00000.mp3", library / "incoming" / "new.mp3")
    third = _score(library, out)
    assert third["counts"] == {"scored": 2, "unchanged": 3 * 8 + len(BROKEN) - 1, "failed": 0}
    rows = _rows(out)
    assert rows.loc[str(changed)].genre == rows.loc[str(library / "classical" / "classical.00001.wav")].genre
    assert rows.loc[str(touched)].run_id != third["run_id"]  # not rescored, only its mtime recorded
    assert len(pd.read_csv(out / "runs" / third["run_id"] / "results.csv")) == 2

    retried = _score(library, out, retry_failed=True)
    assert retried["counts"] == {"scored": 0, "unchanged": 3 * 8 + 1, "failed": len(BROKEN)}


def test_a_new_champion_rescores_the_library(prefect_harness, use_champion, library, tmp_path):
    out = tmp_path / "scores"
    _score(library, out)
    client = MlflowClient()
    v1 = client.get_model_version_by_alias(registry.MODEL_NAME, "champion")
    v2 = mlflow.register_model(v1.source, registry.MODEL_NAME).version
    client.set_registered_model_alias(registry.MODEL_NAME, "champion", v2)
    try:
        result = _score(library, out)
    finally:
        client.set_registered_model_alias(registry.MODEL_NAME, "champion", v1.version)
    assert result["model_version"] == f"genre-crnn/{v2}"
    assert result["counts"]["scored"] == 3 * 8 and result["counts"]["unchanged"] == 0
    assert (_rows(out).model_version == f"genre-crnn/{v2}").all()
    # The old version's rows stay in the store: pinning v1 again costs nothing.
    pinned = _score(library, out, model_uri="models:/genre-crnn/1")
    assert pinned["counts"]["scored"] == 0 and pinned["model_version"] == "genre-crnn/1"


def test_genre_tags_are_written_only_on_request_and_never_touch_the_audio(
    prefect_harness, use_champion, library, tmp_path
):
    out = tmp_path / "scores"
    audio = {p: load_audio(p, 22050) for p in library.rglob("*.*") if p.parent.name == "metal"}
    dry = _score(library, out, tags="dry-run")
    assert dry["counts"]["scored"] == 3 * 8
    assert all(tags.read_genre(p) is None for p in audio if p.suffix != ".au")  # dry run wrote nothing

    written = _score(library, out, tags="write")
    assert written["counts"]["scored"] == 0  # tagging changes size and mtime, not what needs scoring
    rows = _rows(out)
    for path, before in audio.items():
        row = rows.loc[str(path)]
        if path.suffix == ".au":
            assert row.tag_status.startswith("skipped:") and "no tag support" in row.tag_status
            continue
        if row.uncertain:
            assert row.tag_status.startswith("skipped: uncertain")
            continue
        assert tags.read_genre(path) == tags.GENRE_TAG_VALUES[row.genre] and row.tag_status.startswith("written")
        assert np.array_equal(load_audio(path, 22050), before), path
    assert not [p for p in library.rglob("*") if ".tagging-" in p.name]
    assert _score(library, out)["counts"]["scored"] == 0


def test_killed_run_resumes_where_it_stopped(use_champion, library, tmp_path):
    out = tmp_path / "scores"
    cmd = [sys.executable, str(ROOT / "typer_cli.py"), "score", "--library", str(library), "--output-dir", str(out)]
    env = os.environ | {"PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    proc = subprocess.Popen([*cmd, "--chunk-size", "4"], cwd=ROOT, env=env, start_new_session=True)
    store = out / "library.sqlite"
    deadline = time.monotonic() + 240
    done_before = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if store.exists():
            with sqlite3.connect(store, timeout=10) as db:
                try:
                    done_before = db.execute("SELECT COUNT(*) FROM files").fetchone()[0]
                except sqlite3.OperationalError:
                    done_before = 0
            if done_before >= 8:
                break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    with sqlite3.connect(store, timeout=10) as db:
        done_before = db.execute("SELECT COUNT(*) FROM files").fetchone()[0]
    assert 8 <= done_before < 3 * 8 + len(BROKEN), "kill the run part-way"

    finished = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    rows = _rows(out)
    assert len(rows) == 3 * 8 + len(BROKEN)
    with sqlite3.connect(store) as db:
        first_run = db.execute(
            "SELECT COUNT(*) FROM files WHERE run_id = (SELECT run_id FROM runs ORDER BY started_at LIMIT 1)"
        ).fetchone()[0]
    assert first_run == done_before  # nothing the killed run finished was scored again


def test_s3_library(prefect_harness, use_champion, library, tmp_path, monkeypatch):
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            monkeypatch.setenv(key, "testing")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        import boto3

        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="music")
        for path in [
            library / "blues" / "blues.00000.mp3",
            library / "blues" / "blues.00000.m4a",
            library / "incoming" / "garbage.mp3",
        ]:
            s3.upload_file(str(path), "music", f"lib/{path.parent.name}/{path.name}")
        out = tmp_path / "scores"
        first = batch_score_flow(library=["s3://music/lib"], output_dir=str(out))
        assert first["counts"] == {"scored": 2, "unchanged": 0, "failed": 1}
        rows = _rows(out)
        assert set(rows.index) == {
            "s3://music/lib/blues/blues.00000.mp3",
            "s3://music/lib/blues/blues.00000.m4a",
            "s3://music/lib/incoming/garbage.mp3",
        }
        assert batch_score_flow(library=["s3://music/lib"], output_dir=str(out))["counts"]["scored"] == 0
    finally:
        server.stop()


def test_mlflow_run_score_entry_point(use_champion, library, tmp_path):
    """`mlflow run . -e score --env-manager local` labels a library through the MLproject."""
    out = tmp_path / "scores"
    env = os.environ | {
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",  # the MLproject command runs `python`
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    cmd = [sys.executable, "-m", "mlflow", "run", str(ROOT), "-e", "score", "--env-manager", "local"]
    cmd += ["-P", f"library={library / 'classical'}", "-P", f"output_dir={out}", "-P", "top_k=2"]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = _rows(out)
    assert len(rows) == 8 and (rows.status == "scored").all()
    assert all(len(t.split()) == 2 for t in rows.top_k)
