"""Frozen configuration dataclasses: the only home of defaults.

Every class validates itself in ``__post_init__`` and raises ``ValueError`` naming the bad
value. ``flatten`` turns a config tree into ``{"features.n_mels": 96, ...}`` for MLflow params.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from crnn import GENRES
from crnn.catalog import SHAPING_FIELDS, ZOO, check_shape_contract, honouring, zoo_entry

__all__ = ["check_shape_contract", "zoo_entry"]  # re-exported for crnn.models and flows/ (which import only config)


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


@dataclass(frozen=True)
class FeatureConfig:
    """Log-mel front end and segmentation.

    Attributes:
        sample_rate: audio is resampled to this rate (in Hz) before analysis.
        n_fft: FFT size (in samples); the window length equals ``n_fft``.
        hop_length: hop between frames (in samples).
        n_mels: number of mel bands (Slaney mel scale and Slaney area normalisation).
        f_min: lowest mel band edge (in Hz).
        f_max: highest mel band edge (in Hz); ``None`` means ``sample_rate / 2``.
        segment_s: length of one model input segment (in seconds).
        overlap_s: overlap between consecutive segments of a track (in seconds).
        min_segment_s: shortest audio (in seconds) still scored as one (shorter) segment.
        max_segments: score at most this many of a track's segments, evenly spaced over it (0: every
            segment). Bounds the scoring cost per track whatever its length; training uses every segment.
    """

    sample_rate: int = 22050
    n_fft: int = 1024
    hop_length: int = 512
    n_mels: int = 96
    f_min: float = 0.0
    f_max: float | None = None
    segment_s: float = 3.0
    overlap_s: float = 1.5
    min_segment_s: float = 1.0
    max_segments: int = 0

    def __post_init__(self) -> None:
        _check(self.sample_rate > 0, f"sample_rate must be > 0 Hz, got {self.sample_rate}")
        _check(self.n_fft > 0, f"n_fft must be > 0 samples, got {self.n_fft}")
        _check(
            0 < self.hop_length <= self.n_fft, f"hop_length must be in (0, n_fft={self.n_fft}], got {self.hop_length}"
        )
        _check(self.n_mels > 0, f"n_mels must be > 0, got {self.n_mels}")
        nyquist = self.sample_rate / 2
        f_max = nyquist if self.f_max is None else self.f_max
        _check(
            0 <= self.f_min < f_max <= nyquist,
            f"need 0 <= f_min < f_max <= {nyquist} Hz, got f_min={self.f_min}, f_max={self.f_max}",
        )
        _check(self.segment_s > 0, f"segment_s must be > 0 s, got {self.segment_s}")
        _check(
            0 <= self.overlap_s < self.segment_s,
            f"overlap_s must be in [0, segment_s={self.segment_s}) s, got {self.overlap_s}",
        )
        _check(
            0 < self.min_segment_s <= self.segment_s,
            f"min_segment_s must be in (0, segment_s] s, got {self.min_segment_s}",
        )
        _check(self.max_segments >= 0, f"max_segments must be >= 0 (0: every segment), got {self.max_segments}")

    @property
    def resolved_f_max(self) -> float:
        """Upper band edge in Hz (``f_max`` or the Nyquist frequency)."""
        return self.sample_rate / 2 if self.f_max is None else float(self.f_max)

    def seconds_to_frames(self, seconds: float) -> int:
        """Number of log-mel frames spanning ``seconds`` of audio (at least 1)."""
        return max(1, int(round(seconds * self.sample_rate / self.hop_length)))

    @property
    def segment_frames(self) -> int:
        """Segment length in frames."""
        return self.seconds_to_frames(self.segment_s)

    @property
    def hop_frames(self) -> int:
        """Distance between segment starts in frames."""
        return max(1, self.seconds_to_frames(self.segment_s - self.overlap_s))

    @property
    def min_frames(self) -> int:
        """Shortest input in frames that is still scored."""
        return self.seconds_to_frames(self.min_segment_s)

    def cache_key(self) -> str:
        """Hash of the fields that change a log-mel spectrogram (not the segmentation)."""
        spectral = {k: getattr(self, k) for k in ("sample_rate", "n_fft", "hop_length", "n_mels", "f_min")}
        spectral["f_max"] = self.resolved_f_max
        return hashlib.sha256(json.dumps(spectral, sort_keys=True).encode()).hexdigest()[:16]


ARCHITECTURES = tuple(e.name for e in ZOO if e.is_network)
"""The networks of the model zoo (:data:`crnn.catalog.ZOO`); the first is the default."""

BASELINE = next(e.name for e in ZOO if not e.is_network)
"""The classical baseline (``crnn.baseline``), evaluated beside the zoo under the same protocol."""

PROTOCOL_MODELS = tuple(e.name for e in ZOO)
"""Everything the protocol evaluates: every network and the classical baseline."""

CLASSIC_ARCHITECTURE = "crnn-attention"
"""The from-scratch CRNN of seed 000: the preprocessing of :class:`FeatureConfig`'s defaults, of the classical
baseline, and the architecture of checkpoints written before the model zoo."""

PRETRAINED_CHECKPOINTS = ("MSD_musicnn", "MTT_musicnn")
"""musicnn checkpoints the ``musicnn-*`` models start from (``crnn.musicnn.CHECKPOINTS``)."""

TOP_K = 3
"""Default number of genres scoring lists per track, best first."""

UNCERTAIN_BELOW = 0.75
"""Default confidence threshold of scoring: a track whose top probability is below it is ``uncertain`` and not
tagged. Chosen on the cross-artist clips for the default ``musicnn-linear`` (3 seeds, bench/RESULTS.md): the
tags written are right for 0.775 of clips, 30% of clips are left uncertain (at 0.5: 0.679, 12%)."""


def check_scoring_options(top_k: int, uncertain_below: float, max_duration_s: float | None) -> None:
    """Raise ``ValueError`` for scoring options no file could be scored with.

    Args:
        top_k: genres listed per track, >= 1.
        uncertain_below: confidence threshold, in [0, 1].
        max_duration_s: seconds scored from the start of a file, >= 0 (0 or ``None``: the whole file).
    """
    _check(top_k >= 1, f"top_k must be >= 1, got {top_k}")
    _check(0.0 <= uncertain_below <= 1.0, f"uncertain_below must be in [0, 1], got {uncertain_below}")
    _check(max_duration_s is None or max_duration_s >= 0, f"max_duration_s must be >= 0 s, got {max_duration_s}")


def config_option_names() -> frozenset[str]:
    """The flat option names :meth:`PipelineConfig.from_options` takes (``split`` names the split method).

    ``labels`` is not among them: training reads it from the dataset (:meth:`PipelineConfig.with_labels`).
    """
    sections = (FeatureConfig, ModelConfig, TrainConfig, SplitConfig)
    fields = {f.name for section in sections for f in dataclasses.fields(section)}
    return frozenset(fields - {"method", "labels"} | {"split"})


@dataclass(frozen=True)
class ModelConfig:
    """Architecture choice and the CRNN (seed ``000``) hyper-parameters.

    Attributes:
        architecture: one of :data:`ARCHITECTURES`. The fields from ``channels`` to
            ``attention_dim``, and ``pretrained``, shape only the models whose zoo entry honours
            them (:data:`crnn.catalog.ZOO`); giving another value to one a model ignores is a ``ValueError``.
        channels: output channels of each convolution block.
        freq_pool: max-pool factor along mel bands per block; their product must divide ``n_mels``.
        time_pool: max-pool factor along frames per block.
        rnn_type: ``"gru"`` or ``"lstm"`` (bidirectional).
        rnn_hidden: hidden units per direction.
        rnn_layers: stacked recurrent layers.
        attention_dim: size of the additive attention scorer.
        dropout: dropout before the classifier, in [0, 1).
        labels: the class names, in output order (index ``i`` is class ``i``); training takes them from
            the dataset (:func:`crnn.dataset.label_list`), and the checkpoint keeps them. Default: GTZAN's ten.
        level_norm: subtract each input's mean dB level, so the prediction does not depend
            on playback loudness or mastering level (a spurious cue in GTZAN, whose classical
            tracks are ~13 dB quieter than the rest).
        pretrained: the musicnn checkpoint (:data:`PRETRAINED_CHECKPOINTS`) of the ``musicnn-*``
            models: ``MSD_musicnn`` (Million Song Dataset tags) or ``MTT_musicnn`` (MagnaTagATune).
    """

    architecture: str = ARCHITECTURES[0]
    channels: tuple[int, ...] = (32, 64, 64, 128)
    freq_pool: tuple[int, ...] = (2, 2, 4, 3)
    time_pool: tuple[int, ...] = (2, 2, 2, 1)
    rnn_type: str = "gru"
    rnn_hidden: int = 64
    rnn_layers: int = 1
    attention_dim: int = 64
    dropout: float = 0.3
    labels: tuple[str, ...] = GENRES
    level_norm: bool = True
    pretrained: str = PRETRAINED_CHECKPOINTS[0]

    def __post_init__(self) -> None:
        _check(
            self.pretrained in PRETRAINED_CHECKPOINTS,
            f"pretrained must be one of {', '.join(PRETRAINED_CHECKPOINTS)}, got {self.pretrained!r}",
        )
        _check(
            self.architecture in ARCHITECTURES,
            f"architecture must be one of {', '.join(ARCHITECTURES)}, got {self.architecture!r}",
        )
        n = len(self.channels)
        _check(n > 0, "channels must name at least one convolution block")
        _check(
            len(self.freq_pool) == n and len(self.time_pool) == n,
            f"channels, freq_pool and time_pool need one entry per block, got {len(self.channels)}, {len(self.freq_pool)}, {len(self.time_pool)}",
        )
        _check(all(c > 0 for c in self.channels), f"channels must be > 0, got {self.channels}")
        _check(
            all(p >= 1 for p in self.freq_pool + self.time_pool),
            f"pool factors must be >= 1, got freq {self.freq_pool}, time {self.time_pool}",
        )
        _check(self.rnn_type in ("gru", "lstm"), f"rnn_type must be 'gru' or 'lstm', got {self.rnn_type!r}")
        _check(
            self.rnn_hidden > 0 and self.rnn_layers > 0,
            f"rnn_hidden and rnn_layers must be > 0, got {self.rnn_hidden}, {self.rnn_layers}",
        )
        _check(0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout}")
        _check(
            len(self.labels) >= 2 and len(set(self.labels)) == len(self.labels),
            f"labels must name at least 2 distinct classes, got {self.labels}",
        )
        _check(
            all(isinstance(g, str) and g for g in self.labels), f"labels must be non-empty strings, got {self.labels}"
        )
        honoured = zoo_entry(self.architecture).honours
        for name, default in _shaping_defaults().items():
            value = getattr(self, name)
            _check(
                name in honoured or value == default,
                f"{self.architecture} ignores {name}={value!r}: it shapes only {', '.join(honouring(name))}; "
                f"leave it at {default!r}",
            )

    @property
    def n_classes(self) -> int:
        """Number of classes: the model's output size."""
        return len(self.labels)


