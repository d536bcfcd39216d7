"""genre-crnn command line: download data, run train-flow, evaluate a registered model on a labelled folder."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Annotated

# The temporary Prefect API of a run without PREFECT_API_URL must come up on a busy 2-core machine too:
# Prefect's default 20 s start-up timeout was seen to expire there (with both cores training).
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

import typer  # noqa: E402
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table

from crnn.config import (
    ARCHITECTURES,
    BASELINE,
    PRETRAINED_CHECKPOINTS,
    UNCERTAIN_BELOW,
    ModelConfig,
    SplitConfig,
    TrainConfig,
)
from infra.redact import conceal, redact
from infra.sources import GTZAN_URL, fetch_dataset

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


def _check_config(check, **options) -> None:
    """Build the run's config now, so an invalid option is a usage error before anything starts."""
    try:
        check(**options)
    except ValueError as exc:
        raise _bad("options", str(exc)) from None


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
_M, _T, _S = ModelConfig(), TrainConfig(), SplitConfig()

Source = Annotated[
    str,
    typer.Option(
        help="HTTPS/HTTP archive URL (default: public GTZAN mirror, SHA-256 pinned), s3://bucket/key, local .tar.gz/.zip, or a local folder."
    ),
]
Sha256 = Annotated[
    str,
    typer.Option(
        help="Expected SHA-256 (64 hex digits) of a --source archive; empty: none (GTZAN_URL is pinned). Without one, "
        "an interrupted download restarts from byte 0."
    ),
]
WorkDir = Annotated[Path, typer.Option(help="Folder for downloads, manifests, the log-mel cache and checkpoints.")]
Dask = Annotated[
    str | None,
    typer.Option(
        help="Run the chunk tasks on Dask: a scheduler address (tcp://host:8786) or local:N (N local worker processes)."
    ),
]


def _int_or_auto(value: str | int | None) -> int | None:
    return None if value in (None, "", "auto") else int(float(value))


def _float_or_auto(value: str | float | None) -> float | None:
    return None if value in (None, "", "auto") else float(value)


def _arch_option(help: str, parser, metavar: str) -> typer.Option:  # noqa: A002 - typer's name
    return typer.Option(
        parser=parser, metavar=metavar, help=f"{help} Default (auto): the architecture's seed preprocessing."
    )


SampleRate = Annotated[
    int | None, _arch_option("Analysis sample rate in Hz (audio is resampled to it).", _int_or_auto, "HZ|auto")
]
NFFT = Annotated[int | None, _arch_option("FFT size in samples.", _int_or_auto, "SAMPLES|auto")]
HopLength = Annotated[int | None, _arch_option("Hop between log-mel frames in samples.", _int_or_auto, "SAMPLES|auto")]
NMels = Annotated[int | None, _arch_option("Number of mel bands.", _int_or_auto, "INT|auto")]
SegmentS = Annotated[float | None, _arch_option("Segment length in seconds.", _float_or_auto, "SECONDS|auto")]
OverlapS = Annotated[
    float | None, _arch_option("Overlap between consecutive segments in seconds.", _float_or_auto, "SECONDS|auto")
]
MaxSegments = Annotated[
    int | None,
    _arch_option("Score at most this many evenly spaced segments per track (0: all).", _int_or_auto, "INT|auto"),
]

MixupAlpha = Annotated[
    float, typer.Option(help="Mixup: blend each batch with a shuffled copy by a Beta(alpha, alpha) weight (0: off).")
]
Pretrained = Annotated[
    str,
    typer.Option(
        help=f"musicnn-* models: the pretrained checkpoint, {' or '.join(PRETRAINED_CHECKPOINTS)} (Million Song Dataset or MagnaTagATune tags)."
    ),
]
PretrainedLrScale = Annotated[
    float,
    typer.Option(
        help="musicnn-* models: learning-rate multiplier for the pretrained layers (0: frozen, their output computed once and cached; e.g. 0.1 fine-tunes, best on CUDA)."
    ),
]


