"""Frozen configuration dataclasses: the only home of defaults.

Every class validates itself in ``__post_init__`` and raises ``ValueError`` naming the bad
value. ``flatten`` turns a config tree into ``{"features.n_mels": 96, ...}`` for MLflow params.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any


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


ARCHITECTURES = ("musicnn-linear", "musicnn-crnn", "crnn-attention", "choi-crnn", "cnn-lstm", "parallel-cnn-bilstm")
"""The model zoo (``crnn.zoo``); the first is the default. ``musicnn-linear`` leads the cross-artist figure
(0.633 ± 0.015 over 3 seeds, ``musicnn-crnn`` 0.617 ± 0.040, ``crnn-attention`` below 0.5: bench/RESULTS.md)."""

CLASSIC_ARCHITECTURE = "crnn-attention"
"""The from-scratch CRNN of seed 000: the preprocessing of :class:`FeatureConfig`'s defaults, of the classical
baseline, and the architecture of checkpoints written before the model zoo."""

PRETRAINED_CHECKPOINTS = ("MSD_musicnn", "MTT_musicnn")
"""musicnn checkpoints the ``musicnn-*`` models start from (``crnn.musicnn.CHECKPOINTS``)."""

_MUSICNN_FEATURES = {
    "sample_rate": 16000,
    "n_fft": 512,
    "hop_length": 256,
    "n_mels": 96,
    "segment_s": 3.0,
    "overlap_s": 0.0,
    "max_segments": 5,
}

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
    """The flat option names :meth:`PipelineConfig.from_options` takes (``split`` names the split method)."""
    sections = (FeatureConfig, ModelConfig, TrainConfig, SplitConfig)
    return frozenset({f.name for section in sections for f in dataclasses.fields(section)} - {"method"} | {"split"})


BASELINE = "mfcc-logreg"
"""The classical baseline (``crnn.baseline``), evaluated beside the zoo under the same protocol."""

ARCHITECTURE_FEATURES: dict[str, dict[str, Any]] = {
    "crnn-attention": {},  # FeatureConfig's defaults
    # musicnn (Pons & Serra 2019): 16 kHz, n_fft 512, hop 256, 96 bands, 3 s patches (187 frames). Its front
    # end costs ~2.8 GFLOP per segment (~14x the CRNN's), so segments do not overlap and a track is scored on
    # 5 evenly spaced ones (bench/segment_cap.py: track accuracy 0.921 against 0.926 with all ten segments of a
    # 30 s track, the same genre on 98% of tracks; bench/RESULTS.md).
    "musicnn-crnn": _MUSICNN_FEATURES,
    "musicnn-linear": _MUSICNN_FEATURES,
    # Seed 001 / Choi et al. 2017: 12 kHz, 96 mel bands, n_fft 512, hop 256, 29.12 s inputs.
    "choi-crnn": {
        "sample_rate": 12000,
        "n_fft": 512,
        "hop_length": 256,
        "n_mels": 96,
        "segment_s": 29.12,
        "overlap_s": 0.0,
    },
    # Seed 003's layer table: 64 x 173 inputs (the 5x5 valid conv gives 60 x 169); librosa's
    # default n_fft 2048 / hop 512 at 22 050 Hz makes 173 frames 4.02 s; 50% overlap.
    "cnn-lstm": {"n_fft": 2048, "hop_length": 512, "n_mels": 64, "segment_s": 4.02, "overlap_s": 2.01},
    # Seed 004: 3 s clips with 50% overlap, n_fft 1024 (513 bins) x ~128 frames; 128 log-mel
    # bands stand in for the seed's 513 linear bins pooled to 128.
    "parallel-cnn-bilstm": {"n_fft": 1024, "hop_length": 512, "n_mels": 128, "segment_s": 3.0, "overlap_s": 1.5},
}
"""Each architecture's preprocessing, as its seed describes it; explicit options override it."""


