"""Shared fixtures: seeded RNGs, synthetic audio, a temporary MLflow store, one Prefect test harness."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GENRE_CRNN_SHARED", ROOT.parent / "shared"))

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@pytest.fixture(autouse=True)
def _seed() -> None:
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture
def gtzan_mini() -> Path:
    """The 100 real GTZAN tracks of ../shared (read-only)."""
    path = SHARED / "data" / "gtzan_mini" / "genres"
    if not path.is_dir():
        pytest.skip(f"real data not found at {path} (set GENRE_CRNN_SHARED)")
    return path


@pytest.fixture
def write_tone(tmp_path: Path):
    """Write a seeded tone + noise WAV: ``write_tone(name, freq_hz, seconds, sample_rate)`` -> path."""

    def write(name: str, freq_hz: float = 440.0, seconds: float = 1.0, sample_rate: int = 22050) -> Path:
        rng = np.random.default_rng(abs(hash((name, freq_hz))) % 2**32)
        t = np.arange(int(seconds * sample_rate)) / sample_rate
        y = 0.3 * np.sin(2 * np.pi * freq_hz * t) + 0.01 * rng.standard_normal(t.size)
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, y.astype(np.float32), sample_rate)
        return path

    return write


@pytest.fixture
def mlflow_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An empty SQLite tracking/registry store under tmp_path; the working directory moves there too."""
    import mlflow

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)  # mlflow.set_registry_uri leaves it set by an earlier test
    monkeypatch.setattr("infra.tracking._USER_REGISTRY_URI", uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    yield uri
    mlflow.set_tracking_uri(None)


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory: pytest.TempPathFactory):
    """One temporary Prefect API (``prefect_test_harness``) for every flow test of the session."""
    os.environ["PREFECT_HOME"] = str(tmp_path_factory.mktemp("prefect-home"))
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