def _fetch_with_progress(source: str, work_dir: Path, sha256: str = "") -> Path:
    """Download/extract ``source`` with a progress bar (a no-op for folders and cached archives)."""
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
def download(source: Source = GTZAN_URL, work_dir: WorkDir = Path("work"), sha256: Sha256 = "") -> None:
    """Fetch a GTZAN copy, verify it, and write its manifest (track id, genre, path, duration, sample rate, SHA-256) and exclusion list."""
    from flows.download_flow import download_flow

    _fetch_with_progress(source, work_dir, sha256)
    result = download_flow(source=conceal(source), work_dir=str(work_dir), sha256=sha256)
    console.print(
        f"[green]{result['n_tracks']} tracks[/], {result['n_excluded']} excluded; manifest: {result['manifest']}"
    )


@app.command()
def train(
    source: Source = GTZAN_URL,
    sha256: Sha256 = "",
    work_dir: WorkDir = Path("work"),
    split: Annotated[
        str,
        typer.Option(
            help="Track-level split: auto (filtered when the full GTZAN is present, else stratified), filtered, index or stratified."
        ),
    ] = _S.method,
    val_fraction: Annotated[
        float, typer.Option(help="Share of each genre's tracks for validation (stratified split).")
    ] = _S.val_fraction,
    test_fraction: Annotated[
        float, typer.Option(help="Share of each genre's tracks for test (stratified split).")
    ] = _S.test_fraction,
    architecture: Annotated[
        str, typer.Option(help=f"Model zoo architecture: {', '.join(ARCHITECTURES)}.")
    ] = _M.architecture,
    sample_rate: SampleRate = None,
    n_fft: NFFT = None,
    hop_length: HopLength = None,
    n_mels: NMels = None,
    segment_s: SegmentS = None,
    overlap_s: OverlapS = None,
    max_segments: MaxSegments = None,
    rnn_type: Annotated[
        str, typer.Option(help="crnn-attention's recurrent layer: gru or lstm (bidirectional).")
    ] = _M.rnn_type,
    epochs: Annotated[int, typer.Option(help="Maximum number of epochs (early stopping on val/loss).")] = _T.epochs,
    batch_size: Annotated[int, typer.Option(help="Segments per batch.")] = _T.batch_size,
    learning_rate: Annotated[float, typer.Option(help="Adam learning rate.")] = _T.learning_rate,
    patience: Annotated[int, typer.Option(help="Epochs without a better val/loss before stopping.")] = _T.patience,
    freq_mask: Annotated[
        int, typer.Option(help="SpecAugment: widest frequency mask in mel bands (0: off).")
    ] = _T.freq_mask,
    time_mask: Annotated[
        int, typer.Option(help="SpecAugment: widest time mask in log-mel frames (0: off).")
    ] = _T.time_mask,
    mixup_alpha: MixupAlpha = _T.mixup_alpha,
    pretrained: Pretrained = _M.pretrained,
    pretrained_lr_scale: PretrainedLrScale = _T.pretrained_lr_scale,
    seed: Annotated[int, typer.Option(help="Random seed (split, initialisation, batches).")] = _T.seed,
    device: Annotated[str, typer.Option(help="auto (CUDA when present), cpu, cuda or cuda:N.")] = "auto",
    feature_backend: Annotated[
        str, typer.Option(help="Log-mel path: auto (torch on CUDA, librosa on CPU), torch or librosa.")
    ] = "auto",
    experiment: Annotated[str, typer.Option(help="MLflow experiment name.")] = "genre-crnn",
    model_name: Annotated[str, typer.Option(help="MLflow registered model name.")] = "genre-crnn",
    dask: Dask = None,
) -> None:
    """Run train-flow: download, split, log-mel features, training of one zoo architecture, test evaluation, registration.

    Tracking goes to $MLFLOW_TRACKING_URI, or to ./mlflow.db (SQLite) with artifacts in ./mlartifacts.
    With --dask the log-mel chunks run on the Dask cluster; training stays in this process.
    """
    params = {k: v for k, v in locals().items() if k not in ("work_dir", "dask")}
    from crnn.config import PipelineConfig, config_option_names

    _check_config(PipelineConfig.from_options, **{k: v for k, v in params.items() if k in config_option_names()})
    _check_local_path("--source", source)
    _check_services()  # a tracking store that cannot work fails now, not after download, split and features
    params["source"] = conceal(source)  # Prefect stores flow parameters: credentials stay in this process's environment
    from flows.runners import task_runner
    from flows.train_flow import FEATURE_THREADS, train_flow

    _fetch_with_progress(source, work_dir, sha256)
    run = train_flow.with_options(task_runner=task_runner(FEATURE_THREADS, dask)) if dask else train_flow
    result = run(work_dir=str(work_dir), **params)
    test, reg = result["test"], result["registry"]
    console.print(
        f"[bold]run {result['run_id']}[/]: test track accuracy {test['test/track_accuracy']:.3f}, macro-F1 {test['test/macro_f1']:.3f}, "
        f"segment accuracy {test['test/segment_accuracy']:.3f}\n{reg['name']} v{reg['version']}: {reg['reason']}"
    )