@dataclass(frozen=True)
class ModelConfig:
    """Architecture choice and the CRNN (seed ``000``) hyper-parameters.

    Attributes:
        architecture: one of :data:`ARCHITECTURES`; the fields from ``channels`` to
            ``attention_dim`` shape ``crnn-attention`` only (the other zoo models follow
            their seed's layer table).
        channels: output channels of each convolution block.
        freq_pool: max-pool factor along mel bands per block; their product must divide ``n_mels``.
        time_pool: max-pool factor along frames per block.
        rnn_type: ``"gru"`` or ``"lstm"`` (bidirectional).
        rnn_hidden: hidden units per direction.
        rnn_layers: stacked recurrent layers.
        attention_dim: size of the additive attention scorer.
        dropout: dropout before the classifier, in [0, 1).
        n_classes: number of genres.
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
    n_classes: int = 10
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
        _check(self.n_classes >= 2, f"n_classes must be >= 2, got {self.n_classes}")


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


@dataclass(frozen=True)
class SplitConfig:
    """Track-level split.

    Attributes:
        method: ``"auto"`` (``filtered`` when the full GTZAN is present, else ``stratified``),
            ``"filtered"``, ``"index"`` or ``"stratified"``.
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
            self.method in ("auto", "filtered", "index", "stratified"),
            f"split method must be auto, filtered, index or stratified, got {self.method!r}",
        )
        _check(
            0 < self.val_fraction < 1 and 0 < self.test_fraction < 1 and self.val_fraction + self.test_fraction < 1,
            f"need 0 < val_fraction, test_fraction and their sum < 1, got {self.val_fraction}, {self.test_fraction}",
        )


def check_shape_contract(features: FeatureConfig, model: ModelConfig) -> None:
    """Check that the CRNN's pooling fits the log-mel input.

    Raises:
        ValueError: ``n_mels`` is not divisible by the product of ``freq_pool``, or the
            shortest scored input (``min_segment_s``) has fewer frames than the product of ``time_pool``.
    """
    freq_div, time_div = math.prod(model.freq_pool), math.prod(model.time_pool)
    _check(
        features.n_mels % freq_div == 0,
        f"n_mels={features.n_mels} is not divisible by the product of freq_pool {model.freq_pool} = {freq_div}",
    )
    _check(
        features.min_frames >= time_div,
        f"min_segment_s={features.min_segment_s} s gives {features.min_frames} frames, "
        f"fewer than the product of time_pool {model.time_pool} = {time_div}",
    )


@dataclass(frozen=True)
class PipelineConfig:
    """The whole frozen configuration of one training run; checks the model/feature shape contract."""

    features: FeatureConfig = field(default_factory=lambda: FeatureConfig(**ARCHITECTURE_FEATURES[ARCHITECTURES[0]]))
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    split: SplitConfig = field(default_factory=SplitConfig)

    def __post_init__(self) -> None:
        if self.model.architecture == CLASSIC_ARCHITECTURE:  # the other architectures check theirs when built
            check_shape_contract(self.features, self.model)

    @classmethod
    def from_options(cls, **options: Any) -> PipelineConfig:
        """Build from flat option names (as the CLI, flows and MLproject use them).

        Each option is routed to the section that has a field of that name; ``seed`` seeds both
        training and the split, and ``split`` names :attr:`SplitConfig.method`. Feature options
        start from the architecture's preprocessing (:data:`ARCHITECTURE_FEATURES`); an option
        given as ``None`` keeps that default.

        Raises:
            ValueError: an option that no section has, or an invalid value.
        """
        options = {k: v for k, v in options.items() if v is not None}
        architecture = options.get("architecture", ModelConfig.architecture)
        features = dict(ARCHITECTURE_FEATURES.get(architecture, {}))
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

    def to_dict(self) -> dict[str, Any]:
        """Nested plain-dict form (JSON-serialisable)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PipelineConfig:
        """Inverse of :meth:`to_dict`; tuples are restored from JSON lists."""
        model = {k: tuple(v) if isinstance(v, list) else v for k, v in data.get("model", {}).items()}
        model.setdefault("architecture", CLASSIC_ARCHITECTURE)  # checkpoints from before the model zoo
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
    """The config that evaluates ``model`` (a zoo architecture or :data:`BASELINE`) under the protocol.

    The baseline has no network; it gets ``crnn-attention``'s preprocessing (:data:`CLASSIC_ARCHITECTURE`),
    so it sees the same log-mels and segment crops as that CRNN.

    Raises:
        ValueError: an unknown model name or option, or an invalid value.
    """
    if model != BASELINE and model not in ARCHITECTURES:
        raise ValueError(f"model must be one of {', '.join((*ARCHITECTURES, BASELINE))}, got {model!r}")
    return PipelineConfig.from_options(architecture=CLASSIC_ARCHITECTURE if model == BASELINE else model, **options)
