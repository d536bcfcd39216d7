"""infra.stack's ports: one place chooses them all, SeaweedFS's gRPC ports (port + 10000) included."""

from __future__ import annotations

import socket

from infra.stack import GRPC_OFFSET, HOST, PORTS, WEED_PORTS, _weed_command, choose_ports


def _every_port(ports: dict[str, int]) -> list[int]:
    return [*ports.values(), *(ports[name] + GRPC_OFFSET for name in WEED_PORTS)]


def test_ports_are_distinct_and_leave_room_for_the_grpc_ports() -> None:
    ports = choose_ports()
    assert set(ports) == set(PORTS)
    every = _every_port(ports)
    assert len(set(every)) == len(every) and max(every) < 65536


def test_a_restart_keeps_the_free_ports_and_replaces_a_taken_one_or_grpc_port() -> None:
    first = choose_ports()
    with socket.socket() as mlflow, socket.socket() as filer_grpc:
        mlflow.bind((HOST, first["mlflow"]))
        filer_grpc.bind((HOST, first["s3-filer"] + GRPC_OFFSET))
        mlflow.listen()
        filer_grpc.listen()
        again = choose_ports(first)
    assert again["mlflow"] != first["mlflow"] and again["s3-filer"] != first["s3-filer"]
    assert {k: v for k, v in again.items() if k not in ("mlflow", "s3-filer")} == {
        k: v for k, v in first.items() if k not in ("mlflow", "s3-filer")
    }
    assert len(set(_every_port(again))) == len(_every_port(again))


def test_weed_is_given_every_port_and_no_secret_on_its_command_line(tmp_path) -> None:
    ports = choose_ports()
    aws = {"AWS_ACCESS_KEY_ID": "stackkey", "AWS_SECRET_ACCESS_KEY": "s3cr3t-value"}
    cmd = _weed_command(tmp_path, ports, aws)
    for name, component in WEED_PORTS.items():
        assert f"-{component}.port={ports[name]}" in cmd
        assert f"-{component}.port.grpc={ports[name] + GRPC_OFFSET}" in cmd
    assert not [arg for arg in cmd if "s3cr3t-value" in arg]
    config = tmp_path / "s3-identities.json"
    assert "s3cr3t-value" in config.read_text() and config.stat().st_mode & 0o777 == 0o600