@app.command()
def evaluate(
    data: Annotated[
        Path, typer.Option(help="Labelled folder of <genre>.NNNNN.wav|au files (e.g. ../shared/data/gtzan_excerpts).")
    ],
    model: Annotated[str, typer.Option(help="MLflow model URI.")] = "models:/genre-crnn@champion",
    output: Annotated[Path | None, typer.Option(help="Write the metrics as JSON here.")] = None,
) -> None:
    """Clip accuracy, macro-F1 and per-genre recall of a registered model on a labelled folder (whole clips, no split)."""
    import mlflow
    import pandas as pd

    from crnn.dataset import discover_tracks, parse_track_id
    from crnn.evaluate import classification_report

    _check_local_path("--data", data)
    _check_services()
    _check_model(model)
    paths = discover_tracks(data)
    served = mlflow.pyfunc.load_model(model)
    labels = [c.name.removeprefix("prob_") for c in served.metadata.get_output_schema().inputs[1:]]  # the model's
    truth = [labels.index(parse_track_id(p.name.rsplit(".", 1)[0], labels)[0]) for p in paths]
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
def protocol(
    source: Annotated[
        str, typer.Option(help="Training collection (folder, archive or URL).")
    ] = "../shared/data/gtzan_mini",
    cross_artist: Annotated[
        str, typer.Option(help="Labelled clips by other artists: the cross-artist test set (folder, archive or URL).")
    ] = "../shared/data/gtzan_excerpts",
    work_dir: WorkDir = Path("work"),
    model: Annotated[
        str, typer.Option(help=f"What to evaluate: {', '.join(ARCHITECTURES)} or the classical baseline {BASELINE}.")
    ] = _M.architecture,
    folds: Annotated[int, typer.Option(help="k of the stratified track-level k-fold.")] = 5,
    val_fraction: Annotated[
        float, typer.Option(help="Share of the training tracks held out for early stopping.")
    ] = _S.val_fraction,
    sample_rate: SampleRate = None,
    n_fft: NFFT = None,
    hop_length: HopLength = None,
    n_mels: NMels = None,
    segment_s: SegmentS = None,
    overlap_s: OverlapS = None,
    max_segments: MaxSegments = None,
    epochs: Annotated[int, typer.Option(help="Maximum number of epochs per training.")] = _T.epochs,
    batch_size: Annotated[int, typer.Option(help="Segments per batch.")] = _T.batch_size,
    learning_rate: Annotated[float, typer.Option(help="Adam learning rate.")] = _T.learning_rate,
    patience: Annotated[int, typer.Option(help="Epochs without a better val/loss before stopping.")] = _T.patience,
    freq_mask: Annotated[int, typer.Option(help="SpecAugment: widest frequency mask in mel bands.")] = _T.freq_mask,
    time_mask: Annotated[int, typer.Option(help="SpecAugment: widest time mask in frames.")] = _T.time_mask,
    mixup_alpha: MixupAlpha = _T.mixup_alpha,
    pretrained: Pretrained = _M.pretrained,
    pretrained_lr_scale: PretrainedLrScale = _T.pretrained_lr_scale,
    seed: Annotated[int, typer.Option(help="Random seed (folds, initialisation, batches).")] = _T.seed,
    device: Annotated[str, typer.Option(help="auto (CUDA when present), cpu, cuda or cuda:N.")] = "auto",
    feature_backend: Annotated[str, typer.Option(help="Log-mel path: auto, torch or librosa.")] = "auto",
    experiment: Annotated[str, typer.Option(help="MLflow experiment name.")] = "genre-crnn",
) -> None:
    """Run protocol-flow: cross-artist evaluation and stratified k-fold of one model, in a parent MLflow run with nested runs.

    The k-fold figure is artist-confounded (GTZAN is ordered by artist); choose models by the cross-artist one.
    """
    params = {k: v for k, v in locals().items() if k != "work_dir"}  # before the imports below add locals
    from crnn.config import config_option_names, protocol_config

    _check_config(protocol_config, model=model, **{k: v for k, v in params.items() if k in config_option_names()})
    if folds < 2:
        raise _bad("--folds", f"need at least 2 folds, got {folds}")
    _check_local_path("--source", source)
    _check_local_path("--cross-artist", cross_artist)
    _check_services()  # a tracking store that cannot work fails before any work
    params |= {"source": conceal(source), "cross_artist": conceal(cross_artist)}
    from flows.protocol_flow import protocol_flow

    s = protocol_flow(work_dir=str(work_dir), **params)
    console.print(
        f"[bold]{model}[/] (parent run {s['run_id']}): cross-artist accuracy {s['cross_artist/accuracy']:.3f}, "
        f"macro-F1 {s['cross_artist/macro_f1']:.3f}; {folds}-fold track accuracy {s['kfold/track_accuracy_mean']:.3f} "
        f"± {s['kfold/track_accuracy_std']:.3f} (artist-confounded); {s['parameters']:,} parameters"
    )


