"""Prefect deployments of ``train-flow`` and ``batch-score-flow``: served from this process, or on a work pool.

Flows are loaded from their entrypoints in this checkout (``flow.from_source``), so a process
worker runs them from the same folder, with the same relative paths (``work/``, ``mlflow.db``).
Deployment parameters are stored by the Prefect server, so URIs with credentials are stored redacted
(:func:`infra.redact.conceal`): ``serve`` runs inherit the full ones from this process's environment,
a worker needs them in its own ``$GENRE_CRNN_SECRET_URIS``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectAlreadyExists
from prefect.schedules import Cron

from crnn.requests import DEFAULT_DEPLOYMENT, NIGHTLY_CRON
from infra.redact import MASK, SECRET_URIS_ENV, conceal

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TRAIN_ENTRYPOINT = "flows/train_flow.py:train_flow"
SCORE_ENTRYPOINT = "flows/batch_score_flow.py:batch_score_flow"
DEFAULT_POOL = "genre-crnn"


def _flows():
    root = str(PROJECT_ROOT)
    return flow.from_source(root, TRAIN_ENTRYPOINT), flow.from_source(root, SCORE_ENTRYPOINT)


def _score_parameters(library: list[str], output_dir: str, model_uri: str | None) -> dict:
    fields: dict = {"library": [conceal(r) for r in library], "output_dir": output_dir}
    return {"request": fields | ({"model_uri": model_uri} if model_uri else {})}


def _train_parameters(parameters: dict | None) -> dict:
    fields = dict(parameters or {})
    return {"request": fields | ({"source": conceal(fields["source"])} if "source" in fields else {})}


SCHEMA_CHECK = {"enforce_parameter_schema": False}
"""A run may give some fields of the request (``{"request": {"top_k": 2}}``); the server would check that
part alone against the schema and miss the deployment's ``library``. The flow completes it from the
deployment's request (``flows.parameters.Deployed``) and validates the whole."""


def runner_deployments(
    library: list[str],
    output_dir: str,
    *,
    name: str = DEFAULT_DEPLOYMENT,
    cron: str = NIGHTLY_CRON,
    timezone: str = "UTC",
    train_parameters: dict | None = None,
    model_uri: str | None = None,
) -> list:
    """``train-flow/<name>`` (on demand) and ``batch-score-flow/<name>`` (on ``cron``) for :func:`prefect.serve`."""
    train, score = _flows()
    return [
        train.to_deployment(name=name, parameters=_train_parameters(train_parameters), **SCHEMA_CHECK),
        score.to_deployment(
            name=name,
            parameters=_score_parameters(library, output_dir, model_uri),
            schedules=[Cron(cron, timezone=timezone)],
            **SCHEMA_CHECK,
        ),
    ]


def ensure_process_pool(pool: str) -> None:
    """Create the process work pool ``pool`` unless it exists."""
    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(work_pool=WorkPoolCreate(name=pool, type="process"))
            log.info("created process work pool %s", pool)
        except ObjectAlreadyExists:
            pass


def deploy_to_pool(
    library: list[str],
    output_dir: str,
    *,
    pool: str = DEFAULT_POOL,
    name: str = DEFAULT_DEPLOYMENT,
    cron: str = NIGHTLY_CRON,
    timezone: str = "UTC",
    train_parameters: dict | None = None,
    model_uri: str | None = None,
    dask: str | None = None,
) -> list[str]:
    """Register both deployments on the process work pool ``pool`` (created if missing); return their ids.

    ``dask`` (a scheduler address or ``local:N``) reaches the flow runs as ``GENRE_CRNN_DASK``.
    """
    ensure_process_pool(pool)
    train, score = _flows()
    train_parameters, score_parameters = (
        _train_parameters(train_parameters),
        _score_parameters(library, output_dir, model_uri),
    )
    if MASK in f"{train_parameters} {score_parameters}":
        log.warning("deployment parameters hold redacted URIs: set %s for the worker (see README)", SECRET_URIS_ENV)
    jobs = {"env": {"GENRE_CRNN_DASK": dask}} if dask else {}
    common = {"work_pool_name": pool, "job_variables": jobs, "print_next_steps": False, **SCHEMA_CHECK}
    ids = [
        train.deploy(name=name, parameters=train_parameters, **common),
        score.deploy(
            name=name,
            parameters=score_parameters,
            schedules=[Cron(cron, timezone=timezone)],
            **common,
        ),
    ]
    return [str(i) for i in ids]
