"""The native team stack (infra/stack.py): MLflow on PostgreSQL + S3, Prefect on PostgreSQL with a worker, Dask.

One stack is started for the module on free loopback ports and torn down afterwards, even when a
test fails. The flows run as users run them: the CLI in a subprocess, pointed at the stack by
``MLFLOW_TRACKING_URI`` and ``PREFECT_API_URL`` only (no S3 credentials on the client side). The
restart test runs README's ``make stack-down`` / ``make stack-up`` on that stack and reads back what
was stored before.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg2
import pytest
from mlflow.tracking import MlflowClient

from crnn import GENRES
from infra import screenshot
from infra import stack as native_stack
from infra.storage import s3_client
from tests.conftest import readme_command, user_shell_env

pytestmark = [pytest.mark.slow, pytest.mark.server, pytest.mark.integration]
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MINI = Path(os.environ.get("GENRE_CRNN_SHARED", ROOT.parent / "shared")) / "data" / "gtzan_mini" / "genres"
LOGS: list[Path] = []


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    if not MINI.is_dir():
        pytest.skip(f"real data not found at {MINI}")
    root = tmp_path_factory.mktemp("stack")
    try:
        client = native_stack.up(root / "stack")
        data = tmp_path_factory.mktemp("data")
        for genre in GENRES:
            (data / "slice" / "genres" / genre).mkdir(parents=True)
            for src in sorted((MINI / genre).glob("*.wav"))[:3]:
                (data / "slice" / "genres" / genre / src.name).symlink_to(src)
        (data / "music").mkdir()
        for name in ("rock/rock.00009.wav", "jazz/jazz.00008.wav", "disco/disco.00007.wav", "pop/pop.00006.wav"):
            (data / "music" / Path(name).name).symlink_to(MINI / name)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_", "AWS_"))}
        env |= client | {"PREFECT_HOME": str(root / "client-prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
        yield {
            "root": root,
            "data": data,
            "env": env,
            "secrets": native_stack._secrets(root / "stack"),
            "pids": dict(native_stack._state(root / "stack")["pids"]),
        }
    finally:
        native_stack.down(root / "stack", purge=True)


def _cli(st: dict, name: str, *args: str, env: dict[str, str] | None = None) -> str:
    """Run a command with the client environment (or ``env``); its output is kept for the credential check."""
    done = subprocess.run(args, cwd=ROOT, env=env or st["env"], capture_output=True, text=True, timeout=900)
    log = st["root"] / f"{name}.log"
    log.write_text(done.stdout + done.stderr)
    LOGS.append(log)
    assert done.returncode == 0, f"{args}\n{(done.stdout + done.stderr)[-4000:]}"
    return done.stdout + done.stderr


def _score(st: dict, name: str, *extra: str) -> pd.DataFrame:
    out = st["data"] / name
    _cli(st, name, sys.executable, "typer_cli.py", "score", "--library", str(st["data"] / "music"),
         "--output-dir", str(out), *extra)  # fmt: skip
    return pd.read_csv(out / "library.csv").set_index("path").sort_index()


def test_train_registers_through_the_server_with_artifacts_in_s3_and_scoring_loads_it(stack) -> None:
    st = stack
    _cli(st, "train", sys.executable, "typer_cli.py", "train", "--source", str(st["data"] / "slice"),
         "--work-dir", str(st["data"] / "work"), "--epochs", "1")  # fmt: skip
    client = MlflowClient(st["env"]["MLFLOW_TRACKING_URI"], registry_uri=st["env"]["MLFLOW_TRACKING_URI"])
    champion = client.get_model_version_by_alias("genre-crnn", "champion")
    assert str(champion.version) == "1"

    credentials = {k: st["secrets"][k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    s3 = s3_client(
        endpoint_url=st["env"]["AWS_ENDPOINT_URL"], credentials=credentials | {"AWS_DEFAULT_REGION": "us-east-1"}
    )
    keys = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket="mlflow")
        for o in page.get("Contents", [])
    ]
    assert any(k.endswith("/MLmodel") for k in keys) and any(k.endswith("best.pt") for k in keys)
    assert any(k.endswith("confusion_matrix.png") for k in keys)

    rows = _score(st, "scores")
    assert len(rows) == 4 and (rows.status == "scored").all() and (rows.model_version == "genre-crnn/1").all()


def test_deployment_runs_on_the_postgres_backed_prefect_server(stack) -> None:
    st = stack
    if (
        MlflowClient(
            st["env"]["MLFLOW_TRACKING_URI"], registry_uri=st["env"]["MLFLOW_TRACKING_URI"]
        ).search_registered_models()
        == []
    ):
        pytest.skip("needs the champion of the first test")
    out = st["data"] / "deployed"
    _cli(st, "deploy", sys.executable, "typer_cli.py", "deploy", "--library", str(st["data"] / "music"),
         "--output-dir", str(out), "--name", "stack")  # fmt: skip
    text = _cli(st, "deployment-run", str(BIN / "prefect"), "deployment", "run", "batch-score-flow/stack",
                "--watch", "--watch-timeout", "600")  # fmt: skip
    assert "Completed" in text
    assert len(pd.read_csv(out / "library.csv")) == 4


def test_dask_runner_gives_the_default_runners_results(stack) -> None:
    st = stack
    default = st["data"] / "scores" / "library.csv"  # the first test's `score`: the default runner, same champion
    if not default.is_file():
        pytest.skip("needs the champion and the scores of the first test")
    threads = pd.read_csv(default).set_index("path").sort_index()
    dask = _score(st, "dask", "--dask", "local:2")
    assert list(threads.index) == list(dask.index) and (threads.genre == dask.genre).all()
    probs = [c for c in threads.columns if c.startswith("prob_")]
    assert np.allclose(threads[probs].to_numpy(), dask[probs].to_numpy(), atol=1e-3)


def test_the_prefect_ui_is_told_where_the_api_listens(stack) -> None:
    api = stack["env"]["PREFECT_API_URL"]
    with urllib.request.urlopen(f"{api.removesuffix('/api')}/ui-settings", timeout=30) as r:
        assert json.load(r)["api_url"] == api


def test_the_readme_screenshot_of_the_flow_runs_page_shows_runs(stack) -> None:
    st = stack
    try:
        screenshot.browser()
    except screenshot.ScreenshotError as err:
        pytest.skip(str(err))
    flow = "from prefect import flow\n\n@flow(name='screenshot-check')\ndef f():\n    pass\n\nf()"
    _cli(st, "screenshot-flow", sys.executable, "-c", flow)
    out = st["root"] / "runs.png"
    command = readme_command("-m infra.screenshot").replace("prefect-runs.png", str(out))
    _cli(st, "screenshot", "bash", "-c", command, env=user_shell_env(PREFECT_API_URL=st["env"]["PREFECT_API_URL"]))
    png = out.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == (screenshot.WIDTH, screenshot.HEIGHT)  # IHDR: width, height
    page = screenshot.rendered_dom(st["env"]["PREFECT_API_URL"].removesuffix("/api") + "/runs")
    assert "screenshot-check" in page and "Completed" in page  # the run, listed with its state
    assert "connect to Server API" not in page


def _ps(pid: int) -> str:
    """``ps``'s line for ``pid`` (state, parent, command), for a failure message."""
    return subprocess.run(
        ["ps", "-o", "stat=,ppid=,etime=,args=", "-p", str(pid)], capture_output=True, text=True
    ).stdout


