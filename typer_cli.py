"""genre-crnn command line: download data, run train-flow, evaluate a registered model on a labelled folder."""

from __future__ import annotations

import atexit
import os
import sys

_EXIT_STATUS: list[int] = []
"""The status :func:`main` ends with, recorded once the command has returned (or failed with a one-line message)."""


def _end_without_teardown() -> None:
    """The last at-exit step of a command that returned: flush logging and stdio, then ``os._exit`` with its status.

    Registered before any import registers its own, so it runs after all of them and after Python has joined
    the non-daemon threads and run ``threading``'s at-exit calls (Prefect's log and event queues drain there,
    and :func:`infra.prefect_api.prefect_api` drained them already). What it skips is the interpreter's
    teardown of torch, MLflow and Prefect's modules (2-3 s of garbage collection that saves nothing): every
    record is in the Prefect API, the MLflow store and the output files by then. A command that raised an
    unexpected error (or ran with ``--debug``) ends the normal way.
    """
    if not _EXIT_STATUS:
        return
    import logging

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken pipe: nothing more can be written anyway
            pass
    os._exit(_EXIT_STATUS[0])


if __name__ == "__main__":  # first registered, last run (atexit runs handlers in reverse order)
    atexit.register(_end_without_teardown)

import contextlib  # noqa: E402
import functools  # noqa: E402
import inspect  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Annotated  # noqa: E402

# The temporary Prefect API of a run without PREFECT_API_URL must come up on a busy 2-core machine too:
# Prefect's default 20 s start-up timeout was seen to expire there (with both cores training).
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

import typer  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn  # noqa: E402
from rich.table import Table  # noqa: E402

from crnn.requests import (  # noqa: E402
    DEFAULT_MODEL_URI,
    FLAGS,
    DeploymentRequest,
    DownloadRequest,
    LibraryEvalRequest,
    ProtocolRequest,
    Request,
    ScoreRequest,
    TrainRequest,
    choices,
    field_names,
    first_error,
)
from infra.prefect_api import PrefectApiError, prefect_api  # noqa: E402
from infra.redact import conceal, redact  # noqa: E402

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
_DEBUG = {"traceback": False}


@app.callback()
def _global_options(
    debug: Annotated[bool, typer.Option("--debug", help="Print the full traceback of an error.")] = False,
) -> None:
    _DEBUG["traceback"] = debug


def _bad(option: str, reason: str) -> typer.BadParameter:
    """A usage error (exit code 2) naming the option."""
    return typer.BadParameter(reason, param_hint=option)


def _check_local_path(option: str, value: str | Path) -> None:
    """A local path (not a URL or s3:// URI) that does not exist is a usage error."""
    text = str(value)
    if "://" not in text and not Path(text).expanduser().exists():
        raise _bad(option, f"no such file or folder: {text}")


def _check_services() -> None:
    """Point MLflow at its store and fail in seconds when it, or $PREFECT_API_URL, does not answer."""
    from infra.tracking import check_services, configure_tracking

    configure_tracking()
    check_services()


def _check_model(model_uri: str) -> None:
    """A ``models:/name@alias`` or ``models:/name/version`` that the registry does not have: say to train first."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    if not model_uri.startswith("models:/"):
        return
    name, _, ref = model_uri.removeprefix("models:/").partition("@")
    try:
        if ref:
            MlflowClient().get_model_version_by_alias(name, ref)
        else:
            name, _, version = name.partition("/")
            MlflowClient().get_model_version(name, version) if version else MlflowClient().get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        raise ModelMissingError(
            f"{model_uri} is not in the model registry at {_tracking_uri()}: train one first (make train)"
        ) from None


def _tracking_uri() -> str:
    import mlflow

    from infra.redact import redact

    return redact(mlflow.get_tracking_uri())


class ModelMissingError(LookupError):
    """The model URI names no registered model version."""


console = Console(stderr=True)

Dask = Annotated[
    str | None,
    typer.Option(
        help="Run the chunk tasks on Dask: a scheduler address (tcp://host:8786) or local:N (N local worker processes)."
    ),
]


def _or_auto(kind: type, what: str):
    """A parser of ``kind`` values where ``auto`` (or empty) is ``None``: the architecture's default."""

    def parse(value: str | None):
        try:
            return None if value in (None, "", "auto") else kind(value)
        except ValueError:
            raise typer.BadParameter(f"expected {what} or auto, got {value!r}") from None

    return parse


