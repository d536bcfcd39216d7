"""MLflow tracking adapter: store selection, runs, params, metrics, datasets, artifacts."""

from __future__ import annotations

import importlib.util
import logging
import os
import socket
import subprocess
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from crnn.requests import DEFAULT_EXPERIMENT
from infra.redact import redact

log = logging.getLogger(__name__)

SPLIT_ARTIFACT_DIR = "data"
"""Run artifact folder holding the split table (``split-*.csv``) and the exclusion list."""


_USER_REGISTRY_URI = os.environ.get("MLFLOW_REGISTRY_URI")
# Read once at import: mlflow.set_registry_uri writes this variable itself, so reading it later
# would return whatever the previous configure_tracking call chose.


class TrackingConfigError(RuntimeError):
    """The tracking or registry URI cannot work here (e.g. its database driver is not installed)."""


_DB_DRIVERS = {
    "postgresql+psycopg2": "psycopg2",
    "postgresql+psycopg": "psycopg",
    "postgresql+pg8000": "pg8000",
    "mysql": "MySQLdb",
    "mysql+mysqldb": "MySQLdb",
    "mysql+pymysql": "pymysql",
    "mssql+pyodbc": "pyodbc",
}
"""SQLAlchemy URI scheme -> the Python module it needs."""


def normalize_store_uri(uri: str) -> str:
    """``postgresql://`` and ``postgres://`` become ``postgresql+psycopg2://`` (the driver installed); others are kept.

    Raises:
        TrackingConfigError: the URI names a database driver that is not installed.
    """
    scheme, sep, rest = uri.partition("://")
    if sep and scheme.lower() in ("postgresql", "postgres"):
        uri, scheme = f"postgresql+psycopg2://{rest}", "postgresql+psycopg2"
    module = _DB_DRIVERS.get(scheme.lower()) if sep else None
    if module and importlib.util.find_spec(module) is None:
        raise TrackingConfigError(f"{redact(uri)}: the database driver {module!r} is not installed")
    return uri


