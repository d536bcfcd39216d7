"""Prefect and MLflow name each other: flow-run tags on the MLflow run, the run's address in a keyed Prefect artifact."""

from __future__ import annotations

import asyncio

from mlflow.tracking import MlflowClient
from prefect import flow

from infra import tracking
from tasks.tracking import PREFECT_FLOW_RUN_TAG, PREFECT_FLOW_RUN_URL_TAG, announce_run, prefect_tags


def _artifact(key: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async def read():
        async with get_client() as client:
            return await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))

    return asyncio.run(read())


def test_an_mlflow_run_and_its_flow_run_name_each_other(prefect_harness, mlflow_store, monkeypatch) -> None:
    assert prefect_tags() == {}  # outside a flow

    @flow(name="link-test")
    def linked(api_url: str | None) -> tuple[dict, str]:
        if api_url:
            monkeypatch.setenv("PREFECT_API_URL", api_url)
        tags = prefect_tags()
        run_id = tracking.start_run("unit", "cnn-lstm-stratified", {}, tags, short_id=True)
        announce_run(run_id, "mlflow-run-unit-test", "unit test")
        return tags, run_id

    tags, run_id = linked(None)  # the temporary API: the id only, it has no lasting page
    assert set(tags) == {PREFECT_FLOW_RUN_TAG}
    assert MlflowClient().get_run(run_id).data.tags[PREFECT_FLOW_RUN_TAG] == tags[PREFECT_FLOW_RUN_TAG]
    (artifact,) = _artifact("mlflow-run-unit-test")
    assert artifact.type == "markdown" and run_id in artifact.data and "sqlite:///" in artifact.data

    from prefect.settings import PREFECT_API_URL

    tags, _ = linked(PREFECT_API_URL.value())  # a Prefect server: its UI page too
    assert tags[PREFECT_FLOW_RUN_URL_TAG].endswith(f"/runs/flow-run/{tags[PREFECT_FLOW_RUN_TAG]}")