Library = Annotated[
    list[str],
    typer.Option(help="Folder or s3://bucket/prefix of music, scanned recursively (repeat for several)."),
]
OutputDir = Annotated[
    str, typer.Option(help="Folder for results tables, the library state store (library.sqlite) and model cache.")
]
ModelUri = Annotated[str, typer.Option(help="MLflow model URI; the concrete version is recorded with every result.")]


@app.command()
def score(
    library: Library,
    output_dir: OutputDir = "scores",
    model_uri: ModelUri = "models:/genre-crnn@champion",
    top_k: Annotated[int, typer.Option(help="Genres listed per track, best first.")] = 3,
    uncertain_below: Annotated[
        float, typer.Option(help="Flag a track `uncertain` (not tagged) when its top probability is below this (0-1).")
    ] = UNCERTAIN_BELOW,
    timeline: Annotated[
        bool, typer.Option(help="Also record per-segment predictions (start s, end s, genre).")
    ] = False,
    max_duration_s: Annotated[
        float, typer.Option(help="Score at most this many seconds from the start of a file (0: whole file).")
    ] = 600.0,
    chunk_size: Annotated[int, typer.Option(help="Files per score-chunk task.")] = 32,
    tags: Annotated[
        str, typer.Option(help="Genre tags in the files: off, dry-run (report only) or write (ID3/Vorbis/MP4).")
    ] = "off",
    retry_failed: Annotated[bool, typer.Option(help="Try again files that failed before and did not change.")] = False,
    rescore: Annotated[
        bool, typer.Option(help="Score every file again (e.g. to add --timeline), even if it is unchanged.")
    ] = False,
    formats: Annotated[
        str,
        typer.Option(
            "--formats",
            "--format",
            help="Results tables to write: comma-separated format names, e.g. csv,jsonl,parquet.",
        ),
    ] = "csv,jsonl",
    results_uri: Annotated[
        str, typer.Option(help="Also copy the results tables to s3://bucket/prefix (for a team or other machines).")
    ] = "",
    device: Annotated[str, typer.Option(help="auto (CUDA when present), cpu, cuda or cuda:N.")] = "auto",
    dask: Dask = None,
) -> None:
    """Run batch-score-flow: label new or changed music files with the registered model (reruns skip what is done)."""
    params = {k: v for k, v in locals().items() if k != "dask"}
    from crnn.config import check_scoring_options

    _check_config(check_scoring_options, top_k=top_k, uncertain_below=uncertain_below, max_duration_s=max_duration_s)
    if tags not in ("off", "dry-run", "write"):
        raise _bad("--tags", f"must be off, dry-run or write, got {tags!r}")
    from scoring.results import parse_formats

    try:
        params["formats"] = list(parse_formats(formats))
    except ValueError as exc:
        raise _bad("--formats", str(exc)) from None
    for root in library:
        _check_local_path("--library", root)
    _check_services()
    _check_model(model_uri)
    params |= {"library": [conceal(r) for r in library], "results_uri": conceal(results_uri)}
    from flows.batch_score_flow import CHUNK_WORKERS, batch_score_flow
    from flows.runners import task_runner

    run = batch_score_flow.with_options(task_runner=task_runner(CHUNK_WORKERS, dask)) if dask else batch_score_flow
    with _store_progress(Path(output_dir)):
        result = run(**params)
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