def configure_tracking(tracking_uri: str | None = None) -> str:
    """Point MLflow at ``tracking_uri``, else ``$MLFLOW_TRACKING_URI``, else ``./mlflow.db`` (SQLite).

    Returns the URI in use. The embedded default needs no server; its artifacts go to
    ``./mlartifacts`` (see :func:`ensure_experiment`). Database URIs are normalised and their
    driver checked by :func:`normalize_store_uri`, so a bad one fails here, before any work.

    Raises:
        TrackingConfigError: the tracking or registry URI needs a driver that is not installed.
    """
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path('mlflow.db').resolve()}"
    uri = normalize_store_uri(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(normalize_store_uri(_USER_REGISTRY_URI) if _USER_REGISTRY_URI else uri)
    return uri


REACH_TIMEOUT_S = 5.0
"""How long :func:`check_services` waits for a tracking server, database or Prefect API to answer (in seconds)."""


def check_services(timeout_s: float = REACH_TIMEOUT_S) -> None:
    """Fail fast when the tracking store or the Prefect API in use does not answer, before any work starts.

    Checks an ``http(s)://`` tracking URI's ``/health``, connects to a database URI (``connect_timeout``),
    and checks ``$PREFECT_API_URL``'s ``/health`` when set (unset: a temporary local API is started later).
    Call :func:`configure_tracking` first.

    Raises:
        TrackingConfigError: one line naming the (redacted) URL and the reason.
    """
    import requests
    import sqlalchemy

    uri = mlflow.get_tracking_uri()
    urls = [("MLflow tracking server", uri.rstrip("/") + "/health")] if uri.startswith(("http://", "https://")) else []
    if api := os.environ.get("PREFECT_API_URL"):
        urls.append(("Prefect API", api.rstrip("/") + "/health"))
    for what, url in urls:
        try:
            requests.get(url, timeout=timeout_s).raise_for_status()
        except requests.RequestException as exc:
            reason = type(exc).__name__ if not isinstance(exc, requests.HTTPError) else str(exc.response.status_code)
            raise TrackingConfigError(
                f"{what} at {redact(url.rsplit('/health', 1)[0])} does not answer ({reason})"
            ) from exc
    if not _is_local_store(uri) and not uri.startswith(("http://", "https://", "databricks")):
        connect_args = {"connect_timeout": int(timeout_s)} if uri.startswith("postgresql") else {}
        try:
            with sqlalchemy.create_engine(uri, connect_args=connect_args).connect():
                pass
        except sqlalchemy.exc.SQLAlchemyError as exc:
            first = str(exc.orig if getattr(exc, "orig", None) else exc).strip().splitlines()[0]
            raise TrackingConfigError(f"tracking database {redact(uri)} does not answer: {first}") from exc


def _is_local_store(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
"""The experiment tag MLflow's UI reads to choose an experiment's first page (model training: the runs table)
when its GenAI/Model-training switch is off; MLflow 3.17's UI has the switch on and ignores it (see
:data:`UI_MODEL_TRAINING`)."""
UI_MODEL_TRAINING = "?workflowType=machine_learning"
"""Query of the UI addresses we print: MLflow 3.17's UI opens an experiment on its runs table only with it
(otherwise on the browser's last choice of its GenAI/Model-training switch, GenAI at first)."""


def ensure_experiment(name: str = DEFAULT_EXPERIMENT) -> str:
    """Experiment id for ``name``, created if missing (local stores keep artifacts in ``./mlartifacts``).

    The experiment is tagged :data:`EXPERIMENT_KIND_TAG` = :data:`EXPERIMENT_KIND` (also an existing one
    that lacks the tag), so the UI opens it on its runs table.
    """
    client = MlflowClient()
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if EXPERIMENT_KIND_TAG not in exp.tags:
            client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return exp.experiment_id
    location = Path("mlartifacts").resolve().as_uri() if _is_local_store(mlflow.get_tracking_uri()) else None
    return client.create_experiment(name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})


def run_url(run_id: str) -> str | None:
    """The run's page in the MLflow UI, when the tracking URI is an ``http(s)://`` server.

    ``<tracking URI>/#/experiments/<id>/runs/<run id>?workflowType=machine_learning``, credentials
    redacted; ``None`` for database and file stores (they have no UI address).
    """
    uri = mlflow.get_tracking_uri()
    if not uri.startswith(("http://", "https://")):
        return None
    experiment_id = MlflowClient().get_run(run_id).info.experiment_id
    return f"{redact(uri.rstrip('/'))}/#/experiments/{experiment_id}/runs/{run_id}{UI_MODEL_TRAINING}"


def git_commit() -> str | None:
    """The checkout's HEAD commit, or ``None`` outside a git work tree."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, cwd=Path(__file__).parent
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


def _run_exists(client: MlflowClient, run_id: str) -> bool:
    try:
        client.get_run(run_id)
    except mlflow.exceptions.MlflowException:
        return False
    return True


OWNER_HOST_TAG, OWNER_PID_TAG = "genre_crnn.host", "genre_crnn.pid"
"""Tags naming the process that runs an MLflow run, so a later run can tell a killed one."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. EPERM: the pid exists, owned by someone else
        return True
    return True


def end_stale_runs(experiment_id: str) -> list[str]:
    """Mark KILLED the RUNNING runs of ``experiment_id`` whose process (on this host) is gone; return their ids.

    A training killed by SIGKILL or a power cut never ends its run; this is called when the next one starts.
    Runs of other hosts, and runs without the owner tags, are left alone.
    """
    client, host, ended = MlflowClient(), socket.gethostname(), []
    for run in client.search_runs([experiment_id], "attributes.status = 'RUNNING'", max_results=1000):
        owner_host, owner_pid = run.data.tags.get(OWNER_HOST_TAG), run.data.tags.get(OWNER_PID_TAG, "")
        if owner_host == host and owner_pid.isdigit() and not _alive(int(owner_pid)):
            client.set_tag(run.info.run_id, "genre_crnn.end_reason", f"process {owner_pid} was gone")
            client.set_terminated(run.info.run_id, "KILLED")
            log.warning(
                "MLflow run %s was left RUNNING by process %s, now gone: marked KILLED", run.info.run_id, owner_pid
            )
            ended.append(run.info.run_id)
    return ended


SHORT_ID_CHARS = 8
"""Characters of the run id that end a run name made with ``short_id=True`` (``crnn-gru-stratified-1a2b3c4d``)."""


def start_run(
    experiment: str, run_name: str, params: Mapping[str, Any], tags: Mapping[str, str], *, short_id: bool = False
) -> str:
    """Create a run (or adopt ``$MLFLOW_RUN_ID``, set by ``mlflow run``), log ``params`` (redacted) and ``tags``; return its id.

    With ``short_id``, the run is named ``<run_name>-<first SHORT_ID_CHARS of its id>``, so runs of the
    same model and split stay apart in the UI. Runs of this experiment left RUNNING by a process that is
    gone are first marked KILLED (:func:`end_stale_runs`).
    """
    client = MlflowClient()
    all_tags = dict(tags) | {OWNER_HOST_TAG: socket.gethostname(), OWNER_PID_TAG: str(os.getpid())}
    if commit := git_commit():
        all_tags["mlflow.source.git.commit"] = commit
    run_id = os.environ.get("MLFLOW_RUN_ID")
    adopted = bool(run_id) and _run_exists(client, run_id)
    experiment_id = client.get_run(run_id).info.experiment_id if adopted else ensure_experiment(experiment)
    end_stale_runs(experiment_id)
    if not adopted:
        run_id = client.create_run(experiment_id, run_name=run_name).info.run_id
    all_tags["mlflow.runName"] = f"{run_name}-{run_id[:SHORT_ID_CHARS]}" if short_id else run_name
    items = [Param(k, redact(str(v))) for k, v in params.items()]  # e.g. data.source with user:password@
    for i in range(0, max(len(items), 1), 100):  # one batch at least: the tags go with the first
        client.log_batch(
            run_id, params=items[i : i + 100], tags=[RunTag(k, v) for k, v in all_tags.items()] if i == 0 else []
        )
    return run_id


def log_metrics(run_id: str, metrics: Mapping[str, float], step: int | None = None) -> None:
    """Log ``{name: value}`` to the run in one batch."""
    now = int(time.time() * 1000)
    batch = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
    MlflowClient().log_batch(run_id, metrics=batch)


def log_params(run_id: str, params: Mapping[str, Any]) -> None:
    """Log extra params to the run."""
    MlflowClient().log_batch(run_id, params=[Param(k, redact(str(v))) for k, v in params.items()])


def set_tags(run_id: str, tags: Mapping[str, str]) -> None:
    """Set tags on the run."""
    client = MlflowClient()
    for k, v in tags.items():
        client.set_tag(run_id, k, v)


def log_artifact(run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
    """Upload one file to the run's artifacts."""
    MlflowClient().log_artifact(run_id, str(path), artifact_path)


def log_table(run_id: str, table: Any, artifact_file: str) -> None:
    """Log a DataFrame as an MLflow table artifact (``artifact_file``: a ``.json`` path in the run's artifacts)."""
    MlflowClient().log_table(run_id, data=table, artifact_file=artifact_file)


def log_split_datasets(run_id: str, table_csv: str | Path, source: str) -> dict[str, str]:
    """Log one dataset input per split (context = split name) from a split table; return their digests.

    Uses the client API, so the run stays RUNNING (``mlflow.start_run`` would end it on exit).
    """
    import pandas as pd

    df = pd.read_csv(table_csv)
    inputs, digests = [], {}
    for split, part in df.groupby("split"):
        with warnings.catch_warnings():  # a local path resolves to two equivalent MLflow source types; either is right
            warnings.filterwarnings(
                "ignore", message="The specified dataset source can be interpreted in multiple ways"
            )
            ds = mlflow.data.from_pandas(
                part.reset_index(drop=True), source=redact(source), name=f"gtzan-{split}", targets="genre"
            )
        inputs.append(DatasetInput(ds._to_mlflow_entity(), tags=[InputTag(MLFLOW_DATASET_CONTEXT, str(split))]))
        digests[str(split)] = ds.digest
    MlflowClient().log_inputs(run_id, datasets=inputs)
    return digests


def end_run(run_id: str, status: str = "FINISHED") -> None:
    """Close the run with ``status`` (``FINISHED``, ``FAILED`` or ``KILLED``)."""
    MlflowClient().set_terminated(run_id, status)


PREFECT_FLOW_RUN_TAG, PREFECT_FLOW_RUN_URL_TAG = "prefect.flow_run_id", "prefect.flow_run_url"
"""Tags of an MLflow run started by a Prefect flow run: that flow run's id and UI address."""


def registered_model_tags(version: str) -> dict[str, str]:
    """``model.name``, ``model.version`` and ``model.run_id`` (the run that logged it) of ``name/N``; ``{}`` otherwise.

    ``version`` is what :func:`infra.registry.resolve_model` recorded (``genre-crnn/3``, or a
    ``...#sha256=`` form for models outside the registry, which have no registry entry).
    """
    name, sep, number = version.rpartition("/")
    if not sep or not number.isdigit():
        return {}
    mv = MlflowClient().get_model_version(name, number)
    return {"model.name": name, "model.version": number, "model.run_id": mv.run_id or ""}


def log_artifacts(run_id: str, paths: list[str | Path], artifact_path: str | None = None) -> None:
    """Upload the files ``paths`` into the run's folder ``artifact_path`` (the run root when ``None``)."""
    client = MlflowClient()
    for path in paths:
        client.log_artifact(run_id, str(path), artifact_path)


def end_flow_run_runs(experiment: str, flow_run_id: str, status: str = "FAILED") -> list[str]:
    """Close with ``status`` the RUNNING runs of ``experiment`` tagged with Prefect flow run ``flow_run_id``; their ids."""
    client = MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    query = f"attributes.status = 'RUNNING' and tags.`{PREFECT_FLOW_RUN_TAG}` = '{flow_run_id}'"
    ended = [run.info.run_id for run in client.search_runs([exp.experiment_id], query, max_results=100)]
    for run_id in ended:
        client.set_terminated(run_id, status)
    return ended
