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
