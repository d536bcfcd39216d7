"""Shared fixtures: seeded RNGs, synthetic audio, a temporary MLflow store, one Prefect test harness."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[1]


README_BASH = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)


def readme_command(fragment: str) -> str:
    """The one command line of README.md's bash blocks that contains ``fragment``, without its comment.

    Tests run it as written (``bash -c``, from the repository root, in a shell that has not activated the
    venv), replacing only the user's data paths and adding test-only options.
    """
    blocks = README_BASH.findall((ROOT / "README.md").read_text())
    lines = [line for block in blocks for line in block.splitlines() if fragment in line]
    assert len(lines) == 1, f"README has {len(lines)} command lines with {fragment!r}"
    return lines[0].split("  #", 1)[0].strip()


def user_shell_env(**extra: str) -> dict[str, str]:
    """The test process's environment as a user's shell has it: no activated venv; plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    venv_bin = str(ROOT / ".venv" / "bin")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    return env | extra


SHARED = Path(os.environ.get("GENRE_CRNN_SHARED", ROOT.parent / "shared"))

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def _xdist_root(tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    """The folder that every xdist worker of this run shares (above each worker's own basetemp); None without xdist."""
    return tmp_path_factory.getbasetemp().parent if os.environ.get("PYTEST_XDIST_WORKER") else None


def pytest_configure(config: pytest.Config) -> None:
    """An xdist worker runs torch on one thread: two workers on two cores, not four threads fighting over them."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``make test``: ``--dist loadscope``), put the modules with the most slow tests first.

    loadscope runs a whole module on one worker, so its module-scoped fixtures (a server, a stack) start once
    and tests that build on an earlier one keep their order. Modules are handed out in collection order
    (``--no-loadscope-reorder``): the long ones start first and the short unit modules fill the gaps at the end.
    The order within a module is kept. Without xdist nothing changes.
    """
    if not os.environ.get("PYTEST_XDIST_WORKER"):  # under xdist only the workers collect
        return
    slow: dict[Path, int] = {}
    for item in items:
        slow[item.path] = slow.get(item.path, 0) + any(item.get_closest_marker(m) for m in ("slow", "server"))
    items.sort(key=lambda item: -slow[item.path])  # a stable sort


@pytest.fixture(autouse=True)
def _one_mlflow_env_build_at_a_time(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """``mlflow run``/``mlflow models predict`` tests (``test_mlflow_run_*``) run one at a time across xdist workers.

    MLflow builds their uv environments in ``~/.mlflow/envs`` without a lock; two builds of one at once break it.
    """
    root = _xdist_root(tmp_path_factory)
    if root is None or not request.node.name.startswith("test_mlflow_run_"):
        yield
        return
    from filelock import FileLock

    with FileLock(str(root / "mlflow-envs.lock")):
        yield


@pytest.fixture(autouse=True, scope="session")
def pretrained_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache of converted pretrained weights (and the converter's environment) for the whole session.

    Under xdist the workers share it (the conversion holds a file lock), so TensorFlow's environment is built once.
    """
    from infra.pretrained import CACHE_ENV

    root = _xdist_root(tmp_path_factory)
    if root is not None:
        path = root / "pretrained"
        path.mkdir(exist_ok=True)
    else:
        path = tmp_path_factory.mktemp("pretrained")
    os.environ[CACHE_ENV] = str(path)  # subprocesses (CLI, MLproject, workers) inherit it
    return path


_MLFLOW_URI_VARS = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
_MLFLOW_URIS_AT_START = {key: os.environ.get(key) for key in _MLFLOW_URI_VARS}


@pytest.fixture(autouse=True)
def _mlflow_uris_restored() -> Iterator[None]:
    """After each test, put ``$MLFLOW_TRACKING_URI``/``$MLFLOW_REGISTRY_URI`` back as the session started with them.

    ``mlflow.set_registry_uri(uri)`` also sets the environment variable and ``set_registry_uri(None)`` leaves it,
    so a test's store leaked into the CLI subprocesses of later tests (a champion where none should be).
    """
    yield
    for key, value in _MLFLOW_URIS_AT_START.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


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


@pytest.fixture(scope="session")
def gtzan_excerpts() -> Path:
    """The 100 real 2-3 s cross-artist GTZAN excerpts of ../shared (read-only), by genre folder."""
    path = SHARED / "data" / "gtzan_excerpts"
    if not (path / "blues").is_dir():
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
    mlflow.set_registry_uri(None)  # else a later MlflowClient(tracking_uri) still reads this test's registry


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory: pytest.TempPathFactory):
    """One temporary Prefect API (``prefect_test_harness``) for every flow test of the session."""
    os.environ["PREFECT_HOME"] = str(tmp_path_factory.mktemp("prefect-home"))
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def prefect_api(prefect_harness) -> str:
    """The session's test Prefect API, for CLI subprocesses (``PREFECT_API_URL``, a README variable).

    Without it every ``typer_cli.py`` run that starts a flow first starts a temporary Prefect server of its own
    (about 10 s of CPU each).
    """
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value()


def _fit_small_champion(gtzan_mini: Path, out: Path) -> Path:
    """A CRNN trained for 2 epochs on 2 tracks per genre of gtzan_mini (validated on a third); its checkpoint."""
    from crnn import GENRES
    from crnn.audio import load_audio
    from crnn.config import PipelineConfig, TrainConfig
    from crnn.features import log_mel_librosa
    from crnn.inference import build_model, checkpoint_state
    from crnn.train import SegmentDataset, fit, save_checkpoint

    cfg = PipelineConfig.from_options(epochs=2, batch_size=32)
    feats = {
        (g, i): log_mel_librosa(load_audio(gtzan_mini / g / f"{g}.{i:05d}.wav", cfg.features.sample_rate), cfg.features)
        for g in GENRES
        for i in range(3)
    }
    labels = {g: k for k, g in enumerate(GENRES)}
    train = [(m, labels[g]) for (g, i), m in feats.items() if i < 2]
    val = [(m, labels[g]) for (g, i), m in feats.items() if i == 2]
    model = build_model(cfg)
    train_cfg: TrainConfig = cfg.train
    fit(
        model,
        SegmentDataset([m for m, _ in train], [y for _, y in train], cfg.features, jitter=True),
        SegmentDataset([m for m, _ in val], [y for _, y in val], cfg.features),
        train_cfg,
        device=torch.device("cpu"),
    )
    path = out / "champion.pt"
    save_checkpoint(checkpoint_state(model.eval(), cfg), path)
    return path


@pytest.fixture(scope="session")
def champion_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite MLflow store whose ``genre-crnn`` model has a ``champion`` (briefly trained on real tracks); its URI."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from crnn import GENRES
    from infra import registry

    mini = SHARED / "data" / "gtzan_mini" / "genres"
    if not mini.is_dir():
        pytest.skip(f"real data not found at {mini}")
    root = tmp_path_factory.mktemp("champion")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    checkpoint = _fit_small_champion(mini, root)
    previous = os.environ.get("MLFLOW_TRACKING_URI"), os.environ.get("MLFLOW_REGISTRY_URI")
    os.environ["MLFLOW_TRACKING_URI"] = os.environ["MLFLOW_REGISTRY_URI"] = uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        exp = mlflow.create_experiment("champion", artifact_location=(root / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=exp) as run:
            pass
        model_uri = registry.log_model(run.info.run_id, checkpoint, GENRES)
        version = mlflow.register_model(model_uri, registry.MODEL_NAME).version
        MlflowClient().set_registered_model_alias(registry.MODEL_NAME, registry.CHAMPION, version)
    finally:
        for key, value in zip(("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"), previous):
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        mlflow.set_tracking_uri(None)
    return uri


@pytest.fixture
def use_champion(champion_store: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point MLflow (tracking and registry, in this process and subprocesses) at :func:`champion_store`."""
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", champion_store)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", champion_store)
    monkeypatch.setattr("infra.tracking._USER_REGISTRY_URI", champion_store)
    mlflow.set_tracking_uri(champion_store)
    mlflow.set_registry_uri(champion_store)
    yield champion_store
    mlflow.set_tracking_uri(None)


@pytest.fixture(scope="session")
def moto_url():
    """One moto S3 server on a free loopback port for the session; yields its URL."""
    pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(moto_url: str, monkeypatch: pytest.MonkeyPatch):
    """The moto server, emptied; the environment points S3 at it (AWS_ENDPOINT_URL); yields a client for it."""
    import requests

    from infra.storage import s3_client

    requests.post(f"{moto_url}/moto-api/reset", timeout=10).raise_for_status()
    env = {
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return s3_client()
