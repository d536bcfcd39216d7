"""The Prefect API a command's flow reports to: the configured server, else a temporary local one started early.

Without ``PREFECT_API_URL`` (environment or Prefect profile), Prefect itself starts a temporary API
server inside the first flow call and waits for it there, after every import of the command, then
waits up to 5 s for it to stop. :func:`prefect_api` starts the same kind of server (``prefect server
start --no-ui`` with Prefect's ephemeral services: the API, the task-run recorder and the event
persister, its records in ``$PREFECT_HOME``'s database as before)
as soon as a command's options are valid, so that it comes up on another core while the command
imports torch and MLflow and checks its services; the flow then only waits for what is left of the
start-up, and the server is stopped at once when the command ends (after Prefect's log and event
queues are sent).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
STOP_TIMEOUT_S = 10.0
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
EPHEMERAL_SERVER_ENV = {"PREFECT__SERVER_EPHEMERAL": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
"""The temporary server runs the services of Prefect's own temporary server, no more: its task-run recorder and
event persister (task runs reach the API as events; ``--no-services`` would drop them), not its scheduler."""


class PrefectApiError(RuntimeError):
    """The temporary Prefect API server did not come up."""


def configured_url() -> str | None:
    """The Prefect API URL of ``$PREFECT_API_URL`` or the active Prefect profile, or ``None`` (no server)."""
    if url := os.environ.get("PREFECT_API_URL"):
        return url
    from prefect.settings import get_current_settings

    return get_current_settings().api.url or None


class PrefectApi:
    """The API of this command: ``url`` of a configured server, or of a temporary one (``process`` not ``None``)."""

    def __init__(self, url: str, process: subprocess.Popen | None = None, log: Path | None = None) -> None:
        self.url, self.process, self.log = url, process, log
        self._ready = process is None
        self._used = False  # ready() was called: flows may have queued logs and events for the API
        self._settings = contextlib.ExitStack()

    @property
    def temporary(self) -> bool:
        """Whether this command started the server itself."""
        return self.process is not None

    def ready(self, timeout_s: float | None = None) -> str:
        """Wait until the API answers ``/health``, point this process's Prefect settings at it, return the URL.

        A configured server is returned as it is (``infra.tracking.check_services`` checks it).

        Raises:
            PrefectApiError: the temporary server exited, or did not answer within ``timeout_s`` seconds
                (default: Prefect's ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS``).
        """
        self._used = True
        if self._ready:
            return self.url
        import requests
        from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, get_current_settings, temporary_settings

        timeout_s = timeout_s or get_current_settings().server.ephemeral.startup_timeout_seconds
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise PrefectApiError(
                    f"temporary Prefect server exited with code {self.process.returncode}: {self._last_log_line()}"
                )
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.url}/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise PrefectApiError(
                    f"temporary Prefect server at {self.url} did not answer within {timeout_s:.0f} s "
                    f"(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS): {self._last_log_line()}"
                )
            time.sleep(0.05)
        # No UI (and gone when the command ends): Prefect links no run page to it, as with its own server.
        self._settings.enter_context(temporary_settings({PREFECT_API_URL: self.url, PREFECT_UI_URL: ""}))
        self._ready = True
        return self.url

    def _last_log_line(self) -> str:
        lines = self.log.read_text(errors="replace").strip().splitlines() if self.log and self.log.exists() else []
        return lines[-1] if lines else f"no output (see {self.log})"

    def close(self) -> None:
        """Send Prefect's queued logs and events (to either API), then stop a temporary server (SIGTERM, SIGKILL after 10 s).

        After it, every flow and task run, state and log of this process is in the API's database, so the
        command may end without the interpreter's own at-exit drain (see ``typer_cli.main``).
        """
        if self._used and self._ready:
            _drain_prefect_queues()
        if self.process is None:
            return
        self._settings.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None


def _drain_prefect_queues() -> None:
    """Block until the logs and events this process queued for the API are sent (Prefect does this at exit)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()
    EventsWorker.drain_all(timeout=STOP_TIMEOUT_S, at_exit=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _end_with_parent() -> None:
    """In the server's process before exec: on Linux, receive SIGTERM when the command dies (even by SIGKILL)."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def start_temporary_server() -> PrefectApi:
    """Start ``prefect server start --no-ui`` (:data:`EPHEMERAL_SERVER_ENV`) on a free loopback port; do not wait for it.

    Its stderr goes to ``$PREFECT_HOME/temporary-server.log``; its database is ``$PREFECT_HOME``'s,
    as for Prefect's own temporary server, so a later ``prefect server start`` shows the runs.
    """
    from prefect.settings import get_current_settings

    home = Path(get_current_settings().home)
    home.mkdir(parents=True, exist_ok=True)
    port, log = _free_port(), home / "temporary-server.log"
    prefect = shutil.which("prefect", path=str(Path(sys.executable).parent)) or "prefect"
    cmd = [prefect, "server", "start", "--host", HOST, "--port", str(port), "--no-ui"]
    with open(log, "wb") as err:
        process = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,  # Ctrl-C reaches the command, which stops the server itself
            preexec_fn=_end_with_parent,
            env=os.environ | EPHEMERAL_SERVER_ENV,
        )
    url = f"http://{HOST}:{port}/api"
    logger.info(
        "no Prefect API configured: starting a temporary server at %s (runs kept in %s; a running "
        "`prefect server start` with PREFECT_API_URL set saves this start-up)",
        url,
        home,
    )
    return PrefectApi(url, process, log)


@contextlib.contextmanager
def prefect_api() -> Iterator[PrefectApi]:
    """The configured Prefect API, else a temporary server started now and stopped when the block ends.

    Call :meth:`PrefectApi.ready` before the first flow call. Starting early lets the server's
    start-up (seconds of imports and database migrations) overlap the command's own.
    """
    url = configured_url()
    api = PrefectApi(url) if url else start_temporary_server()
    try:
        yield api
    finally:
        api.close()
