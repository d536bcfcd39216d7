"""The model zoo's catalogue: one :class:`ZooEntry` per model, as data.

Each entry holds the model's name, where its class (or fitting function) lives, its seed
preprocessing, the :class:`crnn.config.ModelConfig` fields it honours, its config-time shape check
and whether it is a network or the classical baseline. Nothing here imports torch: the CLI validates
options against this catalogue at start-up, and classes are imported only when a model is built.

Adding a model: write its class (a :class:`crnn.models.GenreNet`, e.g. in ``crnn/zoo.py``) and add
its entry to :data:`ZOO`; ``tests/crnn/test_zoo.py`` lists the expected shapes and parameter count.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crnn.config import FeatureConfig, ModelConfig

NETWORK, CLASSICAL = "network", "classical"

SHAPING_FIELDS = (
    "channels",
    "freq_pool",
    "time_pool",
    "rnn_type",
    "rnn_hidden",
    "rnn_layers",
    "attention_dim",
    "pretrained",
)
"""``ModelConfig`` fields that shape only some models; each entry names those it honours. Every network
honours ``dropout``, ``level_norm`` and ``labels``."""

_RECURRENT_HEAD = frozenset({"rnn_type", "rnn_hidden", "rnn_layers", "attention_dim"})


def check_shape_contract(features: FeatureConfig, model: ModelConfig) -> None:
    """Check that the CRNN's pooling fits the log-mel input.

    Raises:
        ValueError: ``n_mels`` is not divisible by the product of ``freq_pool``, or the
            shortest scored input (``min_segment_s``) has fewer frames than the product of ``time_pool``.
    """
    freq_div, time_div = math.prod(model.freq_pool), math.prod(model.time_pool)
    if features.n_mels % freq_div != 0:
        raise ValueError(
            f"n_mels={features.n_mels} is not divisible by the product of freq_pool {model.freq_pool} = {freq_div}"
        )
    if features.min_frames < time_div:
        raise ValueError(
            f"min_segment_s={features.min_segment_s} s gives {features.min_frames} frames, "
            f"fewer than the product of time_pool {model.time_pool} = {time_div}"
        )


@dataclass(frozen=True)
class ZooEntry:
    """One model of the zoo.

    Attributes:
        name: the ``architecture`` (or protocol ``model``) name, kebab-case.
        builder: ``"module:attribute"`` of its class (networks: called as ``cls(feature_cfg, model_cfg)``)
            or of its fitting function (classical); imported by :meth:`load` only.
        features: its seed preprocessing, as :class:`crnn.config.FeatureConfig` overrides (``{}``:
            the defaults); explicit options override them.
        honours: the :data:`SHAPING_FIELDS` that shape it; setting any other one is a ``ValueError``.
            ``pretrained`` among them means it starts from a musicnn checkpoint.
        kind: :data:`NETWORK` (trained by train-flow, registered, served) or :data:`CLASSICAL` (the
            protocol's baseline).
        shape_check: raises ``ValueError`` when the features do not fit the model, called when the
            config is built; ``None``: the class checks its inputs when built.
    """

    name: str
    builder: str
    features: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    honours: frozenset[str] = frozenset()
    kind: str = NETWORK
    shape_check: Callable[[FeatureConfig, ModelConfig], None] | None = None

    def __post_init__(self) -> None:
        if not self.honours <= set(SHAPING_FIELDS):
            raise ValueError(f"{self.name}: honours {sorted(self.honours - set(SHAPING_FIELDS))}, not shaping fields")
        if self.kind not in (NETWORK, CLASSICAL):
            raise ValueError(f"{self.name}: kind must be {NETWORK!r} or {CLASSICAL!r}, got {self.kind!r}")
        object.__setattr__(self, "features", MappingProxyType(dict(self.features)))

    @property
    def is_network(self) -> bool:
        """True for a trainable, servable network; False for the classical baseline."""
        return self.kind == NETWORK

    @property
    def starts_pretrained(self) -> bool:
        """True when the model starts from the musicnn checkpoint ``ModelConfig.pretrained``."""
        return "pretrained" in self.honours

    def load(self) -> Any:
        """The class (or fitting function) named by :attr:`builder`, imported now."""
        module, attribute = self.builder.split(":")
        return getattr(importlib.import_module(module), attribute)


# musicnn (Pons & Serra 2019): 16 kHz, n_fft 512, hop 256, 96 bands, 3 s patches (187 frames). Its front
# end costs ~2.8 GFLOP per segment (~14x the CRNN's), so segments do not overlap and a track is scored on
# 5 evenly spaced ones (bench/segment_cap.py: track accuracy 0.921 against 0.926 with all ten segments of a
# 30 s track, the same genre on 98% of tracks; bench/RESULTS.md).
_MUSICNN_FEATURES = {
    "sample_rate": 16000,
    "n_fft": 512,
    "hop_length": 256,
    "n_mels": 96,
    "segment_s": 3.0,
    "overlap_s": 0.0,
    "max_segments": 5,
}

ZOO: tuple[ZooEntry, ...] = (
    ZooEntry("musicnn-linear", "crnn.zoo:MusicnnLinear", _MUSICNN_FEATURES, frozenset({"pretrained"})),
    ZooEntry("musicnn-crnn", "crnn.zoo:MusicnnCRNN", _MUSICNN_FEATURES, _RECURRENT_HEAD | {"pretrained"}),
    ZooEntry(
        "crnn-attention",
        "crnn.models:CRNN",
        {},  # FeatureConfig's defaults
        _RECURRENT_HEAD | {"channels", "freq_pool", "time_pool"},
        shape_check=check_shape_contract,
    ),
    # Seed 001 / Choi et al. 2017: 12 kHz, 96 mel bands, n_fft 512, hop 256, 29.12 s inputs.
    ZooEntry(
        "choi-crnn",
        "crnn.zoo:ChoiCRNN",
        {"sample_rate": 12000, "n_fft": 512, "hop_length": 256, "n_mels": 96, "segment_s": 29.12, "overlap_s": 0.0},
    ),
    # Seed 003's layer table: 64 x 173 inputs (the 5x5 valid conv gives 60 x 169); librosa's
    # default n_fft 2048 / hop 512 at 22 050 Hz makes 173 frames 4.02 s; 50% overlap.
    ZooEntry(
        "cnn-lstm",
        "crnn.zoo:CNNLSTM",
        {"n_fft": 2048, "hop_length": 512, "n_mels": 64, "segment_s": 4.02, "overlap_s": 2.01},
    ),
    # Seed 004: 3 s clips with 50% overlap, n_fft 1024 (513 bins) x ~128 frames; 128 log-mel
    # bands stand in for the seed's 513 linear bins pooled to 128.
    ZooEntry(
        "parallel-cnn-bilstm",
        "crnn.zoo:ParallelCNNBiLSTM",
        {"n_fft": 1024, "hop_length": 512, "n_mels": 128, "segment_s": 3.0, "overlap_s": 1.5},
    ),
    # The classical baseline: MFCC/log-mel statistics + logistic regression, on crnn-attention's log-mels
    # and segment crops (FeatureConfig's defaults).
    ZooEntry("mfcc-logreg", "crnn.baseline:fit_baseline", {}, kind=CLASSICAL),
)
"""Every model, the default network first. ``musicnn-linear`` leads the cross-artist figure (0.633 ± 0.015
over 3 seeds, ``musicnn-crnn`` 0.617 ± 0.040, ``crnn-attention`` below 0.5: bench/RESULTS.md)."""

_BY_NAME = {e.name: e for e in ZOO}


def zoo_entry(name: str) -> ZooEntry:
    """The entry of model ``name``.

    Raises:
        ValueError: no such model; the message lists them.
    """
    if name not in _BY_NAME:
        raise ValueError(f"model must be one of {', '.join(_BY_NAME)}, got {name!r}")
    return _BY_NAME[name]


def honouring(field_name: str) -> tuple[str, ...]:
    """Names of the models that ``field_name`` (one of :data:`SHAPING_FIELDS`) shapes."""
    return tuple(e.name for e in ZOO if field_name in e.honours)