def _shaping_defaults() -> dict[str, Any]:
    """Default of each :data:`crnn.catalog.SHAPING_FIELDS` field of :class:`ModelConfig`."""
    return {f.name: f.default for f in dataclasses.fields(ModelConfig) if f.name in SHAPING_FIELDS}


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation.

    Attributes:
        epochs: maximum number of epochs.
        batch_size: segments per batch.
        learning_rate: Adam step size.
        weight_decay: Adam L2 penalty.
        patience: epochs without a better ``val/loss`` before early stopping.
        seed: seeds Python, NumPy and torch.
        num_workers: DataLoader worker processes.
        freq_mask: SpecAugment: widest frequency mask in mel bands (0: off).
        time_mask: SpecAugment: widest time mask in frames (0: off).
        mixup_alpha: mixup (Zhang et al. 2018): each batch is blended with a shuffled copy of
            itself, inputs and targets, by a weight drawn from Beta(alpha, alpha) (0: off). The
            default 0.4 raised crnn-attention's cross-artist accuracy from 0.39 to 0.47 in the
            protocol's cross-artist training; on the 60/20/20 split it cost 5 points (README).
        pretrained_lr_scale: learning-rate multiplier for the pretrained layers of the
            ``musicnn-*`` models; 0 freezes them (eval mode, no gradients, and their output is
            computed once per segment and cached for the whole training).
        calibrate: fit a softmax temperature on the validation tracks after training (Guo et
            al. 2017), stored in the model, so track probabilities are calibrated.
    """

    epochs: int = 30
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 6
    seed: int = 42
    num_workers: int = 0
    freq_mask: int = 16
    time_mask: int = 24
    mixup_alpha: float = 0.4
    pretrained_lr_scale: float = 0.0
    calibrate: bool = True

    def __post_init__(self) -> None:
        _check(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        _check(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        _check(self.learning_rate > 0, f"learning_rate must be > 0, got {self.learning_rate}")
        _check(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        _check(self.patience >= 1, f"patience must be >= 1, got {self.patience}")
        _check(self.num_workers >= 0, f"num_workers must be >= 0, got {self.num_workers}")
        _check(
            self.freq_mask >= 0 and self.time_mask >= 0,
            f"freq_mask and time_mask must be >= 0, got {self.freq_mask}, {self.time_mask}",
        )
        _check(self.mixup_alpha >= 0, f"mixup_alpha must be >= 0, got {self.mixup_alpha}")
        _check(self.pretrained_lr_scale >= 0, f"pretrained_lr_scale must be >= 0, got {self.pretrained_lr_scale}")


SPLIT_METHODS = ("auto", "filtered", "index", "stratified", "grouped-stratified", "official")
"""Track-level split methods (:func:`crnn.splits.assign_split`)."""


@dataclass(frozen=True)
class SplitConfig:
    """Track-level split.

    Attributes:
        method: one of :data:`SPLIT_METHODS`; ``"auto"``: ``official`` when every track carries the
            collection's own split, ``grouped-stratified`` when tracks carry groups (artist, album
            folder), ``filtered`` when the full GTZAN is present, else ``stratified``.
        val_fraction: share of each genre's tracks for validation (stratified only).
        test_fraction: share of each genre's tracks for test (stratified only).
        seed: shuffles tracks within each genre (stratified only).
    """

    method: str = "auto"
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    seed: int = 42

    def __post_init__(self) -> None:
        _check(
            self.method in SPLIT_METHODS,
            f"split method must be one of {', '.join(SPLIT_METHODS)}, got {self.method!r}",
        )
        _check(
            0 < self.val_fraction < 1 and 0 < self.test_fraction < 1 and self.val_fraction + self.test_fraction < 1,
            f"need 0 < val_fraction, test_fraction and their sum < 1, got {self.val_fraction}, {self.test_fraction}",
        )


@dataclass(frozen=True)
class PipelineConfig:
    """The whole frozen configuration of one training run; checks the model/feature shape contract."""

    features: FeatureConfig = field(default_factory=lambda: FeatureConfig(**zoo_entry(ARCHITECTURES[0]).features))
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    split: SplitConfig = field(default_factory=SplitConfig)

    def __post_init__(self) -> None:
        check = zoo_entry(self.model.architecture).shape_check  # None: the class checks its inputs when built
        if check is not None:
            check(self.features, self.model)

    @classmethod
    def from_options(cls, **options: Any) -> PipelineConfig:
        """Build from flat option names (as the CLI, flows and MLproject use them).

        Each option is routed to the section that has a field of that name; ``seed`` seeds both
        training and the split, and ``split`` names :attr:`SplitConfig.method`. Feature options
        start from the architecture's seed preprocessing (its zoo entry's ``features``); an option
        given as ``None`` keeps that default.

        Raises:
            ValueError: an option that no section has, or an invalid value.
        """
        options = {k: v for k, v in options.items() if v is not None}
        architecture = options.get("architecture", ModelConfig.architecture)
        features = dict(zoo_entry(architecture).features) if architecture in ARCHITECTURES else {}
        sections: dict[str, dict[str, Any]] = {"features": features, "model": {}, "train": {}, "split": {}}
        if "split" in options:
            sections["split"]["method"] = options.pop("split")
        if "seed" in options:
            sections["split"]["seed"] = options["seed"]
        types = {"features": FeatureConfig, "model": ModelConfig, "train": TrainConfig, "split": SplitConfig}
        for name, value in options.items():
            owners = [s for s, t in types.items() if name in {f.name for f in dataclasses.fields(t)}]
            if not owners:
                raise ValueError(f"unknown configuration option {name!r}")
            sections[owners[0]][name] = value
        return cls(**{s: types[s](**kw) for s, kw in sections.items()})

    def with_labels(self, labels: Sequence[str]) -> PipelineConfig:
        """This config for a model predicting ``labels`` (in output order), e.g. those of the training data.

        Raises:
            ValueError: fewer than 2 labels, or a repeated or empty one.
        """
        return dataclasses.replace(self, model=dataclasses.replace(self.model, labels=tuple(labels)))

    def to_dict(self) -> dict[str, Any]:
        """Nested plain-dict form (JSON-serialisable)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PipelineConfig:
        """Inverse of :meth:`to_dict`; tuples are restored from JSON lists."""
        model = {k: tuple(v) if isinstance(v, list) else v for k, v in data.get("model", {}).items()}
        model.setdefault("architecture", CLASSIC_ARCHITECTURE)  # checkpoints from before the model zoo
        entry = zoo_entry(model["architecture"]) if model["architecture"] in ARCHITECTURES else None
        for name in set(SHAPING_FIELDS) - (entry.honours if entry else set(SHAPING_FIELDS)):
            model.pop(name, None)  # older checkpoints kept values their architecture ignored
        n_classes = model.pop("n_classes", None)  # checkpoints from before labels: GTZAN's ten
        if n_classes is not None and n_classes != len(model.get("labels", GENRES)):
            raise ValueError(f"n_classes={n_classes} does not match labels {model.get('labels', GENRES)}")
        return cls(
            features=FeatureConfig(**data.get("features", {})),
            model=ModelConfig(**model),
            train=TrainConfig(**data.get("train", {})),
            split=SplitConfig(**data.get("split", {})),
        )


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts to dotted keys: ``{"a": {"b": 1}} -> {"a.b": 1}``."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def protocol_config(model: str, **options: Any) -> PipelineConfig:
    """The config that evaluates ``model`` (any zoo entry, :data:`PROTOCOL_MODELS`) under the protocol.

    A classical model has no network config: its features are its entry's preprocessing (the
    baseline's are ``crnn-attention``'s, so it sees the same log-mels and segment crops as that
    CRNN), and its ``model`` section stays :data:`CLASSIC_ARCHITECTURE`'s defaults, unused.

    Raises:
        ValueError: an unknown model name or option, or an invalid value.
    """
    entry = zoo_entry(model)
    if entry.is_network:
        return PipelineConfig.from_options(architecture=model, **options)
    given = {k: v for k, v in options.items() if v is not None}
    return PipelineConfig.from_options(architecture=CLASSIC_ARCHITECTURE, **{**entry.features, **given})