_AUTO_PARSERS = {
    int | None: (_or_auto(int, "an integer"), "INT|auto"),
    float | None: (_or_auto(float, "a number"), "FLOAT|auto"),
}


def _cli_parameter(name: str, info) -> inspect.Parameter:
    """The Typer option of one request field: its help, default and type (``None`` defaults read as ``auto``)."""
    default = inspect.Parameter.empty if info.is_required() else info.default
    kind, extra = info.annotation, {}
    if name in FLAGS:  # a list given comma-separated: --format csv,jsonl
        kind, default, extra = str, ",".join(default), {"metavar": "A,B"}
        extra["param_decls"] = (f"--{FLAGS[name]}",)
    elif kind in _AUTO_PARSERS:
        parser, metavar = _AUTO_PARSERS[kind]
        extra = {"parser": parser, "metavar": metavar}
    elif allowed := choices(kind):  # checked by the request; short lists shown as the metavar
        kind, extra = str, ({"metavar": "|".join(allowed)} if len(allowed) <= 4 else {})
    decls = extra.pop("param_decls", ())
    option = typer.Option(*decls, help=info.description, **extra)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[kind, option])


def _request_command(request_type: type[Request]):
    """Decorate ``fn(request, **rest)`` into a Typer command whose options are the request's fields, then ``rest``.

    The request is built (and so validated) from the options before ``fn`` runs: an invalid value is a usage
    error (exit code 2) naming its option.
    """

    def decorate(fn):
        fields = request_type.model_fields
        params = [_cli_parameter(n, fields[n]) for n in field_names(request_type)]
        params += [
            p.replace(kind=p.KEYWORD_ONLY) for p in list(inspect.signature(fn, eval_str=True).parameters.values())[1:]
        ]

        @functools.wraps(fn)
        def command(**options):
            given = {n: options.pop(n) for n in fields}
            given |= {n: [v.strip() for v in given[n].split(",") if v.strip()] for n in FLAGS if n in given}
            return fn(_validated(request_type, given), **options)

        command.__signature__ = inspect.Signature(params)
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return decorate


def _validated(request_type: type[Request], fields: dict):
    """``request_type(**fields)``; a validation error is a usage error naming the option."""
    from pydantic import ValidationError

    try:
        return request_type(**fields)
    except ValidationError as exc:
        name, reason = first_error(request_type, exc)
        raise _bad(f"--{FLAGS.get(name, name).replace('_', '-')}" if name else "options", reason) from None


def _fetch_with_progress(source: str, work_dir: Path, sha256: str = "") -> Path:
    """Download/extract ``source`` with a progress bar (a no-op for folders and cached archives)."""
    from infra.sources import fetch_dataset  # with crnn.audio's decoders: not needed by score, --help or bad options

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:
        job = bar.add_task(f"fetching {redact(source)}", total=None)
        return fetch_dataset(
            source, work_dir, sha256=sha256, progress=lambda done, total: bar.update(job, completed=done, total=total)
        )


@app.command()
@_request_command(DownloadRequest)
def download(request: DownloadRequest) -> None:
    """Fetch a GTZAN copy, verify it, and write its manifest (track id, genre, path, duration, sample rate, SHA-256) and exclusion list."""
    with prefect_api() as api:  # the temporary Prefect server (if needed) starts while the data is fetched
        from flows.download_flow import download_flow

        _fetch_with_progress(request.source, Path(request.work_dir), request.sha256)
        layout = request.options("source_layout", "label_map", "min_tracks_per_label")
        api.ready()
        result = download_flow(conceal(request.source), request.work_dir, request.sha256, **layout)
    console.print(
        f"[green]{result['n_tracks']} tracks[/], {result['n_excluded']} excluded; manifest: {result['manifest']}"
    )


