"""The ways users launch a run agree: each request's fields are the CLI options, the flow's parameter and MLproject."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import typer.main
import yaml
from typer.testing import CliRunner

from crnn.config import PipelineConfig
from crnn.requests import COMMANDS, FLAGS, REQUESTS, ProtocolRequest, ScoreRequest, TrainRequest, choices
from flows.batch_score_flow import batch_score_flow
from flows.protocol_flow import protocol_flow
from flows.train_flow import train_flow
from infra.mlproject import MLPROJECT_ENTRY_POINTS, mlproject
from typer_cli import app

ROOT = Path(__file__).resolve().parents[1]


def cli_params(command: str) -> dict[str, object]:
    """The click parameters of a ``typer_cli.py`` command, by name."""
    group = typer.main.get_command(app)
    return {p.name: p for p in group.commands[command].params if p.name != "help"}


def test_the_committed_mlproject_is_the_generated_one() -> None:
    assert (ROOT / "MLproject").read_text() == mlproject(), "run: .venv/bin/python -m infra.mlproject > MLproject"


def test_mlproject_has_an_entry_point_per_flow_command() -> None:
    spec = yaml.safe_load((ROOT / "MLproject").read_text())
    assert MLPROJECT_ENTRY_POINTS == {"main": "train", "score": "score", "protocol": "protocol"}
    assert set(spec["entry_points"]) == set(MLPROJECT_ENTRY_POINTS)


CLI_ONLY = {"train": {"dask"}, "score": {"dask"}, "serve": {"dask"}, "deploy": {"pool", "dask"}}
"""Options of a command that are not fields of its request: how this process runs it."""


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_request_field_is_a_cli_option_with_its_default_help_and_type(command: str) -> None:
    request, params = COMMANDS[command], cli_params(command)
    assert set(params) - set(request.model_fields) == CLI_ONLY.get(command, set())
    for name, info in request.model_fields.items():
        option = params[name]
        assert option.help == info.description, name
        assert option.required == info.is_required(), name
        if not info.is_required():
            assert option.default == (",".join(info.default) if name in FLAGS else info.default), name
        kind = str if choices(info.annotation) or name in FLAGS else info.annotation  # checked by the request
        kind = next((t for t in (int, float, str) if kind == t | None), kind)  # int/float: parsed with "auto" as None
        assert option.type_descriptor.annotation == kind, (name, option.type_descriptor.annotation)
        assert option.opts[0] == f"--{FLAGS.get(name, name).replace('_', '-')}", name


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_the_cli_defaults_build_the_requests_defaults(command: str, monkeypatch) -> None:
    """A command given no options (but the required library) builds the request with its defaults."""
    import typer_cli

    built, validated = [], typer_cli._validated

    def stop_after_validation(request_type, fields):
        built.append(validated(request_type, fields))
        raise typer.Exit()

    monkeypatch.setattr(typer_cli, "_validated", stop_after_validation)
    given = {"library": ["music"]} if "library" in COMMANDS[command].model_fields else {}
    result = CliRunner().invoke(app, [command, *(["--library", "music"] if given else [])])
    assert result.exit_code == 0, result.output
    assert built == [COMMANDS[command](**given)]


@pytest.mark.parametrize("entry_point", sorted(MLPROJECT_ENTRY_POINTS))
def test_every_mlproject_parameter_is_a_request_field_passed_to_its_option(entry_point: str) -> None:
    spec = yaml.safe_load((ROOT / "MLproject").read_text())["entry_points"][entry_point]
    command = MLPROJECT_ENTRY_POINTS[entry_point]
    request = REQUESTS[command]
    assert spec["command"].startswith(f"python typer_cli.py {command}")
    flags = {n for n, i in request.model_fields.items() if i.annotation is bool}  # no bare flags in MLproject
    assert set(spec["parameters"]) == set(request.model_fields) - flags
    for name, param in spec["parameters"].items():
        assert f"--{FLAGS.get(name, name).replace('_', '-')} {{{name}}}" in spec["command"], name
        info = request.model_fields[name]
        assert param["type"] == ("float" if info.annotation is float else "string"), name  # MLflow has no int type
        if not info.is_required():
            default = "auto" if info.default is None else ",".join(info.default) if name in FLAGS else info.default
            assert str(param["default"]) == str(default), name


@pytest.mark.parametrize(
    ("flow", "request_type"),
    [(train_flow, TrainRequest), (batch_score_flow, ScoreRequest), (protocol_flow, ProtocolRequest)],
)
def test_each_flow_takes_its_request_and_shows_its_fields_in_the_deployment_form(flow, request_type) -> None:
    from prefect.utilities.callables import parameter_schema

    assert list(inspect.signature(flow.fn).parameters) == ["request"]
    schema = parameter_schema(flow).model_dump()
    assert list(schema["properties"]) == ["request"]
    fields = schema["definitions"][request_type.__name__]["properties"]
    assert set(fields) == set(request_type.model_fields)
    for name, info in request_type.model_fields.items():
        assert fields[name]["description"] == info.description, name
        if not info.is_required():
            assert fields[name]["default"] == info.default, name
    minimal = {"library": ["m"]} if request_type is ScoreRequest else {}
    assert flow.validate_parameters({"request": minimal})["request"] == request_type(**minimal)


def test_a_partial_request_of_a_deployment_run_keeps_the_deployments_other_fields(monkeypatch) -> None:
    import flows.parameters

    stored = {"library": ["/srv/music"], "output_dir": "/srv/scores", "top_k": 5}
    monkeypatch.setattr(flows.parameters, "stored_request", lambda: stored)
    request = batch_score_flow.validate_parameters({"request": {"top_k": 2, "tags": "write"}})["request"]
    assert (request.library, request.output_dir, request.top_k, request.tags) == (
        ["/srv/music"],
        "/srv/scores",
        2,
        "write",
    )
    direct = ScoreRequest(library=["music"])
    assert batch_score_flow.validate_parameters({"request": direct})["request"] == direct  # a direct call: as given
    monkeypatch.setattr(flows.parameters, "stored_request", lambda: None)
    assert batch_score_flow.validate_parameters({"request": {"library": ["m"]}})["request"].output_dir == "scores"


def test_feature_and_training_defaults_come_from_the_config_dataclasses() -> None:
    from crnn.config import ModelConfig, SplitConfig, TrainConfig

    train, protocol = TrainRequest(), ProtocolRequest()
    for request in (train, protocol):
        for name in ("epochs", "batch_size", "learning_rate", "patience", "freq_mask", "time_mask", "mixup_alpha"):
            assert getattr(request, name) == getattr(TrainConfig(), name), name
        assert (request.seed, request.pretrained) == (TrainConfig().seed, ModelConfig().pretrained)
        assert request.val_fraction == SplitConfig().val_fraction
    assert train.pipeline_config() == PipelineConfig()  # None feature fields: the architecture's preprocessing
    assert (train.architecture, train.split) == (ModelConfig().architecture, SplitConfig().method)


def test_the_request_module_is_light() -> None:
    """The CLI imports the requests at start-up: no torch, Prefect, MLflow or Typer behind them."""
    import subprocess
    import sys

    code = "import sys, crnn.requests; print(sorted({'torch', 'prefect', 'mlflow', 'typer'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_cli_module_is_light() -> None:
    """--help and bad options answer in about a second: the CLI imports no numerics, decoders, Prefect or MLflow."""
    import subprocess
    import sys

    heavy = {"numpy", "torch", "pandas", "av", "prefect", "mlflow", "sqlalchemy"}
    code = f"import sys, typer_cli; print(sorted({heavy!r} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


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


def test_every_config_option_of_the_train_request_reaches_the_pipeline_config() -> None:
    from crnn.config import flatten

    request = TrainRequest(**NON_DEFAULTS)
    assert set(request.config_options()) == set(NON_DEFAULTS)
    flat = flatten(request.pipeline_config().to_dict())
    for name, value in NON_DEFAULTS.items():
        key = "split.method" if name == "split" else next(k for k in flat if k.endswith(f".{name}"))
        assert flat[key] == value, name
    assert flat["split.seed"] == flat["train.seed"] == 11


def test_download_checks_the_sha256_option(tmp_path) -> None:
    """`download --sha256` reaches the dataset source: a wrong digest stops before any flow runs."""
    import tarfile

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
        (
            ["score", "--library", ".", "--tags", "wirte"],
            "must be one of off, dry-run, write, fill-missing, got 'wirte'",
        ),
        (["train", "--max-segments", "2.5"], "expected an integer or auto, got '2.5'"),
        (["score", "--library", ".", "--format", "csv,xlsx"], "unknown format xlsx; known: csv,jsonl"),
        (["protocol", "--folds", "1"], "need at least 2 folds, got 1"),
    ],
)
def test_a_bad_option_is_a_usage_error_before_anything_starts(tmp_path, args, message) -> None:
    done = _cli(args, tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert message in " ".join(done.stderr.replace("│", " ").split()) and "Traceback" not in done.stderr  # unwrapped
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
