"""Thin Prefect tasks around ``crnn`` functions; each returns paths, ids or small dicts."""

import logging

from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger


def task_logger() -> logging.Logger | logging.LoggerAdapter:
    """The Prefect run logger inside a run; a standard logger when a task's ``.fn`` is called directly."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("genre-crnn.tasks")
