"""The Prefect API of a command: a configured server is used as it is; otherwise a temporary one, stopped at the end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import requests

from infra import prefect_api
from infra.prefect_api import PrefectApiError


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return open(f"/proc/{pid}/stat").read().rpartition(")")[2].split()[0] != "Z"


def _group(pgid: int) -> list[int]:
    """The live processes of process group ``pgid``."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = open(f"/proc/{entry}/stat").read().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                pids.append(int(entry))
    return pids


def test_a_configured_api_is_used_and_nothing_is_started(monkeypatch):
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    with prefect_api.prefect_api() as api:
        assert not api.temporary
        assert api.ready() == "http://127.0.0.1:9/api"


@pytest.mark.server
def test_the_temporary_server_keeps_the_flow_runs_and_stops_with_the_command(tmp_path):
    home = tmp_path / "prefect-home"
    script = textwrap.dedent(
        """
        import sys
        from prefect import flow
        from infra.prefect_api import prefect_api

        @flow(name="probe")
        def probe():
            return 42

        with prefect_api() as api:
            assert api.temporary
            print(api.process.pid, flush=True)
            api.ready()
            assert probe() == 42
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")} | {
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    }
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    server = int(done.stdout.split()[0])
    assert not _alive(server) and not _group(server), "the temporary server outlived its command"
    # the run is in $PREFECT_HOME's database, where a later `prefect server start` shows it
    check = subprocess.run(
        [sys.executable, "-c", "from prefect.settings import get_current_settings as s; print(s().home)"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert check.stdout.strip() == str(home)
    assert (home / "prefect.db").stat().st_size > 0
    import sqlite3

    with sqlite3.connect(home / "prefect.db") as db:
        states = db.execute(
            "SELECT state_type FROM flow_run JOIN flow ON flow.id = flow_run.flow_id WHERE flow.name = 'probe'"
        )
        assert [s for (s,) in states] == ["COMPLETED"]


@pytest.mark.server
def test_the_temporary_server_dies_with_a_killed_command(tmp_path):
    script = textwrap.dedent(
        """
        import time
        from infra.prefect_api import prefect_api

        with prefect_api() as api:
            print(api.process.pid, api.url, flush=True)
            api.ready()
            print("ready", flush=True)
            time.sleep(600)
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")} | {
        "PREFECT_HOME": str(tmp_path),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    }
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True)
    server, url = proc.stdout.readline().split()
    assert proc.stdout.readline().strip() == "ready"
    assert requests.get(f"{url}/health").status_code == 200
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 30
    while _group(int(server)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _group(int(server)), "a SIGKILLed command left its temporary Prefect server running"


def test_a_server_that_exits_is_one_line_naming_its_last_words(tmp_path, monkeypatch):
    fake = tmp_path / "prefect"
    fake.write_text("#!/bin/sh\necho 'starting' >&2\necho 'database is locked' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(prefect_api, "configured_url", lambda: None)
    monkeypatch.setattr(prefect_api.shutil, "which", lambda *a, **k: str(fake))
    with pytest.raises(PrefectApiError, match=r"exited with code 3: database is locked$"):
        with prefect_api.prefect_api() as api:
            api.ready(timeout_s=30)
