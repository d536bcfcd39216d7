"""Genre networks: the shared base (front end, input normalisation) and the default CRNN.

The default CRNN stacks conv blocks over log-mels, a bidirectional RNN and attention pooling.
The other architectures of the model zoo live in :mod:`crnn.zoo`.

Source: seed ``000`` (CNN + bidirectional LSTM + self-attention over log-mel spectrograms,
``../shared/seeds/000_*.txt``); the conv-block/batch-norm/max-pool front follows Choi et al.,
"Convolutional Recurrent Neural Networks for Music Classification", ICASSP 2017.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from crnn.config import FeatureConfig, ModelConfig, check_shape_contract
from crnn.features import LogMel


class ConvBlock(nn.Sequential):
    """3x3 convolution, batch norm, ReLU, max-pool.

    Input (B, in_ch, mels, frames) -> output (B, out_ch, mels // freq_pool, frames // time_pool).
    """

    def __init__(self, in_ch: int, out_ch: int, freq_pool: int, time_pool: int) -> None:
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
            nn.MaxPool2d((freq_pool, time_pool)),
        )


class AttentionPooling(nn.Module):
    """Additive self-attention pooling over time (Bahdanau-style scorer).

    Input (B, steps, dim) -> output (B, dim): the softmax(score)-weighted sum over steps,
    with score = v^T tanh(W h_t).
    """

    def __init__(self, dim: int, attention_dim: int) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, attention_dim), nn.Tanh(), nn.Linear(attention_dim, 1))

    def forward(self, h: Tensor) -> Tensor:
        """Pool ``h`` of shape (B, steps, dim) to (B, dim)."""
        weights = torch.softmax(self.score(h), dim=1)  # (B, steps, 1)
        return (weights * h).sum(dim=1)


def tile_frames(log_mel: Tensor, frames: int) -> Tensor:
    """Repeat a short input along time until it spans ``frames`` frames (loop padding).

    A 2.5 s excerpt given to a model built for 3 s (or 29.12 s) inputs is played again from its
    start rather than padded with silence, which would be a loud, artificial level change in dB.

    Args:
        log_mel: shape (B, n_mels, t), in dB, with 1 <= t <= frames.
        frames: required width.

    Returns:
        Shape (B, n_mels, frames).

    Raises:
        ValueError: the input is wider than ``frames``.
    """
    t = log_mel.shape[-1]
    if t > frames:
        raise ValueError(f"input of {t} frames is longer than the model's fixed input of {frames} frames")
    if t == frames:
        return log_mel
    return log_mel.repeat(1, 1, -(-frames // t))[..., :frames]  # (B, n_mels, ceil(frames / t) * t) -> crop


class GenreNet(nn.Module):
    """Base of every zoo model: waveform -> log-mel front end -> input normalisation -> logits.

    Subclasses build their layers in ``__init__`` and implement :meth:`head`. Models whose
    layers need a fixed input width set ``fixed_input = True``; shorter inputs (a 2-3 s
    excerpt, the end of a track) are then looped up to ``feature_cfg.segment_frames`` frames
    by :func:`tile_frames`. The others accept any width of at least their total time pooling.

    ``classify`` is split in two so that a frozen pretrained part can be computed once:
    :meth:`embedding` (input normalisation, and the frozen layers of a pretrained model) and
    :meth:`classify_embedding` (the trained head). The buffer ``temperature`` (1 until
    :func:`crnn.calibration.fit_temperature` sets it) divides the logits, so softmax
    probabilities are calibrated wherever the model is used.

    Shapes:
        ``forward``: waveform (B, time) at ``feature_cfg.sample_rate`` Hz -> logits (B, n_classes).
        ``classify``: log-mel (B, n_mels, frames) in dB -> logits (B, n_classes).
    """

    fixed_input = False
    inference_batch_size = 64
    """Segments per forward pass when scoring on a CPU (a large batch suits the small CNNs: ``crnn-attention``
    in channels-last scores a 30 s track 1.7x faster in one batch of 18 than one segment at a time)."""
    inference_channels_last = True
    """Run the conv layers in the channels-last layout at inference (``crnn-attention``: 1.7x faster forward,
    same probabilities within 1e-7; ``bench/inference_variants.py``)."""
    pretrained_checkpoint: str | None = None
    """Name of the pretrained weights the model starts from (``load_pretrained``), or None."""

    def __init__(self, feature_cfg: FeatureConfig, model_cfg: ModelConfig) -> None:
        super().__init__()
        self.feature_cfg, self.model_cfg = feature_cfg, model_cfg
        self.frontend = LogMel(feature_cfg)
        self.register_buffer("temperature", torch.ones(()))
        if self.pretrained_checkpoint is None:
            self.input_norm = nn.BatchNorm1d(feature_cfg.n_mels)  # per-band standardisation (Choi et al. 2017)

    def head(self, log_mel: Tensor) -> Tensor:
        """Logits (B, n_classes) from normalised log-mels (B, n_mels, frames)."""
        raise NotImplementedError

    def embedding(self, log_mel: Tensor) -> Tensor:
        """What the trained head reads: here the normalised log-mel (B, n_mels, frames)."""
        if self.fixed_input:
            log_mel = tile_frames(log_mel, self.feature_cfg.segment_frames)
        if self.model_cfg.level_norm:
            log_mel = log_mel - log_mel.mean(dim=(1, 2), keepdim=True)  # remove each input's overall level
        return self.input_norm(log_mel)

    def classify_embedding(self, embedding: Tensor) -> Tensor:
        """Logits (B, n_classes), divided by the calibration temperature, from :meth:`embedding`'s output."""
        return self.head(embedding) / self.temperature

    def classify(self, log_mel: Tensor) -> Tensor:
        """Logits (B, n_classes) from log-mel spectrograms (B, n_mels, frames) in dB."""
        return self.classify_embedding(self.embedding(log_mel))

    def pretrained_parameters(self) -> list[nn.Parameter]:
        """Parameters loaded from pretrained weights (trained with a scaled learning rate, or frozen)."""
        return []

    def set_frozen(self, frozen: bool) -> None:
        """Freeze (eval mode, no gradients) or unfreeze the pretrained part; a no-op without one."""

    @property
    def frozen_embedding(self) -> bool:
        """Whether :meth:`embedding` is fixed (no trained weights, no randomness) and can be cached."""
        return False

    def embedding_fingerprint(self) -> str:
        """Identifies a frozen :meth:`embedding` (its weights and settings), to key cached embeddings.

        Raises:
            NotImplementedError: the model has no frozen embedding.
        """
        raise NotImplementedError(f"{type(self).__name__} has no frozen embedding")

    def forward(self, waveform: Tensor) -> Tensor:
        """Logits (B, n_classes) from waveforms (B, time) in [-1, 1] at the config's sample rate."""
        return self.classify(self.frontend(waveform))


class CRNN(GenreNet):
    """``crnn-attention``: CNN + bidirectional GRU/LSTM + attention pooling over a log-mel spectrogram.

    Source: seed ``000`` design (CNN feature extractor, bidirectional LSTM, self-attention,
    linear classifier over 10 genres). The log-mel front end lives inside the model, so a saved
    model takes waveforms and serving cannot drift from training.

    Shapes:
        ``forward``: waveform (B, time) at ``feature_cfg.sample_rate`` Hz -> logits (B, n_classes).
        ``classify``: log-mel (B, n_mels, frames) in dB -> logits (B, n_classes), for any
        frames >= the product of ``time_pool`` (shorter clips work: pooling is over time).
        Default config: (B, 96, 129) -> (B, 10), 263 339 parameters.

    Raises:
        ValueError: ``n_mels`` is not divisible by the product of ``freq_pool``, or the
            shortest scored input (``min_segment_s``) pools to zero time steps.
    """

    def __init__(self, feature_cfg: FeatureConfig, model_cfg: ModelConfig) -> None:
        check_shape_contract(feature_cfg, model_cfg)
        super().__init__(feature_cfg, model_cfg)
        freq_div = math.prod(model_cfg.freq_pool)
        chans = (1, *model_cfg.channels)
        self.convs = nn.Sequential(
            *[
                ConvBlock(chans[i], chans[i + 1], fp, tp)
                for i, (fp, tp) in enumerate(zip(model_cfg.freq_pool, model_cfg.time_pool))
            ]
        )
        add_recurrent_head(self, model_cfg.channels[-1] * (feature_cfg.n_mels // freq_div), model_cfg)

    def head(self, log_mel: Tensor) -> Tensor:
        """Logits (B, n_classes) from normalised log-mels (B, n_mels, frames)."""
        x = self.convs(log_mel.unsqueeze(1))  # (B, 1, n_mels, frames) -> (B, C, n_mels / freq_div, frames / time_div)
        return recurrent_head_logits(self, x.flatten(1, 2).transpose(1, 2))  # (B, steps, C * mels')


def add_recurrent_head(net: nn.Module, input_size: int, cfg: ModelConfig) -> None:
    """Give ``net`` seed 000's head: bidirectional GRU/LSTM -> attention pooling -> dropout -> linear.

    The layers become ``net.rnn``, ``net.pool``, ``net.dropout`` and ``net.classifier`` (the
    names saved checkpoints use); :func:`recurrent_head_logits` runs them.

    Args:
        net: the model that gets the layers.
        input_size: features per time step of the sequence the head reads.
        cfg: ``rnn_type``, ``rnn_hidden`` (units per direction), ``rnn_layers``, ``attention_dim``,
            ``dropout`` and ``n_classes``.
    """
    rnn_cls = nn.GRU if cfg.rnn_type == "gru" else nn.LSTM
    net.rnn = rnn_cls(input_size, cfg.rnn_hidden, num_layers=cfg.rnn_layers, batch_first=True, bidirectional=True)
    net.pool = AttentionPooling(2 * cfg.rnn_hidden, cfg.attention_dim)
    net.dropout = nn.Dropout(cfg.dropout)
    net.classifier = nn.Linear(2 * cfg.rnn_hidden, cfg.n_classes)


def recurrent_head_logits(net: nn.Module, x: Tensor) -> Tensor:
    """Logits (B, n_classes) of :func:`add_recurrent_head`'s layers over a sequence (B, steps, input_size)."""
    h, _ = net.rnn(x)  # (B, steps, 2 * hidden)
    return net.classifier(net.dropout(net.pool(h)))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
