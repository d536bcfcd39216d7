"""The team stack's compose file: it validates, and it keeps the promises of issue 5 without a Docker engine.

Health checks on every long-running service, ports on ``${BIND_ADDRESS}``, named volumes, credentials
only as ``${...}`` references (never literal, never defaulted, never in an image), and every variable
documented in ``infra/.env.example``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from pydantic import AliasChoices, BaseModel

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
COMPOSE = INFRA / "docker-compose.yml"
ENV_EXAMPLE = INFRA / ".env.example"
DOCKERFILES = [INFRA / "mlflow.Dockerfile", INFRA / "worker.Dockerfile"]

SERVICES = {"postgres", "minio", "minio-init", "mlflow", "prefect-server", "prefect-worker"}
ONE_SHOT = {"minio-init"}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|KEY", re.IGNORECASE)
# ${NAME}, ${NAME:?message} or ${NAME?message}: a required reference, no default value
REQUIRED_REF = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(:?\?[^}]*)?\}")
# ${NAME...} not escaped as $${...}
VAR_REF = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)")
URL_CREDENTIALS = re.compile(r"://(?P<user>[^/:@\s]+):(?P<password>[^/@\s]+)@")
REF_TOKEN = "\x00ref\x00"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict) -> dict:
    return compose["services"]


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: str(v) for k, v in env.items()}


def _command(service: dict) -> list[str]:
    command = service.get("command") or []
    return command.split() if isinstance(command, str) else [str(c) for c in command]


def _documented() -> set[str]:
    names = set()
    for line in ENV_EXAMPLE.read_text().splitlines():
        if m := re.match(r"([A-Za-z_][A-Za-z0-9_]*)=", line):
            names.add(m.group(1))
    return names


def _compose_cli() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


def test_compose_config_validates() -> None:
    cli = _compose_cli()
    if cli is None:
        pytest.skip("neither docker-compose nor `docker compose` is installed")
    result = subprocess.run(
        [*cli, "-f", str(COMPOSE), "--env-file", str(ENV_EXAMPLE), "config"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def test_services_exist_without_version_key(compose: dict) -> None:
    assert set(compose["services"]) == SERVICES
    assert "version" not in compose


def test_long_running_services_have_healthchecks_and_restart(services: dict) -> None:
    for name, service in services.items():
        if name in ONE_SHOT:
            continue
        test = (service.get("healthcheck") or {}).get("test")
        assert test and test != ["NONE"], f"{name} has no healthcheck"
        assert service.get("restart") == "unless-stopped", f"{name}: restart is {service.get('restart')!r}"


def test_dependents_wait_for_health_and_bucket(services: dict) -> None:
    for name in ("mlflow", "prefect-server"):
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["mlflow"]["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"
    assert services["minio-init"]["depends_on"]["minio"]["condition"] == "service_healthy"
    worker = services["prefect-worker"]["depends_on"]
    assert {worker[s]["condition"] for s in ("prefect-server", "mlflow")} == {"service_healthy"}


def test_published_ports_bind_to_configurable_address(services: dict) -> None:
    published = 0
    for name, service in services.items():
        for port in service.get("ports", []):
            assert isinstance(port, str), f"{name}: use the short string syntax for {port!r}"
            assert port.startswith("${BIND_ADDRESS"), f"{name}: {port} does not bind to ${{BIND_ADDRESS}}"
            published += 1
    assert published == 5  # postgres, minio API and console, mlflow, prefect


def test_named_volumes_exist_and_are_used(compose: dict, services: dict) -> None:
    declared = set(compose.get("volumes") or {})
    assert {"pgdata", "miniodata"} <= declared
    mounts = {name: [str(v).split(":")[0] for v in s.get("volumes", [])] for name, s in services.items()}
    assert "pgdata" in mounts["postgres"]
    assert "miniodata" in mounts["minio"]
    used = {source for sources in mounts.values() for source in sources}
    assert declared <= used, f"declared but unused: {declared - used}"


def _check_no_literal_secret(where: str, key: str | None, value: str) -> None:
    """Secret-named keys hold a required ``${...}`` reference; URLs carry credentials only as such references."""
    if key is not None and SECRET_NAME.search(key):
        assert REQUIRED_REF.fullmatch(value), f"{where}: {key} must be a ${{...}} reference without default"
    masked = REQUIRED_REF.sub(REF_TOKEN, value)
    for m in URL_CREDENTIALS.finditer(masked):
        assert m.group("user") == m.group("password") == REF_TOKEN, f"{where}: literal credential in a URL: {value}"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("POSTGRES_PASSWORD", "hunter22"),
        ("AWS_SECRET_ACCESS_KEY", "${MINIO_ROOT_PASSWORD:-minioadmin}"),
        ("MLFLOW_BACKEND_STORE_URI", "postgresql://${POSTGRES_USER:?x}:hunter22@postgres:5432/mlflow"),
        ("MC_HOST_stack", "http://admin:${MINIO_ROOT_PASSWORD:?set it in infra/.env}@minio:9000"),
    ],
)
def test_secret_check_catches_literals(key: str, value: str) -> None:
    with pytest.raises(AssertionError):
        _check_no_literal_secret("example", key, value)


def test_no_literal_secrets_in_environment_command_or_build_args(services: dict) -> None:
    urls = [
        v for s in services.values() for v in _env(s).values() if URL_CREDENTIALS.search(REQUIRED_REF.sub(REF_TOKEN, v))
    ]
    assert len(urls) == 3  # MLflow's and Prefect's database URLs, mc's MinIO alias: all checked below
    for name, service in services.items():
        for key, value in _env(service).items():
            _check_no_literal_secret(f"{name}.environment", key, value)
        for arg in _command(service):
            _check_no_literal_secret(f"{name}.command", None, arg)
            assert not (arg.startswith("-") and SECRET_NAME.search(arg)), f"{name}: secret option on a command line"
        build = service.get("build")
        args = build.get("args", {}) if isinstance(build, dict) else {}
        for key, value in args.items() if isinstance(args, dict) else []:
            _check_no_literal_secret(f"{name}.build.args", key, str(value))
        assert isinstance(args, dict), f"{name}: write build.args as a mapping"


def test_placeholder_secrets_never_appear_in_compose_file() -> None:
    text = COMPOSE.read_text()
    for line in ENV_EXAMPLE.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.startswith("#") and SECRET_NAME.search(key):
            assert value and value not in text, f"the value of {key} is written in the compose file"


def test_mlflow_serves_artifacts_from_s3_through_cli_env_vars(services: dict) -> None:
    from mlflow.cli import server

    mlflow = services["mlflow"]
    assert "--serve-artifacts" in _command(mlflow)
    assert mlflow["build"] == {"context": "..", "dockerfile": "infra/mlflow.Dockerfile"}
    env = _env(mlflow)
    assert env["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg2://")  # SQLAlchemy 2.1 defaults to psycopg 3
    assert env["MLFLOW_BACKEND_STORE_URI"].endswith("@postgres:5432/mlflow")
    assert env["MLFLOW_ARTIFACTS_DESTINATION"].startswith("s3://")
    server_vars = {p.envvar for p in server.params if p.envvar}
    assert {"MLFLOW_BACKEND_STORE_URI", "MLFLOW_ARTIFACTS_DESTINATION"} <= server_vars


def _prefect_env_names(model: type[BaseModel]) -> set[str]:
    prefix = model.model_config.get("env_prefix", "")
    names = set()
    for field_name, field in model.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            names |= _prefect_env_names(field.annotation)
            continue
        names.add(f"{prefix}{field_name}".upper())
        if isinstance(field.validation_alias, AliasChoices):
            names |= {c.upper() for c in field.validation_alias.choices if isinstance(c, str)}
    return names


def test_prefect_settings_are_real_and_worker_uses_the_pool(services: dict) -> None:
    from prefect.settings import Settings

    from infra.deployments import DEFAULT_POOL

    known = _prefect_env_names(Settings)
    for name in ("prefect-server", "prefect-worker"):
        unknown = {k for k in _env(services[name]) if k.startswith("PREFECT_")} - known
        assert not unknown, f"{name}: not Prefect settings: {unknown}"
    server = services["prefect-server"]
    assert server["image"] == "prefecthq/prefect:3.8.8-python3.11"
    assert _env(server)["PREFECT_API_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://")
    worker = services["prefect-worker"]
    command = _command(worker)
    assert command[:3] == ["prefect", "worker", "start"]
    assert command[command.index("--pool") + 1] == DEFAULT_POOL == "genre-crnn"
    assert command[command.index("--type") + 1] == "process"
    assert worker["build"] == {"context": "..", "dockerfile": "infra/worker.Dockerfile"}
    env = _env(worker)
    assert env["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert "${LIBRARY_DIR:-./music}:/music:ro" in worker["volumes"]


def test_images_are_pinned(services: dict) -> None:
    for name, service in services.items():
        if "image" in service:
            tag = service["image"].rpartition(":")[2]
            assert "/" not in tag and tag not in ("", "latest"), f"{name}: pin the image tag"
    assert services["minio"]["image"].split(":")[1].startswith("RELEASE.")
    assert services["minio-init"]["image"].split(":")[1].startswith("RELEASE.")


def _instructions(dockerfile: Path) -> list[str]:
    joined = re.sub(r"\\\n", " ", dockerfile.read_text())
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfiles_bake_in_no_secrets(dockerfile: Path) -> None:
    instructions = _instructions(dockerfile)
    assert instructions[0] == "FROM python:3.11-slim"
    for line in instructions:
        keyword = line.split(maxsplit=1)[0].upper()
        if keyword in ("ENV", "ARG"):
            assert not SECRET_NAME.search(line), f"{dockerfile.name}: {line}"


def test_dockerignore_keeps_out_envs_outputs_and_secrets() -> None:
    patterns = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".venv", "work", "scores", "mlruns", "mlartifacts", "**/*.db", ".git", "**/.env", ".stack"} <= patterns


def test_every_compose_variable_is_documented() -> None:
    referenced = set(VAR_REF.findall(COMPOSE.read_text()))
    assert referenced, "no ${...} references found"
    missing = referenced - _documented()
    assert not missing, f"not documented in infra/.env.example: {sorted(missing)}"


def test_postgres_init_creates_both_databases(services: dict) -> None:
    assert "./postgres-init:/docker-entrypoint-initdb.d:ro" in services["postgres"]["volumes"]
    sql = (INFRA / "postgres-init" / "01-databases.sql").read_text()
    for db in ("mlflow", "prefect"):
        assert f"CREATE DATABASE {db}" in sql