Cron = Annotated[str, typer.Option(help="Cron schedule of batch-score-flow (default: nightly at 02:00).")]
Timezone = Annotated[str, typer.Option(help="Timezone of the cron schedule (IANA name).")]
DeploymentName = Annotated[str, typer.Option(help="Deployment name: train-flow/<name> and batch-score-flow/<name>.")]
TrainSource = Annotated[str | None, typer.Option(help="Default --source of the train-flow deployment.")]


def _train_parameters(train_source: str | None) -> dict:
    return {"source": train_source} if train_source else {}


@app.command()
def serve(
    library: Library,
    output_dir: OutputDir = "scores",
    name: DeploymentName = "default",
    cron: Cron = "0 2 * * *",
    timezone: Timezone = "UTC",
    train_source: TrainSource = None,
    model_uri: ModelUri = "models:/genre-crnn@champion",
    dask: Dask = None,
) -> None:
    """Serve both deployments from this process (needs PREFECT_API_URL of a Prefect server); runs them when triggered or scheduled."""
    from prefect import serve as prefect_serve

    from flows.runners import DASK_ENV
    from infra.deployments import runner_deployments

    if dask:
        os.environ[DASK_ENV] = dask  # read when the flows are loaded, and by the runs this process starts

    deployments = runner_deployments(
        library,
        output_dir,
        name=name,
        cron=cron,
        timezone=timezone,
        train_parameters=_train_parameters(train_source),
        model_uri=model_uri,
    )
    prefect_serve(*deployments)


@app.command()
def deploy(
    library: Library,
    output_dir: OutputDir = "scores",
    pool: Annotated[str, typer.Option(help="Process work pool (created if missing).")] = "genre-crnn",
    name: DeploymentName = "default",
    cron: Cron = "0 2 * * *",
    timezone: Timezone = "UTC",
    train_source: TrainSource = None,
    model_uri: ModelUri = "models:/genre-crnn@champion",
    dask: Dask = None,
) -> None:
    """Register both deployments on a process work pool of the Prefect server at PREFECT_API_URL; a worker runs them."""
    from infra.deployments import deploy_to_pool

    deploy_to_pool(
        library,
        output_dir,
        pool=pool,
        name=name,
        cron=cron,
        timezone=timezone,
        train_parameters=_train_parameters(train_source),
        model_uri=model_uri,
        dask=dask,
    )
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

    own = (DatasetSourceError, TrackingConfigError, PretrainedWeightsError, AudioDecodeError, ModelMissingError)
    return isinstance(exc, (*own, FileNotFoundError, ValueError))


def main() -> None:
    """Run the CLI; the project's own errors print one line (``error: ...``, exit code 1) unless ``--debug``."""
    try:
        app()
    except Exception as exc:
        if _DEBUG["traceback"] or not _expected(exc):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        console.print(f"[red]error:[/] {first}  (--debug shows the traceback)", highlight=False, soft_wrap=True)
        raise SystemExit(1) from None


if __name__ == "__main__":
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s | %(levelname)-7s | %(name)s - %(message)s", "%H:%M:%S"))
    logging.getLogger("infra").addHandler(handler)  # download/extraction messages; Prefect prints its own
    logging.getLogger("infra").setLevel(logging.INFO)
    logging.getLogger("infra").propagate = False  # Prefect's root console handler would print each line again
    main()
