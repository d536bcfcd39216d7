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
