"""The ways users launch training agree: CLI options, train-flow parameters and MLproject parameters."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import typer.main
import yaml

from flows.batch_score_flow import batch_score_flow
from flows.train_flow import train_flow
from typer_cli import app

ROOT = Path(__file__).resolve().parents[1]


def cli_options(command: str) -> dict[str, object]:
    group = typer.main.get_command(app)
    cmd = group.commands[command]
    return {p.name: p.default for p in cmd.params if p.name != "help"}


def mlproject_parameters(entry_point: str) -> dict[str, dict]:
    spec = yaml.safe_load((ROOT / "MLproject").read_text())
    return spec["entry_points"][entry_point]["parameters"]


ENTRY_POINTS = {"main": "train", "score": "score", "protocol": "protocol"}
"""MLproject entry point -> CLI command it runs."""


def test_mlproject_has_an_entry_point_per_flow_command() -> None:
    spec = yaml.safe_load((ROOT / "MLproject").read_text())
    assert set(spec["entry_points"]) == set(ENTRY_POINTS)


@pytest.mark.parametrize("entry_point", sorted(ENTRY_POINTS))
def test_every_mlproject_parameter_is_a_cli_option_with_the_same_default(entry_point: str) -> None:
    options, params = cli_options(ENTRY_POINTS[entry_point]), mlproject_parameters(entry_point)
    assert set(params) <= set(options), set(params) - set(options)
    for name, spec in params.items():
        if "default" in spec:  # "auto" in MLproject is the CLI's None (the architecture's default)
            assert str(spec["default"]) == ("auto" if options[name] is None else str(options[name])), name
    if entry_point == "main":  # training: every option but the runner choice is reachable through mlflow run
        assert set(options) - set(params) == {"dask"}
    elif entry_point == "protocol":
        assert set(options) == set(params)
    else:  # scoring: all but the on/off flags, which MLproject cannot pass
        assert set(options) - set(params) == {"timeline", "retry_failed", "rescore", "dask"}


@pytest.mark.parametrize("entry_point", sorted(ENTRY_POINTS))
def test_mlproject_command_passes_every_parameter(entry_point: str) -> None:
    spec = yaml.safe_load((ROOT / "MLproject").read_text())["entry_points"][entry_point]
    assert spec["command"].startswith(f"python typer_cli.py {ENTRY_POINTS[entry_point]} ")
    for name in spec["parameters"]:
        assert f"--{name.replace('_', '-')} {{{name}}}" in spec["command"], name


def test_batch_score_flow_parameters_match_the_cli() -> None:
    flow_params = {k: v.default for k, v in inspect.signature(batch_score_flow.fn).parameters.items()}
    options = cli_options("score")
    assert set(flow_params) == set(options) - {"dask"}  # --dask picks the task runner, not a parameter
    for name, default in flow_params.items():
        if isinstance(default, list):  # a list parameter of the flow is comma-separated on the CLI
            assert ",".join(default) == options[name], name
        elif default is not inspect.Parameter.empty:
            assert str(default) == str(options[name]), name


def test_protocol_flow_parameters_match_the_cli() -> None:
    from flows.protocol_flow import protocol_flow

    flow_params = {k: v.default for k, v in inspect.signature(protocol_flow.fn).parameters.items()}
    options = cli_options("protocol")
    assert set(flow_params) == set(options)
    for name, default in flow_params.items():
        assert str(default) == str(options[name]), name


def test_train_flow_parameters_match_the_cli() -> None:
    flow_params = {k: v.default for k, v in inspect.signature(train_flow.fn).parameters.items()}
    options = cli_options("train")
    assert set(flow_params) == set(options) - {"dask"}
    for name, default in flow_params.items():
        assert str(default) == str(options[name]), name


# A valid non-default value for every train-flow option that belongs to the PipelineConfig.
NON_DEFAULTS = {
    "split": "index",
    "val_fraction": 0.25,
    "test_fraction": 0.15,
    "architecture": "musicnn-crnn",  # honours rnn_type and pretrained below (others reject them)
    "sample_rate": 16000,
    "n_fft": 2048,
    "hop_length": 256,
    "n_mels": 48,
    "segment_s": 2.5,
    "overlap_s": 1.0,
    "max_segments": 4,
    "rnn_type": "lstm",
    "epochs": 3,
    "batch_size": 8,
    "learning_rate": 0.01,
    "patience": 2,
    "freq_mask": 0,
    "time_mask": 5,
    "mixup_alpha": 0.0,
    "pretrained": "MTT_musicnn",
    "pretrained_lr_scale": 0.1,
    "seed": 11,
}


def test_every_config_option_of_train_flow_reaches_the_pipeline_config() -> None:
    from crnn.config import flatten
    from flows.train_flow import RUN_OPTIONS, PipelineConfig

    config_options = set(inspect.signature(train_flow.fn).parameters) - RUN_OPTIONS
    assert config_options == set(NON_DEFAULTS)
    flat = flatten(PipelineConfig.from_options(**NON_DEFAULTS).to_dict())
    for name, value in NON_DEFAULTS.items():
        key = "split.method" if name == "split" else next(k for k in flat if k.endswith(f".{name}"))
        assert flat[key] == value, name
    assert flat["split.seed"] == flat["train.seed"] == 11


def test_download_checks_the_sha256_option(tmp_path) -> None:
    """`download --sha256` reaches the dataset source: a wrong digest stops before any flow runs."""
    import tarfile

    from typer.testing import CliRunner

    from infra.sources import DatasetSourceError

    archive = tmp_path / "genres.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(__file__, arcname="genres/notes.txt")
    args = ["download", "--source", str(archive), "--work-dir", str(tmp_path / "work"), "--sha256", "0" * 64]
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, DatasetSourceError) and "SHA-256 mismatch" in str(result.exception)
    assert not (tmp_path / "work" / "extracted").exists()


def _cli(args: list[str], cwd: Path, **env: str):
    """typer_cli.py as a user runs it: a fresh process, a shell without the venv activated."""
    import subprocess
    import sys

    from tests.conftest import user_shell_env

    env = user_shell_env(PREFECT_HOME=str(cwd / "prefect"), **env)
    env.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{cwd / 'mlflow.db'}")
    cmd = [sys.executable, str(ROOT / "typer_cli.py"), *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--epochs", "0"], "epochs must be >= 1, got 0"),
        (["train", "--architecture", "nope"], "architecture must be one of musicnn-linear"),
        (["train", "--source", "/nonexistent/genres"], "no such file or folder: /nonexistent/genres"),
        (["score", "--library", "/nonexistent/music"], "no such file or folder: /nonexistent/music"),
        (["score", "--library", ".", "--top-k", "0"], "top_k must be >= 1, got 0"),
        (["score", "--library", ".", "--tags", "wirte"], "must be off, dry-run or write, got 'wirte'"),
        (["score", "--library", ".", "--format", "csv,xlsx"], "unknown format xlsx; known: csv,jsonl"),
        (["protocol", "--folds", "1"], "need at least 2 folds, got 1"),
    ],
)
def test_a_bad_option_is_a_usage_error_before_anything_starts(tmp_path, args, message) -> None:
    done = _cli(args, tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert message in " ".join(done.stderr.split()) and "Traceback" not in done.stderr
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "work").exists()  # nothing started


def test_score_without_a_registered_model_says_to_train_first(tmp_path) -> None:
    (tmp_path / "music").mkdir()
    done = _cli(["score", "--library", "music"], tmp_path)
    assert done.returncode == 1
    (line,) = [line for line in done.stderr.splitlines() if "error" in line.lower() or "Traceback" in line]
    assert "error: models:/genre-crnn@champion is not in the model registry" in line and "train one first" in line
    assert not (tmp_path / "scores").exists()


def test_a_dead_tracking_server_fails_at_once_naming_it(tmp_path) -> None:
    (tmp_path / "music").mkdir()
    done = _cli(["score", "--library", "music"], tmp_path, MLFLOW_TRACKING_URI="http://user:secret@127.0.0.1:9")
    assert done.returncode == 1
    (line,) = [line for line in done.stderr.splitlines() if "error" in line.lower() or "Traceback" in line]
    assert "MLflow tracking server at http://***@127.0.0.1:9 does not answer" in line and "secret" not in line
    debug = _cli(["--debug", "score", "--library", "music"], tmp_path, MLFLOW_TRACKING_URI="http://127.0.0.1:9")
    assert "Traceback" in debug.stderr and "TrackingConfigError" in debug.stderr
