"""A command ends without the interpreter's teardown, and only after every record is saved.

``typer_cli.py`` ends with ``os._exit`` once Python's at-exit work is done (see ``typer_cli._end_without_teardown``):
these tests run ``score`` on an empty folder as a user does and then read what it left behind, the flow run, its
task runs and logs in the Prefect API, the MLflow run and the output files, for a configured API and for the
temporary server.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.conftest import user_shell_env

ROOT = Path(__file__).resolve().parents[1]
MODEL = "genre-crnn-exit-test"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite MLflow store with an untrained default model registered as ``champion`` (scoring no file needs no more)."""
    import mlflow
    import torch
    from mlflow.tracking import MlflowClient

    from crnn.config import PipelineConfig
    from crnn.inference import build_model, checkpoint_state
    from crnn.train import save_checkpoint
    from infra import registry

    root = tmp_path_factory.mktemp("exit-store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    cfg = PipelineConfig.from_options()
    torch.manual_seed(0)
    save_checkpoint(checkpoint_state(build_model(cfg).eval(), cfg), root / "model.pt")
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        exp = mlflow.create_experiment("exit-test", artifact_location=(root / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=exp) as run:
            pass
        version = mlflow.register_model(registry.log_model(run.info.run_id, root / "model.pt", cfg.model.labels), MODEL)
        MlflowClient().set_registered_model_alias(MODEL, registry.CHAMPION, version.version)
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
    return uri


def _score(tmp_path: Path, store: str, **env: str) -> tuple[subprocess.CompletedProcess, str]:
    """``typer_cli.py score`` on an empty folder in a fresh process; the result and its flow run's id."""
    (tmp_path / "music").mkdir()
    env = {k: v for k, v in user_shell_env().items() if not k.startswith("PREFECT_API")} | env
    env |= {"MLFLOW_TRACKING_URI": store, "MLFLOW_REGISTRY_URI": store, "PREFECT_HOME": str(tmp_path / "prefect")}
    args = ["score", "--library", "music", "--output-dir", "out", "--model-uri", f"models:/{MODEL}@champion"]
    done = subprocess.run(
        [sys.executable, str(ROOT / "typer_cli.py"), *args], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (results,) = (tmp_path / "out" / "runs").glob("*/results.csv")  # runs/<flow run id>/
    return done, results.parent.name


def _assert_mlflow_and_files(tmp_path: Path, store: str, flow_run_id: str) -> None:
    """The scoring run of the flow run is FINISHED in the MLflow store; the results and report were written."""
    from mlflow.tracking import MlflowClient

    from crnn.requests import SCORING_EXPERIMENT
    from infra.tracking import PREFECT_FLOW_RUN_TAG

    client = MlflowClient(tracking_uri=store)
    exp = client.get_experiment_by_name(SCORING_EXPERIMENT)
    runs = client.search_runs([exp.experiment_id], f"tags.`{PREFECT_FLOW_RUN_TAG}` = '{flow_run_id}'")
    assert [r.info.status for r in runs] == ["FINISHED"]
    assert (tmp_path / "out" / "library_report.md").stat().st_size > 0


@pytest.mark.server
def test_score_with_a_configured_api_leaves_the_completed_run_and_its_logs(tmp_path, store, prefect_api) -> None:
    done, flow_run_id = _score(tmp_path, store, PREFECT_API_URL=prefect_api)
    assert "scored 0, unchanged 0, failed 0" in " ".join(done.stderr.split())
    run = requests.get(f"{prefect_api}/flow_runs/{flow_run_id}", timeout=10).json()
    assert run["state"]["type"] == "COMPLETED"
    tasks = requests.post(
        f"{prefect_api}/task_runs/filter", json={"flow_runs": {"id": {"any_": [flow_run_id]}}}, timeout=10
    ).json()
    assert tasks and {t["state"]["type"] for t in tasks} == {"COMPLETED"}
    logs = requests.post(
        f"{prefect_api}/logs/filter", json={"logs": {"flow_run_id": {"any_": [flow_run_id]}}}, timeout=10
    ).json()
    assert "Finished in state Completed()" in [log["message"] for log in logs if log["task_run_id"] is None]
    _assert_mlflow_and_files(tmp_path, store, flow_run_id)


@pytest.mark.server
def test_score_with_the_temporary_server_leaves_the_completed_run_and_its_logs(tmp_path, store) -> None:
    _, flow_run_id = _score(tmp_path, store)
    with sqlite3.connect(tmp_path / "prefect" / "prefect.db") as db:
        (state,) = db.execute("SELECT state_type FROM flow_run WHERE id = ?", (flow_run_id,)).fetchone()
        tasks = db.execute("SELECT DISTINCT state_type FROM task_run WHERE flow_run_id = ?", (flow_run_id,)).fetchall()
        flow_logs = db.execute(
            "SELECT message FROM log WHERE flow_run_id = ? AND task_run_id IS NULL", (flow_run_id,)
        ).fetchall()
    assert (state, tasks) == ("COMPLETED", [("COMPLETED",)])
    assert ("Finished in state Completed()",) in flow_logs
    _assert_mlflow_and_files(tmp_path, store, flow_run_id)


PROBE = """
import runpy, sys
class Probe:
    def __del__(self):
        print("interpreter teardown", flush=True)
sys.modules["exit_probe"] = Probe()  # deleted when the interpreter tears its modules down
sys.argv = sys.argv[1:]
sys.path.insert(0, sys.argv[0].rpartition("/")[0])  # as `python typer_cli.py` does
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.parametrize(("args", "status"), [(["--help"], 0), (["score", "--library", ".", "--top-k", "0"], 2)])
def test_a_command_that_returned_ends_without_the_interpreters_teardown(tmp_path, args, status) -> None:
    env = user_shell_env(PREFECT_HOME=str(tmp_path / "prefect"))
    cmd = [sys.executable, "-c", PROBE, str(ROOT / "typer_cli.py"), *args]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == status, done.stderr[-2000:]
    assert "Usage" in done.stdout + done.stderr  # what the command printed is all there (flushed)
    assert "interpreter teardown" not in done.stdout


def test_an_unexpected_error_ends_the_normal_way(tmp_path) -> None:
    """``--debug`` tracebacks (and any error main() does not explain) keep Python's own ending, teardown included."""
    env = user_shell_env(PREFECT_HOME=str(tmp_path / "prefect"), MLFLOW_TRACKING_URI="http://127.0.0.1:9")
    (tmp_path / "music").mkdir()
    cmd = [sys.executable, "-c", PROBE, str(ROOT / "typer_cli.py"), "--debug", "score", "--library", "music"]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "TrackingConfigError" in done.stderr
    assert "interpreter teardown" in done.stdout
