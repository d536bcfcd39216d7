"""A flow's request parameter, completed field by field from its deployment's stored request.

Prefect merges a run's parameters into its deployment's by top-level name only, so a run of
``batch-score-flow/default`` with ``{"request": {"top_k": 2}}`` would lose the deployment's ``library``
and ``output_dir``. :data:`Deployed` fills the fields a run leaves out from the deployment's own
``request`` before the request is validated.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import BeforeValidator

T = TypeVar("T")


def stored_request() -> dict | None:
    """The ``request`` parameter stored on the deployment of the current flow run (``None`` outside one)."""
    from prefect.client.orchestration import get_client
    from prefect.runtime import deployment

    if not deployment.id:
        return None
    with get_client(sync_client=True) as client:
        stored = (client.read_deployment(deployment.id).parameters or {}).get("request")
    return stored if isinstance(stored, dict) else None


def with_deployment_fields(value: Any) -> Any:
    """``value`` (a request given as a dict) over the deployment's stored request; anything else unchanged."""
    if not isinstance(value, dict):
        return value  # a request object: a direct call, not a deployment run
    return {**(stored_request() or {}), **value}


Deployed = Annotated[T, BeforeValidator(with_deployment_fields)]
"""``request: Deployed[TrainRequest]``: the run's fields over the deployment's, then validated."""
