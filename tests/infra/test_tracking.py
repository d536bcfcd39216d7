"""MLflow store selection."""

from __future__ import annotations

import mlflow

from infra import tracking


def test_registry_follows_the_tracking_store_across_calls(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(tracking, "_USER_REGISTRY_URI", None)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    for name in ("first", "second"):
        uri = f"sqlite:///{tmp_path / name}.db"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        assert tracking.configure_tracking() == uri
        assert mlflow.get_registry_uri() == uri  # not the store of the previous call
    mlflow.set_tracking_uri(None)


def test_default_store_is_sqlite_in_the_working_directory(monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr(tracking, "_USER_REGISTRY_URI", None)
    assert tracking.configure_tracking() == f"sqlite:///{tmp_path / 'mlflow.db'}"
    exp = mlflow.get_experiment(tracking.ensure_experiment("unit"))
    assert exp.artifact_location == (tmp_path / "mlartifacts").as_uri()
    mlflow.set_tracking_uri(None)


def test_source_credentials_never_reach_params_or_datasets(mlflow_store, tmp_path) -> None:
    """A password and a signed query in the source are redacted in the run's params and dataset sources."""
    import pandas as pd

    source = "https://reader:S3cretPW@example.org/genres.tar.gz?X-Amz-Signature=deadbeef&v=1"
    run_id = tracking.start_run("unit", "redact", {"data.source": source}, {})
    table = tmp_path / "split.csv"
    pd.DataFrame({"track_id": ["a", "b"], "genre": ["rock", "jazz"], "split": ["train", "test"]}).to_csv(table)
    tracking.log_split_datasets(run_id, table, source)
    run = mlflow.get_run(run_id)
    shown = "https://***@example.org/genres.tar.gz?X-Amz-Signature=***&v=1"
    assert run.data.params["data.source"] == shown
    sources = [d.dataset.source for d in run.inputs.dataset_inputs]
    assert len(sources) == 2 and all("S3cretPW" not in s and "deadbeef" not in s for s in sources)
    assert all("example.org/genres.tar.gz" in s for s in sources)


def test_postgresql_uri_uses_the_installed_driver(monkeypatch) -> None:
    """postgresql:// (which would look for psycopg) becomes postgresql+psycopg2://, tracking and registry."""
    monkeypatch.setattr(tracking, "_USER_REGISTRY_URI", None)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    uri = tracking.configure_tracking("postgresql://mlflow:pw@db:5432/mlflow")
    assert uri == "postgresql+psycopg2://mlflow:pw@db:5432/mlflow"
    assert mlflow.get_tracking_uri() == mlflow.get_registry_uri() == uri
    assert tracking.normalize_store_uri("postgres://db/x") == "postgresql+psycopg2://db/x"
    for kept in ("sqlite:///x.db", "http://127.0.0.1:5000", "postgresql+psycopg2://db/x"):
        assert tracking.normalize_store_uri(kept) == kept
    mlflow.set_tracking_uri(None)


def test_missing_driver_fails_before_any_work(monkeypatch, tmp_path) -> None:
    """A database URI whose driver is not installed fails in `train` before the source is even read."""
    import pytest
    from typer.testing import CliRunner

    from typer_cli import app

    monkeypatch.setattr(tracking, "_USER_REGISTRY_URI", None)
    monkeypatch.setitem(tracking._DB_DRIVERS, "postgresql+psycopg2", "no_such_driver_module")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql://mlflow:S3cret@db/mlflow")
    with pytest.raises(tracking.TrackingConfigError, match="'no_such_driver_module' is not installed") as err:
        tracking.configure_tracking()
    assert "S3cret" not in str(err.value)
    (tmp_path / "music").mkdir()  # a source that exists: the store is what fails
    result = CliRunner().invoke(app, ["train", "--source", str(tmp_path / "music"), "--work-dir", str(tmp_path / "w")])
    assert isinstance(result.exception, tracking.TrackingConfigError)
    assert not (tmp_path / "w").exists()
    mlflow.set_tracking_uri(None)


def test_a_run_left_running_by_a_dead_process_is_marked_killed(mlflow_store) -> None:
    """The next run ends runs whose owner process is gone; live or foreign runs are left RUNNING."""
    import os
    import socket
    import subprocess
    import sys

    from mlflow.tracking import MlflowClient

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tracking.start_run("unit", "killed", {}, {})
    alive = tracking.start_run("unit", "still-training", {}, {})
    foreign = tracking.start_run("unit", "other-host", {}, {})
    client = MlflowClient()
    client.set_tag(stale, tracking.OWNER_PID_TAG, dead.stdout.strip())
    client.set_tag(foreign, tracking.OWNER_PID_TAG, dead.stdout.strip())
    client.set_tag(foreign, tracking.OWNER_HOST_TAG, socket.gethostname() + "-elsewhere")
    fresh = tracking.start_run("unit", "next", {}, {})
    status = {r: client.get_run(r).info.status for r in (stale, alive, foreign, fresh)}
    assert status == {stale: "KILLED", alive: "RUNNING", foreign: "RUNNING", fresh: "RUNNING"}
    assert client.get_run(fresh).data.tags[tracking.OWNER_PID_TAG] == str(os.getpid())


def test_runs_are_named_with_a_short_id_and_experiments_open_on_their_runs(mlflow_store) -> None:
    """`<name>-<8 chars of the id>`; the experiment is tagged as model development (the UI's runs table)."""
    from mlflow.tracking import MlflowClient

    run_id = tracking.start_run("unit", "cnn-lstm-stratified", {}, {}, short_id=True)
    run = MlflowClient().get_run(run_id)
    assert run.info.run_name == run.data.tags["mlflow.runName"] == f"cnn-lstm-stratified-{run_id[:8]}"
    assert MlflowClient().get_run(tracking.start_run("unit", "plain", {}, {})).info.run_name == "plain"
    exp = MlflowClient().get_experiment(run.info.experiment_id)
    assert exp.tags[tracking.EXPERIMENT_KIND_TAG] == "custom_model_development"
    old = MlflowClient().create_experiment("made-before-the-tag")
    tracking.ensure_experiment("made-before-the-tag")
    assert MlflowClient().get_experiment(old).tags[tracking.EXPERIMENT_KIND_TAG] == "custom_model_development"
    assert tracking.run_url(run_id) is None  # a database store has no UI address


def test_run_url_points_at_the_run_page_of_a_tracking_server(monkeypatch) -> None:
    from types import SimpleNamespace

    monkeypatch.setattr(mlflow, "get_tracking_uri", lambda: "http://user:pw@127.0.0.1:5000/")
    run = SimpleNamespace(info=SimpleNamespace(experiment_id="7"))
    monkeypatch.setattr(tracking.MlflowClient, "get_run", lambda self, run_id: run)
    url = "http://***@127.0.0.1:5000/#/experiments/7/runs/abc?workflowType=machine_learning"  # the runs view
    assert tracking.run_url("abc") == url