@app.command()
@_request_command(TrainRequest)
def train(request: TrainRequest, dask: Dask = None) -> None:
    """Run train-flow: download, split, log-mel features, training of one zoo architecture, test evaluation, registration.

    Tracking goes to $MLFLOW_TRACKING_URI, or to ./mlflow.db (SQLite) with artifacts in ./mlartifacts.
    With --dask the log-mel chunks run on the Dask cluster; training stays in this process.
    """
    _check_local_path("--source", request.source)
    with prefect_api() as api:
        _check_services()  # a tracking store that cannot work fails now, not after download, split and features
        from flows.runners import task_runner
        from flows.train_flow import FEATURE_THREADS, train_flow

        _fetch_with_progress(request.source, Path(request.work_dir), request.sha256)
        run = train_flow.with_options(task_runner=task_runner(FEATURE_THREADS, dask)) if dask else train_flow
        api.ready()
        # Prefect stores flow parameters: credentials stay in this process's environment
        result = run(request.model_copy(update={"source": conceal(request.source)}))
    test, reg = result["test"], result["registry"]
    console.print(
        f"[bold]run {result['run_id']}[/]: test track accuracy {test['test/track_accuracy']:.3f}, macro-F1 {test['test/macro_f1']:.3f}, "
        f"segment accuracy {test['test/segment_accuracy']:.3f}\n{reg['name']} v{reg['version']}: {reg['reason']}"
    )


_LIB = LibraryEvalRequest.model_fields
"""``evaluate --library``'s options take their help and defaults from the request."""


@app.command()
def evaluate(
    data: Annotated[
        Path | None,
        typer.Option(help="Labelled folder of <genre>.NNNNN.wav|au files (e.g. ../shared/data/gtzan_excerpts)."),
    ] = None,
    model: Annotated[str, typer.Option(help="MLflow model URI.")] = DEFAULT_MODEL_URI,
    output: Annotated[Path | None, typer.Option(help="With --data: write the metrics as JSON here.")] = None,
    library: Annotated[list[str] | None, typer.Option(help=_LIB["library"].description)] = None,
    label_map: Annotated[Path | None, typer.Option(help=_LIB["label_map"].description)] = None,
    output_dir: Annotated[str, typer.Option(help=_LIB["output_dir"].description)] = _LIB["output_dir"].default,
    uncertain_below: Annotated[float, typer.Option(help=_LIB["uncertain_below"].description)] = _LIB[
        "uncertain_below"
    ].default,
    experiment: Annotated[str, typer.Option(help=_LIB["experiment"].description)] = _LIB["experiment"].default,
) -> None:
    """Accuracy of a registered model: on a labelled folder (--data), or on a music library against its own genre tags.

    --library L --label-map M scores the library (reusing --output-dir's state store; tags untouched) and
    compares each file's prediction with its genre tag mapped to a label: accuracy, macro-F1, per-label
    precision/recall, confusion matrix and selective accuracy, as an MLflow run and a report in
    <output-dir>/evaluation/. Untagged files and unmapped tags are excluded and counted.
    """
    if (data is None) == (library is None):
        raise _bad("--data / --library", "give exactly one: a labelled folder (--data) or a tagged library (--library)")
    if library is not None:
        options = {"library": library, "label_map": label_map, "output_dir": output_dir, "model_uri": model}
        _evaluate_library(options | {"uncertain_below": uncertain_below, "experiment": experiment})
        return
    if label_map is not None:
        raise _bad("--label-map", "only with --library (a folder named by genre needs no label map)")
    _evaluate_folder(data, model, output)


def _evaluate_library(options: dict) -> None:
    """``evaluate --library``: run library-eval-flow and print the headline figures and the report's path."""
    if options["label_map"] is None:
        raise _bad("--label-map", "--library needs a label map (TOML: label = [raw tag values])")
    request = _validated(LibraryEvalRequest, options | {"label_map": str(options["label_map"])})
    for root in request.library:
        _check_local_path("--library", root)
    from crnn.labelmap import LabelMapError, load_label_map

    try:
        load_label_map(request.label_map)
    except LabelMapError as exc:
        raise _bad("--label-map", str(exc)) from None
    with prefect_api() as api:
        _check_services()
        _check_model(request.model_uri)
        from flows.library_eval_flow import library_eval_flow

        api.ready()
        result = library_eval_flow(request)
    m = result["metrics"]
    selective = m.get("library/selective_accuracy")
    console.print(
        f"[bold]{m['library/tracks']} tracks[/]: accuracy {m['library/accuracy']:.3f}, macro-F1 "
        f"{m['library/macro_f1']:.3f}, selective accuracy {'–' if selective is None else f'{selective:.3f}'} "
        f"({m['library/uncertain_share']:.1%} uncertain); excluded {result['excluded'] or 'none'}"
        + (f"; labels the model lacks: {', '.join(result['unknown_labels'])}" if result["unknown_labels"] else "")
        + f"\nreport: {result['report'][0]} (MLflow run {result['run_id']})"
    )


