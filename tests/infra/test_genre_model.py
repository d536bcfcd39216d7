"""The served model: waveforms always, server paths only under GENRE_CRNN_SERVE_ROOT, one-line 400s for bad input."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from crnn.config import PipelineConfig
from crnn.inference import build_model, checkpoint_state
from crnn.train import save_checkpoint
from infra.genre_model import SERVE_ROOT_ENV, GenreModel, InvalidModelInput, paths_allowed

RATE = 16000
TONE = (0.1 * np.sin(2 * np.pi * 440 * np.arange(4 * RATE) / RATE)).tolist()


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    """A random crnn-attention checkpoint (the model's answers do not matter here, only what it opens)."""
    cfg = PipelineConfig.from_options(architecture="crnn-attention")
    path = tmp_path / "model.pt"
    save_checkpoint(checkpoint_state(build_model(cfg).eval(), cfg), path)
    return path


@pytest.fixture
def music(tmp_path: Path, write_tone) -> Path:
    """A served folder with one tone, a symlink out of it, and a secret file beside it."""
    root = tmp_path / "music"
    write_tone("music/tone.wav", 440.0, seconds=4.0)
    (tmp_path / "secret.wav").write_bytes((root / "tone.wav").read_bytes())
    (root / "escape.wav").symlink_to(tmp_path / "secret.wav")
    return root


@pytest.fixture
def model(checkpoint: Path, monkeypatch) -> GenreModel:
    monkeypatch.delenv(SERVE_ROOT_ENV, raising=False)
    m = GenreModel()
    m.load_context(SimpleNamespace(artifacts={"checkpoint": str(checkpoint)}))
    return m


def _paths(*paths: str) -> pd.DataFrame:
    return pd.DataFrame({"path": list(paths)})


def test_waveforms_are_scored_and_paths_refused_without_a_root(model: GenreModel, music: Path) -> None:
    out = model.predict(None, pd.DataFrame({"waveform": [TONE], "sample_rate": [RATE]}))
    assert out["genre"].iloc[0] in model.genres and out.filter(like="prob_").sum(axis=1).iloc[0] == pytest.approx(1)
    with pytest.raises(InvalidModelInput, match=f"row 0: 'path' input is disabled.*{SERVE_ROOT_ENV}=<folder>"):
        model.predict(None, _paths(str(music / "tone.wav")))


def test_paths_resolve_inside_the_root_only(model: GenreModel, music: Path, monkeypatch) -> None:
    monkeypatch.setenv(SERVE_ROOT_ENV, str(music))
    assert len(model.predict(None, _paths(str(music / "tone.wav"), "tone.wav"))) == 2  # absolute, or relative to it
    for outside in ("/etc/passwd", str(music / ".." / "secret.wav"), "../secret.wav", str(music / "escape.wav")):
        with pytest.raises(
            InvalidModelInput, match=f"row 0: path .* is outside the folder that {SERVE_ROOT_ENV} allows$"
        ):
            model.predict(None, _paths(outside))
    (music / "notes.txt").write_text("not audio")
    with pytest.raises(InvalidModelInput, match="row 0: .*notes.txt: "):
        model.predict(None, _paths("notes.txt"))


def test_paths_allowed_lets_in_process_callers_score_their_files(model: GenreModel, music: Path) -> None:
    with paths_allowed():
        assert len(model.predict(None, _paths(str(music / "tone.wav")))) == 1
    assert SERVE_ROOT_ENV not in os.environ  # restored


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"waveform": [[np.nan] * RATE], "sample_rate": [RATE]}, "non-finite samples"),
        ({"waveform": [[]], "sample_rate": [RATE]}, "non-empty list of mono samples"),
        ({"waveform": [TONE[:100]], "sample_rate": [RATE]}, "shorter than min_segment_s"),
        ({"sample_rate": [RATE]}, "needs either 'path' or both 'waveform' and 'sample_rate'"),
    ],
)
def test_bad_waveforms_are_one_line_input_errors(model: GenreModel, row: dict, reason: str) -> None:
    with pytest.raises(InvalidModelInput, match=reason) as info:
        model.predict(None, pd.DataFrame(row))
    assert info.value.get_http_status_code() == 400 and "\n" not in info.value.message
    info.value.message = "Failed to predict data '<the whole input>'. \nError: ..."  # what the scoring server does
    assert reason in info.value.message and "\n" not in info.value.serialize_as_json()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_mlflow_models_serve_answers_waveforms_and_refuses_server_paths(mlflow_store, checkpoint, music, tmp_path):
    """A real `mlflow models serve --env-manager local`: a waveform (200), /etc/passwd and a symlink escape
    (400, one line, no traceback), a file under GENRE_CRNN_SERVE_ROOT (200)."""
    import mlflow
    import requests

    from crnn import GENRES
    from infra import registry

    with mlflow.start_run() as run:
        pass
    local = mlflow.artifacts.download_artifacts(
        registry.log_model(run.info.run_id, checkpoint, GENRES), dst_path=str(tmp_path / "served")
    )
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != SERVE_ROOT_ENV} | {SERVE_ROOT_ENV: str(music)}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])  # uvicorn, as activated
    mlflow_cli = [sys.executable, "-m", "mlflow", "models", "serve", "-m", local, "--env-manager", "local"]
    server = subprocess.Popen(
        [*mlflow_cli, "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )  # fmt: skip; its own process group: uvicorn's workers stop with it
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{url}/ping", timeout=2).ok:
                    break
            except requests.ConnectionError:
                assert server.poll() is None, server.stderr.read()[-3000:]
            time.sleep(0.5)

        def invoke(columns: list[str], row: list) -> requests.Response:
            body = {"dataframe_split": {"columns": columns, "data": [row]}}
            return requests.post(f"{url}/invocations", json=body, timeout=60)

        ok = invoke(["waveform", "sample_rate"], [TONE, RATE])
        assert ok.status_code == 200, ok.text
        assert ok.json()["predictions"][0]["genre"] in GENRES
        for outside in ("/etc/passwd", str(music / "escape.wav")):
            refused = invoke(["path"], [outside])
            assert refused.status_code == 400
            error = refused.json()
            assert error["error_code"] == "INVALID_PARAMETER_VALUE" and "stack_trace" not in error
            assert error["message"] == f"row 0: path {outside!r} is outside the folder that {SERVE_ROOT_ENV} allows"
            assert "Traceback" not in refused.text and "root:" not in refused.text  # nor /etc/passwd's lines
        inside = invoke(["path"], [str(music / "tone.wav")])
        assert inside.status_code == 200, inside.text
        print(json.dumps({"served_in_root": inside.json()["predictions"][0]["genre"]}))
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
