"""Where a flow's tasks run: threads in the flow's process (default), or a Dask cluster (``prefect-dask``).

The choice comes from ``--dask`` on the CLI, or from the environment variable ``GENRE_CRNN_DASK`` (what
a deployment or worker sets): a scheduler address (``tcp://host:8786``) joins an existing cluster;
``local:N`` starts a local cluster of N single-threaded worker processes for the run.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from prefect.task_runners import ThreadPoolTaskRunner

if TYPE_CHECKING:
    from prefect_dask import DaskTaskRunner

DASK_ENV = "GENRE_CRNN_DASK"


def task_runner(threads: int, dask: str | None = None) -> ThreadPoolTaskRunner | DaskTaskRunner:
    """The task runner for ``dask`` (else ``$GENRE_CRNN_DASK``); without either, ``threads`` threads.

    Raises:
        ValueError: ``local:N`` with N not a positive integer.
    """
    spec = (dask if dask is not None else os.environ.get(DASK_ENV, "")).strip()
    if not spec:
        return ThreadPoolTaskRunner(max_workers=threads)
    from prefect_dask import DaskTaskRunner  # a second of imports that runs without Dask do not pay

    if spec == "local" or spec.startswith("local:"):
        n = spec.partition(":")[2] or "2"
        if not n.isdigit() or int(n) < 1:
            raise ValueError(f"{DASK_ENV}/--dask: expected local:N with N >= 1, got {spec!r}")
        return DaskTaskRunner(cluster_kwargs={"n_workers": int(n), "threads_per_worker": 1, "processes": True})
    return DaskTaskRunner(address=spec)