def _evaluate_folder(data: Path, model: str, output: Path | None) -> None:
    """``evaluate --data``: clip accuracy, macro-F1 and per-genre recall on a folder named by genre."""
    import mlflow
    import pandas as pd

    from crnn.dataset import discover_tracks, parse_track_id
    from crnn.evaluate import classification_report
    from infra.genre_model import paths_allowed

    _check_local_path("--data", data)
    _check_services()
    _check_model(model)
    paths = discover_tracks(data)
    served = mlflow.pyfunc.load_model(model)
    labels = [c.name.removeprefix("prob_") for c in served.metadata.get_output_schema().inputs[1:]]  # the model's
    truth = [labels.index(parse_track_id(p.name.rsplit(".", 1)[0], labels)[0]) for p in paths]
    with paths_allowed(data):  # the user's own files: the served model opens paths only under an allowed folder
        pred = served.predict(pd.DataFrame({"path": [str(p) for p in paths]}))
    report = classification_report(truth, [labels.index(g) for g in pred["genre"]], len(labels))
    table = Table("genre", "recall", "precision", "clips", title=f"{model} on {data}")
    for g, r, p, n in zip(labels, report.recall, report.precision, report.support):
        table.add_row(g, f"{r:.2f}", f"{p:.2f}", str(n))
    Console().print(table)
    metrics = {"clips": len(paths), "accuracy": report.accuracy, "macro_f1": report.macro_f1}
    Console().print(f"clip accuracy {report.accuracy:.3f}, macro-F1 {report.macro_f1:.3f} over {len(paths)} clips")
    if output:
        output.write_text(json.dumps(metrics | {"recall": dict(zip(labels, report.recall.tolist()))}, indent=2))


@app.command()
@_request_command(ProtocolRequest)
def protocol(request: ProtocolRequest) -> None:
    """Run protocol-flow: cross-artist evaluation and stratified k-fold of one model, in a parent MLflow run with nested runs.

    The k-fold figure is artist-confounded (GTZAN is ordered by artist); choose models by the cross-artist one.
    """
    _check_local_path("--source", request.source)
    _check_local_path("--cross-artist", request.cross_artist)
    with prefect_api() as api:
        _check_services()  # a tracking store that cannot work fails before any work
        from flows.protocol_flow import protocol_flow

        api.ready()
        s = protocol_flow(
            request.model_copy(
                update={"source": conceal(request.source), "cross_artist": conceal(request.cross_artist)}
            )
        )
    console.print(
        f"[bold]{request.model}[/] (parent run {s['run_id']}): cross-artist accuracy {s['cross_artist/accuracy']:.3f}, "
        f"macro-F1 {s['cross_artist/macro_f1']:.3f}; {request.folds}-fold track accuracy "
        f"{s['kfold/track_accuracy_mean']:.3f} ± {s['kfold/track_accuracy_std']:.3f} (artist-confounded); "
        f"{s['parameters']:,} parameters"
    )


@app.command()
@_request_command(ScoreRequest)
def score(request: ScoreRequest, dask: Dask = None) -> None:
    """Run batch-score-flow: label new or changed music files with the registered model (reruns skip what is done)."""
    from scoring.results import parse_formats

    try:
        parse_formats(request.formats)
    except ValueError as exc:
        raise _bad("--format", str(exc)) from None
    for root in request.library:
        _check_local_path("--library", root)
    with prefect_api() as api:
        _check_services()
        _check_model(request.model_uri)
        from flows.batch_score_flow import CHUNK_WORKERS, batch_score_flow
        from flows.runners import task_runner

        run = batch_score_flow.with_options(task_runner=task_runner(CHUNK_WORKERS, dask)) if dask else batch_score_flow
        concealed = {"library": [conceal(r) for r in request.library], "results_uri": conceal(request.results_uri)}
        api.ready()
        with _store_progress(Path(request.output_dir)):
            result = run(request.model_copy(update=concealed))
    c = result["counts"]
    console.print(
        f"[bold]{result['model_version']}[/]: scored {c['scored']}, unchanged {c['unchanged']}, failed {c['failed']} "
        f"of {result['files']} files ({result['tracks_per_s']:.2f} tracks/s)\nresults: {result['outputs'][0]}"
    )


