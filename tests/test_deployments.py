"""Both deployments against a real `prefect server`: a process work pool with a worker, and `serve`."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import requests
from mlflow.tracking import MlflowClient

from crnn import GENRES

pytestmark = [pytest.mark.slow, pytest.mark.server]
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _process(cmd: list[str], env: dict, log: Path) -> Iterator[subprocess.Popen]:
    """Run ``cmd`` in its own process group for the duration of the block; kill the whole group after."""
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield proc
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A `prefect server start` on a free loopback port with its own home; yields the environment that reaches it."""
    home = tmp_path_factory.mktemp("prefect-server")
    port = _free_port()
    env = os.environ | {
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
        "PATH": f"{BIN}:{os.environ['PATH']}",
    }
    cmd = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with _process(cmd, env, home / "server.log") as server:
        deadline = time.monotonic() + 180
        while True:
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"http://127.0.0.1:{port}/api/health", timeout=2).ok:
                    break
            assert server.poll() is None, (home / "server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "prefect server did not start in 180 s"
            time.sleep(1)
        yield env


@pytest.fixture(scope="module")
def stack(prefect_server: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Paths and environment for a train -> score round trip: a 3-tracks-per-genre slice, a music folder, MLflow in SQLite."""
    mini = Path(os.environ.get("GENRE_CRNN_SHARED", ROOT.parent / "shared")) / "data" / "gtzan_mini" / "genres"
    if not mini.is_dir():
        pytest.skip(f"real data not found at {mini}")
    root = tmp_path_factory.mktemp("deployments")
    for genre in GENRES:
        (root / "slice" / "genres" / genre).mkdir(parents=True)
        for src in sorted((mini / genre).glob("*.wav"))[:3]:
            (root / "slice" / "genres" / genre / src.name).symlink_to(src)
    (root / "music").mkdir()
    for name in ("rock/rock.00009.wav", "jazz/jazz.00008.wav"):
        (root / "music" / Path(name).name).symlink_to(mini / name)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    # Artifacts under tmp: deployment runs work in the checkout, whose ./mlartifacts must stay clean.
    MlflowClient(uri).create_experiment("genre-crnn", artifact_location=(root / "artifacts").as_uri())
    env = prefect_server | {"MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri}
    return {"root": root, "env": env}


def _cli(env: dict, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _run_deployment(env: dict, name: str, *params: str) -> str:
    done = _cli(env, str(BIN / "prefect"), "deployment", "run", name, *params, "--watch", "--watch-timeout", "500")
    assert "Completed" in done.stdout + done.stderr
    return done.stdout


def test_deployments_on_a_process_work_pool(stack: dict) -> None:
    env, root = stack["env"], stack["root"]
    _cli(env, sys.executable, "typer_cli.py", "deploy", "--library", str(root / "music"), "--output-dir",
         str(root / "scores"), "--pool", "ci-pool", "--name", "ci", "--train-source", str(root / "slice"))  # fmt: skip
    inspect = _cli(env, str(BIN / "prefect"), "deployment", "inspect", "batch-score-flow/ci").stdout
    assert "'cron': '0 2 * * *'" in inspect and "ci-pool" in inspect
    train = "".join(_cli(env, str(BIN / "prefect"), "deployment", "inspect", "train-flow/ci").stdout.split())
    assert "'parameters':{'request':{'source':" in train  # the deployment's part of the request
    assert "Maximumnumberofepochs(earlystoppingonval/loss)." in train  # the run form's help, from the request

    with _process([str(BIN / "prefect"), "worker", "start", "--pool", "ci-pool"], env, root / "worker.log"):
        # a partial request: the deployment's source (--train-source) stays
        _run_deployment(env, "train-flow/ci", "--param", f'request={{"epochs": 1, "work_dir": "{root / "work"}"}}')
        champion = MlflowClient(
            env["MLFLOW_TRACKING_URI"], registry_uri=env["MLFLOW_REGISTRY_URI"]
        ).get_model_version_by_alias("genre-crnn", "champion")
        assert str(champion.version) == "1"
        _run_deployment(
            env, "batch-score-flow/ci", "--params", '{"request": {"top_k": 2}}'
        )  # library: the deployment's

    rows = pd.read_csv(root / "scores" / "library.csv")
    assert len(rows) == 2 and (rows.status == "scored").all() and (rows.model_version == "genre-crnn/1").all()
    assert all(len(t.split()) == 2 for t in rows.top_k)


def test_served_deployment(stack: dict) -> None:
    env, root = stack["env"], stack["root"]
    if not (root / "scores").exists():
        pytest.skip("needs the champion trained by test_deployments_on_a_process_work_pool")
    serve = [sys.executable, "typer_cli.py", "serve", "--library", str(root / "music"), "--output-dir",
             str(root / "served"), "--name", "served"]  # fmt: skip
    with _process(serve, env, root / "serve.log"):
        deadline = time.monotonic() + 120
        while "batch-score-flow/served" not in _cli(env, str(BIN / "prefect"), "deployment", "ls").stdout:
            assert time.monotonic() < deadline, (root / "serve.log").read_text()[-3000:]
            time.sleep(2)
        _run_deployment(env, "batch-score-flow/served", "--param", 'request={"timeline": true}')
    rows = pd.read_json(root / "served" / "library.jsonl", lines=True)
    assert len(rows) == 2 and all(len(t) == n for t, n in zip(rows.timeline, rows.n_segments))
