"""Credentials in a source URL never reach the Prefect database: not as flow-run or task-run parameters, not in logs."""

from __future__ import annotations

import base64
import io
import tarfile
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from infra.redact import SECRET_URIS_ENV, redact, reveal
from typer_cli import app

PASSWORD, TOKEN = "PW-s3cr3t-41", "TOK-s3cr3t-97"


class _BasicAuthHandler(BaseHTTPRequestHandler):
    """Serves ``server.archive`` to requests with the right basic-auth header and token, else 401/403."""

    def do_GET(self) -> None:
        """Answer one GET."""
        expected = "Basic " + base64.b64encode(f"user:{PASSWORD}".encode()).decode()
        if self.headers.get("Authorization") != expected:
            self.send_error(HTTPStatus.UNAUTHORIZED)
        elif not self.path.endswith(f"?token={TOKEN}"):
            self.send_error(HTTPStatus.FORBIDDEN)
        else:
            data = self.server.archive
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        """Keep test output quiet."""


@pytest.fixture
def secret_url():
    """``http://user:PW@127.0.0.1:port/genres.tar.gz?token=TOK`` of a one-track archive that needs both secrets."""
    wav = io.BytesIO()
    sf.write(wav, np.random.default_rng(0).uniform(-0.5, 0.5, 22050).astype(np.float32), 22050, format="WAV")
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        info = tarfile.TarInfo("genres/blues/blues.00000.wav")
        info.size = len(wav.getvalue())
        tar.addfile(info, io.BytesIO(wav.getvalue()))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _BasicAuthHandler)
    server.archive = archive.getvalue()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield f"http://user:{PASSWORD}@127.0.0.1:{server.server_address[1]}/genres.tar.gz?token={TOKEN}"
    server.shutdown()
    server.server_close()
    thread.join()


def _prefect_records(flow_run_id) -> list[str]:
    """JSON of the flow run, its task runs and its logs, as the Prefect API gives them back."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()
    runs = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(flow_run_id)
        task_runs = client.read_task_runs(flow_run_filter=runs)
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    assert [t.name.rsplit("-", 1)[0] for t in task_runs] == ["download-dataset"]
    assert logs, "the download task logs its counts"
    return [r.model_dump_json() for r in (flow_run, *task_runs, *logs)]


def test_download_keeps_credentials_out_of_prefect(prefect_harness, secret_url, tmp_path, monkeypatch):
    monkeypatch.setenv(SECRET_URIS_ENV, "")
    work = tmp_path / "work"
    result = CliRunner().invoke(app, ["download", "--source", secret_url, "--work-dir", str(work)])
    assert result.exit_code == 0, result.output
    assert (work / "manifests").is_dir()

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        (flow_run,) = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["download-flow"])),
            sort=FlowRunSort.START_TIME_DESC,
            limit=1,
        )
    assert flow_run.state.is_completed()
    assert flow_run.parameters["source"] == redact(secret_url)
    for record in _prefect_records(flow_run.id):
        assert PASSWORD not in record and TOKEN not in record


def test_prefect_database_file_holds_no_credentials(prefect_harness, secret_url, tmp_path, monkeypatch):
    """Everything the server wrote (runs, task runs, logs, events) after a download with secrets in the URL."""
    from prefect.logging.handlers import APILogHandler
    from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL

    monkeypatch.setenv(SECRET_URIS_ENV, "")
    result = CliRunner().invoke(app, ["download", "--source", secret_url, "--work-dir", str(tmp_path / "work")])
    assert result.exit_code == 0, result.output
    APILogHandler().flush()
    database = Path(PREFECT_API_DATABASE_CONNECTION_URL.value().split("///", 1)[1])
    data = b"".join(p.read_bytes() for p in database.parent.glob(database.name + "*"))  # with -wal/-shm
    assert b"genres.tar.gz" in data  # the redacted source is there
    assert (data.count(PASSWORD.encode()), data.count(TOKEN.encode())) == (0, 0)


def test_a_flow_given_a_redacted_source_needs_the_full_one(prefect_harness, secret_url, tmp_path, monkeypatch):
    """Without the full URI in the environment the task fails with one line naming the variable, not the secret."""
    from flows import download_flow as module
    from flows.download_flow import download_flow

    monkeypatch.setattr(module, "download_dataset", module.download_dataset.with_options(retries=0))
    monkeypatch.setenv(SECRET_URIS_ENV, "")
    with pytest.raises(ValueError, match=SECRET_URIS_ENV) as info:
        download_flow(source=redact(secret_url), work_dir=str(tmp_path / "work"))
    assert "\n" not in str(info.value) and PASSWORD not in str(info.value)


class _Captured(Exception):
    """Raised by a stand-in flow once it has seen its parameters."""


@pytest.mark.parametrize(
    ("command", "flow", "args"),
    [
        ("train", "flows.train_flow.train_flow", ["--source", "SECRET"]),
        ("protocol", "flows.protocol_flow.protocol_flow", ["--source", "SECRET", "--cross-artist", "SECRET2"]),
        ("score", "flows.batch_score_flow.batch_score_flow", ["--library", "SECRET", "--results-uri", "SECRET2"]),
    ],
)
def test_the_cli_hands_flows_redacted_uris(command, flow, args, tmp_path, monkeypatch):
    secrets = {"SECRET": f"http://user:{PASSWORD}@h/x.tar.gz", "SECRET2": f"s3://b/p?X-Amz-Signature={TOKEN}"}
    seen: dict = {}

    def stand_in(request):
        seen.update(request.model_dump())
        raise _Captured

    module, name = flow.rsplit(".", 1)
    monkeypatch.setattr(module + "." + name, stand_in)
    monkeypatch.setattr("typer_cli._check_services", lambda: None)  # no tracking store or registry here
    monkeypatch.setattr("typer_cli._check_model", lambda uri: None)
    monkeypatch.setattr("typer_cli._fetch_with_progress", lambda *a: None)
    monkeypatch.setenv(SECRET_URIS_ENV, "")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, [command, *[secrets.get(a, a) for a in args]])
    assert isinstance(result.exception, _Captured), result.output
    assert PASSWORD not in repr(seen) and TOKEN not in repr(seen)
    values = [seen.get(k) for k in ("source", "cross_artist", "results_uri")] + seen.get("library", [])
    assert {reveal(v) for v in values if v and "***" in v} == {secrets[a] for a in args if a in secrets}


def test_deployments_store_redacted_uris(monkeypatch):
    from infra.deployments import runner_deployments

    monkeypatch.setenv(SECRET_URIS_ENV, "")
    library, source = f"s3://b/music?token={TOKEN}", f"http://user:{PASSWORD}@h/x.tar.gz"
    train, score = runner_deployments([library], "scores", train_parameters={"source": source, "epochs": 2})
    train_request, score_request = train.parameters["request"], score.parameters["request"]
    assert train_request == {"source": redact(source), "epochs": 2}
    assert score_request["library"] == [redact(library)]
    assert reveal(train_request["source"]) == source and reveal(score_request["library"][0]) == library
