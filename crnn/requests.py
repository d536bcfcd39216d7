"""Typed run requests: every option of the train, score and protocol entry points, declared once.

Each field holds its default, unit and help text (``Field(description=...)``). The Typer commands
(``typer_cli.py``) and the MLproject entry points (``python -m infra.mlproject > MLproject``) are generated
from these models; the flows take them as their one parameter, so Prefect's deployment form shows the
same fields, defaults and help. Model, feature and training defaults come from :mod:`crnn.config`'s
dataclasses, the only home of those; a request validates itself by building its :class:`PipelineConfig`.

Light on purpose (pydantic and :mod:`crnn.config` only): the CLI imports it at start-up.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from crnn.config import (
    ARCHITECTURES,
    BASELINE,
    PRETRAINED_CHECKPOINTS,
    SPLIT_METHODS,
    TOP_K,
    UNCERTAIN_BELOW,
    FeatureConfig,
    ModelConfig,
    PipelineConfig,
    SplitConfig,
    TrainConfig,
    check_scoring_options,
    protocol_config,
)
from crnn.labelmap import load_label_map

MODEL_NAME = "genre-crnn"
"""MLflow registered model name."""
CHAMPION, CHALLENGER = "champion", "challenger"
"""Registry aliases: the version scoring uses, and the last one that did not beat it."""
DEFAULT_MODEL_URI = f"models:/{MODEL_NAME}@{CHAMPION}"
"""The model scoring and evaluation use unless told otherwise."""
DEFAULT_EXPERIMENT = "genre-crnn"
"""MLflow experiment of training and protocol runs."""
SCORING_EXPERIMENT = f"{DEFAULT_EXPERIMENT}-scoring"
"""MLflow experiment of batch-score-flow runs (one MLflow run per scoring run)."""
EVALUATION_EXPERIMENT = f"{DEFAULT_EXPERIMENT}-evaluation"
"""MLflow experiment of ``evaluate --library`` runs (a model against a library's own tags)."""
GTZAN_URL = "https://huggingface.co/datasets/marsyas/gtzan/resolve/main/data/genres.tar.gz"
"""Public GTZAN mirror (its SHA-256 is pinned in ``infra.sources``)."""
TRAIN_SOURCE = "../shared/data/gtzan_mini"
"""The protocol's training collection on these machines: GTZAN tracks 00000-00012 of every genre (few artists)."""
CROSS_ARTIST_SOURCE = "../shared/data/gtzan_excerpts"
"""The cross-artist clips on these machines: 2-3 s excerpts of GTZAN tracks 00031-00040 (mostly other artists)."""
DEFAULT_RESULT_FORMATS = ("csv", "jsonl")
"""Results tables ``score`` writes unless told otherwise (names in ``scoring.results.FORMATS``, the writer registry)."""
SOURCE_LAYOUTS = ("auto", "gtzan", "tags", "folders", "fma")
"""How a dataset source names its labels (``crnn.layouts``): GTZAN file names, genre tags, a folder per label, FMA."""
MIN_TRACKS_PER_LABEL = 5
"""Labels of a tagged library, folder layout or FMA with fewer tracks are excluded (too few to split and learn)."""
TAG_MODES = ("off", "dry-run", "write", "fill-missing")
"""Tag policies of batch scoring: none, report only, write the genre (replacing another), or write only where a file has none."""
DEFAULT_DEPLOYMENT = "default"
NIGHTLY_CRON = "0 2 * * *"
"""Batch scoring every night at 02:00 (in the deployment's timezone)."""
FLAGS = {"formats": "format"}
"""Command-line spelling of a field where it differs from the field's name (``--format csv,jsonl``)."""

_F, _M, _T, _S = FeatureConfig(), ModelConfig(), TrainConfig(), SplitConfig()
_AUTO = " Default (auto): the architecture's seed preprocessing."


class Request(BaseModel):
    """Base of the run requests: frozen, unknown fields are an error."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)  # schemas built on first use: CLI start-up

    def options(self, *names: str) -> dict[str, Any]:
        """The fields ``names`` (all fields when none) as a dict."""
        return {n: getattr(self, n) for n in names or type(self).model_fields}


class WorkOptions(Request):
    """Where a run keeps its files."""

    work_dir: str = Field("work", description="Folder for downloads, manifests, the log-mel cache and checkpoints.")


class DownloadRequest(WorkOptions):
    """A dataset source (``download``; train's source)."""

    source: str = Field(
        GTZAN_URL,
        description="HTTPS/HTTP archive URL (default: public GTZAN mirror, SHA-256 pinned), s3://bucket/key, "
        "local .tar.gz/.zip, or a local folder.",
    )
    sha256: str = Field(
        "",
        description="Expected SHA-256 (64 hex digits) of a --source archive; empty: none (GTZAN_URL is pinned). "
        "Without one, an interrupted download restarts from byte 0.",
    )
    source_layout: Literal[SOURCE_LAYOUTS] = Field(
        "auto",
        description="Where labels come from: gtzan (<genre>.<5 digits>.wav names), tags (the files' genre tags), "
        "folders (<source>/<label>/...), fma (tracks.csv + fma_small/...); auto: fma, gtzan, tags, else folders.",
    )
    label_map: str = Field(
        "",
        description="TOML file mapping labels to raw genre values (tags, folder names, FMA genres), e.g. "
        'hiphop = ["Hip-Hop", "Rap"]; empty: each value is its own label (GTZAN names matched loosely).',
    )
    min_tracks_per_label: int = Field(
        MIN_TRACKS_PER_LABEL,
        description="Labels with fewer tracks are left out (listed in the exclusions); not for gtzan.",
        ge=1,
    )

    @field_validator("label_map")
    @classmethod
    def _readable_label_map(cls, label_map: str) -> str:
        if label_map:
            load_label_map(label_map)  # a bad map fails here, as a usage error naming the file, not after a download
        return label_map


class DeviceOptions(Request):
    """Where the model runs."""

    device: str = Field("auto", description="auto (CUDA when present), cpu, cuda or cuda:N.")


class FeatureOptions(Request):
    """Log-mel and segmentation options; ``None`` keeps the architecture's seed preprocessing."""

    sample_rate: int | None = Field(None, description="Analysis sample rate in Hz (audio is resampled to it)." + _AUTO)
    n_fft: int | None = Field(None, description="FFT size in samples." + _AUTO)
    hop_length: int | None = Field(None, description="Hop between log-mel frames in samples." + _AUTO)
    n_mels: int | None = Field(None, description="Number of mel bands." + _AUTO)
    segment_s: float | None = Field(None, description="Segment length in seconds." + _AUTO)
    overlap_s: float | None = Field(None, description="Overlap between consecutive segments in seconds." + _AUTO)
    max_segments: int | None = Field(
        None, description="Score at most this many evenly spaced segments per track (0: all)." + _AUTO
    )


class TrainingOptions(DeviceOptions, WorkOptions):
    """Optimisation, augmentation and where training runs (shared by train and protocol)."""

    epochs: int = Field(_T.epochs, description="Maximum number of epochs (early stopping on val/loss).")
    batch_size: int = Field(_T.batch_size, description="Segments per batch.")
    learning_rate: float = Field(_T.learning_rate, description="Adam learning rate.")
    patience: int = Field(_T.patience, description="Epochs without a better val/loss before stopping.")
    freq_mask: int = Field(_T.freq_mask, description="SpecAugment: widest frequency mask in mel bands (0: off).")
    time_mask: int = Field(_T.time_mask, description="SpecAugment: widest time mask in log-mel frames (0: off).")
    mixup_alpha: float = Field(
        _T.mixup_alpha,
        description="Mixup: blend each batch with a shuffled copy by a Beta(alpha, alpha) weight (0: off).",
    )
    pretrained: Literal[PRETRAINED_CHECKPOINTS] = Field(
        _M.pretrained,
        description=f"musicnn-* models: the pretrained checkpoint, {' or '.join(PRETRAINED_CHECKPOINTS)} "
        "(Million Song Dataset or MagnaTagATune tags).",
    )
    pretrained_lr_scale: float = Field(
        _T.pretrained_lr_scale,
        description="musicnn-* models: learning-rate multiplier for the pretrained layers (0: frozen, their output "
        "computed once and cached; e.g. 0.1 fine-tunes, best on CUDA).",
    )
    seed: int = Field(_T.seed, description="Random seed (split or folds, initialisation, batches).")
    feature_backend: Literal["auto", "torch", "librosa"] = Field(
        "auto", description="Log-mel path: auto (torch on CUDA, librosa on CPU), torch or librosa."
    )
    experiment: str = Field(DEFAULT_EXPERIMENT, description="MLflow experiment name.")

    def config_options(self) -> dict[str, Any]:
        """The fields that are :class:`PipelineConfig` options (flat names, as ``from_options`` takes them)."""
        run = set(Request.model_fields) | RUN_FIELDS
        return {n: v for n, v in self.options().items() if n not in run}


RUN_FIELDS = frozenset(
    {"source", "sha256", "work_dir", "device", "feature_backend", "experiment", "model_name", "cross_artist", "model"}
    | {"folds", "source_layout", "label_map", "min_tracks_per_label"}
)
"""Request fields that say where and how a run goes, not what model it trains (not :class:`PipelineConfig`)."""


class TrainRequest(FeatureOptions, TrainingOptions, DownloadRequest):
    """``train-flow``: download, split, features, training of one zoo architecture, test evaluation, registration."""

    split: Literal[SPLIT_METHODS] = Field(
        _S.method,
        description="Track-level split: auto (official for FMA; grouped-stratified when tracks carry artist tags or "
        "album folders; filtered when the full GTZAN is present; else stratified), filtered, index, stratified, "
        "grouped-stratified (no artist/album in two splits) or official (the collection's own).",
    )
    val_fraction: float = Field(
        _S.val_fraction, description="Share of each genre's tracks for validation (stratified split)."
    )
    test_fraction: float = Field(
        _S.test_fraction, description="Share of each genre's tracks for test (stratified split)."
    )
    architecture: Literal[ARCHITECTURES] = Field(
        _M.architecture, description=f"Model zoo architecture: {', '.join(ARCHITECTURES)}."
    )
    rnn_type: Literal["gru", "lstm"] = Field(
        _M.rnn_type, description="crnn-attention's recurrent layer: gru or lstm (bidirectional)."
    )
    model_name: str = Field(MODEL_NAME, description="MLflow registered model name.")

    def pipeline_config(self) -> PipelineConfig:
        """The frozen configuration of this training run."""
        return PipelineConfig.from_options(**self.config_options())

    @model_validator(mode="after")
    def _valid_config(self) -> TrainRequest:
        self.pipeline_config()
        return self


class ProtocolRequest(FeatureOptions, TrainingOptions):
    """``protocol-flow``: cross-artist evaluation and stratified k-fold of one model, in nested MLflow runs."""

    source: str = Field(TRAIN_SOURCE, description="Training collection (folder, archive or URL).")
    cross_artist: str = Field(
        CROSS_ARTIST_SOURCE,
        description="Labelled clips by other artists: the cross-artist test set (folder, archive or URL).",
    )
    model: Literal[(*ARCHITECTURES, BASELINE)] = Field(
        _M.architecture,
        description=f"What to evaluate: {', '.join(ARCHITECTURES)} or the classical baseline {BASELINE}.",
    )
    folds: int = Field(5, description="k of the stratified track-level k-fold.")
    val_fraction: float = Field(
        _S.val_fraction, description="Share of the training tracks held out for early stopping."
    )

    @field_validator("folds")
    @classmethod
    def _two_folds(cls, folds: int) -> int:
        if folds < 2:
            raise ValueError(f"need at least 2 folds, got {folds}")
        return folds

    def pipeline_config(self) -> PipelineConfig:
        """The configuration that evaluates :attr:`model` (the baseline gets crnn-attention's preprocessing)."""
        return protocol_config(self.model, **self.config_options())

    @model_validator(mode="after")
    def _valid_config(self) -> ProtocolRequest:
        self.pipeline_config()
        return self


class LibraryOptions(Request):
    """A music library, where its results go, and the model that labels it (score, serve, deploy)."""

    library: list[str] = Field(
        description="Folder or s3://bucket/prefix of music, scanned recursively (repeat for several).", min_length=1
    )
    output_dir: str = Field(
        "scores", description="Folder for results tables, the library state store (library.sqlite) and model cache."
    )
    model_uri: str = Field(
        DEFAULT_MODEL_URI, description="MLflow model URI; the concrete version is recorded with every result."
    )


class ScoreRequest(DeviceOptions, LibraryOptions):
    """``batch-score-flow``: label new or changed music files with a registered model (reruns skip what is done)."""

    top_k: int = Field(TOP_K, description="Genres listed per track, best first.")
    uncertain_below: float = Field(
        UNCERTAIN_BELOW,
        description="Flag a track `uncertain` (not tagged) when its top probability is below this (0-1).",
    )
    timeline: bool = Field(False, description="Also record per-segment predictions (start s, end s, genre).")
    max_duration_s: float = Field(
        600.0, description="Score at most this many seconds from the start of a file (0: whole file)."
    )
    chunk_size: int = Field(32, description="Files per score-chunk task.")
    tags: Literal[TAG_MODES] = Field(
        "off",
        description="Genre tags in the files (ID3/Vorbis/MP4): off, dry-run (report only), write (replaces another "
        "genre; the results keep the old one) or fill-missing (only files without a genre tag).",
    )
    retry_failed: bool = Field(False, description="Try again files that failed before and did not change.")
    rescore: bool = Field(
        False, description="Score every file again (e.g. to add --timeline), even if it is unchanged."
    )
    formats: list[str] = Field(
        list(DEFAULT_RESULT_FORMATS),
        description="Results table formats (writers of scoring.results: csv, jsonl, parquet), comma-separated on the "
        "command line; checked before any file is scored.",
        min_length=1,
    )
    results_uri: str = Field(
        "", description="Also copy the results tables to s3://bucket/prefix (for a team or other machines)."
    )

    @model_validator(mode="after")
    def _valid_scoring(self) -> ScoreRequest:
        check_scoring_options(self.top_k, self.uncertain_below, self.max_duration_s)
        return self

    def scoring_options(self) -> dict[str, Any]:
        """What changes a file's result (recorded with it in the state store)."""
        return self.options("top_k", "uncertain_below", "timeline", "max_duration_s")


class LibraryEvalRequest(DeviceOptions, LibraryOptions):
    """``library-eval-flow``: score a library (tags untouched) and compare the model with the files' own genre tags."""

    label_map: str = Field(
        description="TOML file mapping each label to the raw genre tag values that mean it "
        '(rock = ["Rock", "Hard Rock"]); matched ignoring case and punctuation.'
    )
    uncertain_below: float = ScoreRequest.model_fields["uncertain_below"]
    max_duration_s: float = ScoreRequest.model_fields["max_duration_s"]
    experiment: str = Field(EVALUATION_EXPERIMENT, description="MLflow experiment of the evaluation run.")

    @field_validator("library")
    @classmethod
    def _local(cls, library: list[str]) -> list[str]:
        if remote := [r for r in library if "://" in r]:
            raise ValueError(f"evaluation reads the files' own tags, so the library must be local folders: {remote[0]}")
        return library

    @model_validator(mode="after")
    def _valid_scoring(self) -> LibraryEvalRequest:
        check_scoring_options(TOP_K, self.uncertain_below, self.max_duration_s)
        return self

    def score_request(self) -> ScoreRequest:
        """The batch-scoring run this evaluation reads: same library, output folder and model; tags off."""
        return ScoreRequest(**self.options("library", "output_dir", "model_uri", "device"), tags="off",
                            uncertain_below=self.uncertain_below, max_duration_s=self.max_duration_s)  # fmt: skip


class DeploymentRequest(LibraryOptions):
    """``train-flow/<name>`` (on demand) and ``batch-score-flow/<name>`` (on a schedule) of a library (serve, deploy)."""

    name: str = Field(DEFAULT_DEPLOYMENT, description="Deployment name: train-flow/<name> and batch-score-flow/<name>.")
    cron: str = Field(NIGHTLY_CRON, description="Cron schedule of batch-score-flow (default: nightly at 02:00).")
    timezone: str = Field("UTC", description="Timezone of the cron schedule (IANA name).")
    train_source: str | None = Field(None, description="Default --source of the train-flow deployment.")


REQUESTS: dict[str, type[Request]] = {"train": TrainRequest, "score": ScoreRequest, "protocol": ProtocolRequest}
"""Flow command (and MLproject entry point) -> its request."""
COMMANDS: dict[str, type[Request]] = (
    REQUESTS | {"download": DownloadRequest} | dict.fromkeys(("serve", "deploy"), DeploymentRequest)
)
"""Every CLI command built from a request -> that request."""


def field_names(request: type[Request]) -> list[str]:
    """The request's fields: required ones, its own, then the shared groups' (the order of ``--help`` and MLproject)."""
    fields = request.model_fields
    return sorted(fields, key=lambda n: (not fields[n].is_required(), n not in request.__annotations__))


def choices(annotation: Any) -> tuple[str, ...] | None:
    """The allowed values of a ``Literal`` annotation (or of a list of one); ``None`` for other types."""
    if get_origin(annotation) is list:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return get_args(annotation) if get_origin(annotation) is Literal else None


def first_error(request: type[Request], exc: ValidationError) -> tuple[str | None, str]:
    """(field name or ``None`` for the whole request, one-line reason) of a request's validation error."""
    err = exc.errors()[0]
    name = str(err["loc"][0]) if err["loc"] else None
    if name and (allowed := choices(request.model_fields[name].annotation)) and err["type"] == "literal_error":
        listed = f"{', '.join(allowed[:-1])} or {allowed[-1]}" if len(allowed) <= 3 else f"one of {', '.join(allowed)}"
        return name, f"{name} must be {listed}, got {err['input']!r}"
    reason = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing":
        reason = f"{name} is required"
    return name, reason