@contextlib.contextmanager
def _store_progress(output_dir: Path):
    """A progress bar fed by polling the run's rows in the state store (the flow itself knows nothing of it)."""
    from scoring.store import STORE_NAME, run_progress

    started, stop = time.time(), threading.Event()
    with Progress(*Progress.get_default_columns(), "{task.fields[rate]}", console=console, transient=True) as bar:
        job = bar.add_task("scanning library", total=None, rate="")

        def poll() -> None:
            while not stop.wait(0.5):
                done, planned = run_progress(output_dir / STORE_NAME, since=started)
                if planned is not None:
                    rate = done / max(time.time() - started, 1e-9)
                    bar.update(job, description="scoring", completed=done, total=planned, rate=f"{rate:.1f} files/s")

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        try:
            yield
        finally:
            stop.set()
            poller.join()


def _train_parameters(train_source: str | None) -> dict:
    return {"source": train_source} if train_source else {}


@app.command()
@_request_command(DeploymentRequest)
def serve(request: DeploymentRequest, dask: Dask = None) -> None:
    """Serve both deployments from this process (needs PREFECT_API_URL of a Prefect server); runs them when triggered or scheduled."""
    from prefect import serve as prefect_serve

    from flows.runners import DASK_ENV
    from infra.deployments import runner_deployments

    if dask:
        os.environ[DASK_ENV] = dask  # read when the flows are loaded, and by the runs this process starts

    deployments = runner_deployments(
        request.library,
        request.output_dir,
        name=request.name,
        cron=request.cron,
        timezone=request.timezone,
        train_parameters=_train_parameters(request.train_source),
        model_uri=request.model_uri,
    )
    prefect_serve(*deployments)


@app.command()
@_request_command(DeploymentRequest)
def deploy(
    request: DeploymentRequest,
    pool: Annotated[str, typer.Option(help="Process work pool (created if missing).")] = "genre-crnn",
    dask: Dask = None,
) -> None:
    """Register both deployments on a process work pool of the Prefect server at PREFECT_API_URL; a worker runs them."""
    from infra.deployments import deploy_to_pool

    deploy_to_pool(
        request.library,
        request.output_dir,
        pool=pool,
        name=request.name,
        cron=request.cron,
        timezone=request.timezone,
        train_parameters=_train_parameters(request.train_source),
        model_uri=request.model_uri,
        dask=dask,
    )
    name = request.name
    console.print(
        f"deployments train-flow/{name} and batch-score-flow/{name} on pool [bold]{pool}[/]; start a worker with\n"
        f"  prefect worker start --pool {pool}\nand run one with\n  prefect deployment run batch-score-flow/{name}"
    )


def _expected(exc: BaseException) -> bool:
    """Errors of bad input or an unusable setup, which a one-line message explains."""
    from crnn.audio import AudioDecodeError
    from infra.pretrained import PretrainedWeightsError
    from infra.sources import DatasetSourceError
    from infra.tracking import TrackingConfigError

    own = (
        DatasetSourceError,
        TrackingConfigError,
        PretrainedWeightsError,
        AudioDecodeError,
        ModelMissingError,
        PrefectApiError,
    )
    return isinstance(exc, (*own, FileNotFoundError, ValueError))


def main() -> None:
    """Run the CLI; the project's own errors print one line (``error: ...``, exit code 1) unless ``--debug``.

    The exit status is recorded for :func:`_end_without_teardown` (Click ends every command with ``SystemExit``).
    """
    try:
        try:
            app()
        except Exception as exc:
            if _DEBUG["traceback"] or not _expected(exc):
                raise
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            console.print(f"[red]error:[/] {first}  (--debug shows the traceback)", highlight=False, soft_wrap=True)
            raise SystemExit(1) from None
    except SystemExit as exc:
        code = exc.code
        _EXIT_STATUS.append(code if isinstance(code, int) else 0 if code is None else 1)  # as Python would
        raise


if __name__ == "__main__":
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s | %(levelname)-7s | %(name)s - %(message)s", "%H:%M:%S"))
    logging.getLogger("infra").addHandler(handler)  # download/extraction messages; Prefect prints its own
    logging.getLogger("infra").setLevel(logging.INFO)
    logging.getLogger("infra").propagate = False  # Prefect's root console handler would print each line again
    main()