def _objects(st: dict) -> dict[str, tuple[int, str]]:
    """Every object of the stack's bucket: key -> (size in bytes, ETag)."""
    credentials = {k: st["secrets"][k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    s3 = s3_client(
        endpoint_url=st["env"]["AWS_ENDPOINT_URL"], credentials=credentials | {"AWS_DEFAULT_REGION": "us-east-1"}
    )
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=native_stack.BUCKET)
    return {o["Key"]: (o["Size"], o["ETag"]) for page in pages for o in page.get("Contents", [])}


def test_a_restart_with_the_readme_commands_keeps_every_run_and_artifact(stack, monkeypatch) -> None:
    st, folder = stack, stack["root"] / "stack"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", st["env"]["MLFLOW_TRACKING_URI"])  # resolves mlflow-artifacts:/ URIs
    client = MlflowClient(st["env"]["MLFLOW_TRACKING_URI"])
    blob = st["root"] / "blob.bin"
    blob.write_bytes(np.random.default_rng(0).bytes(300_000))
    run_id = client.create_run(client.create_experiment("stack-restart")).info.run_id
    client.log_artifact(run_id, str(blob), "kept")
    client.set_terminated(run_id)
    before = _objects(st)
    assert any(k.endswith("kept/blob.bin") for k in before)

    user = user_shell_env()
    args = f" ARGS='--dir {folder}'"  # the test's stack, not the checkout's .stack
    started = time.monotonic()
    _cli(st, "make-stack-down", "bash", "-c", readme_command("make stack-down") + args, env=user)
    stopped = time.monotonic()
    alive = {name: _ps(pid) for name, pid in st["pids"].items() if native_stack._alive(pid)}
    assert not alive, f"still running after make stack-down: {alive}"
    # -o: make must not reinstall the (possibly shared) venv when the checkout's lock is newer than it
    up = readme_command("make stack-up").replace("make ", "make -o .venv/.installed ", 1)
    _cli(st, "make-stack-up", "bash", "-c", up + args, env=user)
    print(f"stack restart: down {stopped - started:.1f} s, up {time.monotonic() - stopped:.1f} s")

    st["env"] |= native_stack.client_env(folder)  # a port taken meanwhile is replaced
    st["pids"] = dict(native_stack._state(folder)["pids"])
    eval_line = readme_command("infra.stack env)").replace("infra.stack env", f"infra.stack env --dir {folder}")
    told = _cli(st, "stack-env", "bash", "-c", eval_line + ' && echo "$MLFLOW_TRACKING_URI"', env=user)
    assert told.strip() == st["env"]["MLFLOW_TRACKING_URI"]

    assert _objects(st) == before
    monkeypatch.setenv("MLFLOW_TRACKING_URI", st["env"]["MLFLOW_TRACKING_URI"])
    client = MlflowClient(st["env"]["MLFLOW_TRACKING_URI"])
    got = client.download_artifacts(run_id, "kept/blob.bin", str(st["root"] / "download"))
    assert Path(got).read_bytes() == blob.read_bytes()
    ports = native_stack._state(folder)["ports"]
    with (
        contextlib.closing(
            psycopg2.connect(
                host=native_stack.HOST,
                port=ports["postgres"],
                user=native_stack.DB_USER,
                password=st["secrets"]["POSTGRES_PASSWORD"],
                dbname="mlflow",
            )  # fmt: skip
        ) as db,
        db.cursor() as cur,
    ):
        cur.execute("SELECT status FROM runs WHERE run_uuid = %s", (run_id,))
        assert cur.fetchone() == ("FINISHED",)


def test_no_credential_reaches_mlflow_or_any_log(stack) -> None:
    st = stack
    secret_values = [st["secrets"]["POSTGRES_PASSWORD"], st["secrets"]["AWS_SECRET_ACCESS_KEY"]]
    client = MlflowClient(st["env"]["MLFLOW_TRACKING_URI"], registry_uri=st["env"]["MLFLOW_TRACKING_URI"])
    recorded = []
    for exp in client.search_experiments():
        for run in client.search_runs([exp.experiment_id]):
            recorded += [*run.data.params.values(), *run.data.tags.values()]
    for model in client.search_registered_models():
        for mv in client.search_model_versions(f"name='{model.name}'"):
            recorded += [*mv.tags.values(), mv.source or ""]
    logs = [*LOGS, *(st["root"] / "stack" / "logs").glob("*.log")]
    assert logs and recorded
    for value in secret_values:
        assert not [r for r in recorded if value in str(r)], "a credential is in MLflow params/tags"
        assert not [p.name for p in logs if value in p.read_text(errors="replace")], "a credential is in a log"
        for pid in st["pids"].values():
            cmdline = Path(f"/proc/{pid}/cmdline")
            if cmdline.exists():
                assert value not in cmdline.read_text(errors="replace"), "a credential is on a command line"
