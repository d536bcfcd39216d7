"""CRNN for genre classification: conv blocks over log-mels, bidirectional RNN, attention pooling.

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


class CRNN(nn.Module):
    """CNN + bidirectional GRU/LSTM + attention pooling over a log-mel spectrogram.

    Source: seed ``000`` design (CNN feature extractor, bidirectional LSTM, self-attention,
    linear classifier over 10 genres). The log-mel front end lives inside the model, so a saved
    model takes waveforms and serving cannot drift from training.

    Shapes:
        ``forward``: waveform (B, time) at ``feature_cfg.sample_rate`` Hz -> logits (B, n_classes).
        ``classify``: log-mel (B, n_mels, frames) in dB -> logits (B, n_classes), for any
        frames >= the product of ``time_pool`` (shorter clips work: pooling is over time).

    Raises:
        ValueError: ``n_mels`` is not divisible by the product of ``freq_pool``, or the
            shortest scored input (``min_segment_s``) pools to zero time steps.
    """

    def __init__(self, feature_cfg: FeatureConfig, model_cfg: ModelConfig) -> None:
        super().__init__()
        check_shape_contract(feature_cfg, model_cfg)
        freq_div = math.prod(model_cfg.freq_pool)
        self.feature_cfg, self.model_cfg = feature_cfg, model_cfg
        self.frontend = LogMel(feature_cfg)
        self.input_norm = nn.BatchNorm1d(feature_cfg.n_mels)
        chans = (1, *model_cfg.channels)
        self.convs = nn.Sequential(
            *[
                ConvBlock(chans[i], chans[i + 1], fp, tp)
                for i, (fp, tp) in enumerate(zip(model_cfg.freq_pool, model_cfg.time_pool))
            ]
        )
        rnn_cls = nn.GRU if model_cfg.rnn_type == "gru" else nn.LSTM
        self.rnn = rnn_cls(
            input_size=model_cfg.channels[-1] * (feature_cfg.n_mels // freq_div),
            hidden_size=model_cfg.rnn_hidden,
            num_layers=model_cfg.rnn_layers,
            batch_first=True,
            bidirectional=True,
        )
        self.pool = AttentionPooling(2 * model_cfg.rnn_hidden, model_cfg.attention_dim)
        self.dropout = nn.Dropout(model_cfg.dropout)
        self.classifier = nn.Linear(2 * model_cfg.rnn_hidden, model_cfg.n_classes)

    def classify(self, log_mel: Tensor) -> Tensor:
        """Logits (B, n_classes) from log-mel spectrograms (B, n_mels, frames) in dB."""
        if self.model_cfg.level_norm:
            log_mel = log_mel - log_mel.mean(dim=(1, 2), keepdim=True)  # remove each input's overall level
        x = self.input_norm(log_mel).unsqueeze(1)  # (B, 1, n_mels, frames)
        x = self.convs(x)  # (B, C, n_mels / freq_div, frames / time_div)
        x = x.flatten(1, 2).transpose(1, 2)  # (B, steps, C * mels')
        h, _ = self.rnn(x)  # (B, steps, 2 * hidden)
        return self.classifier(self.dropout(self.pool(h)))

    def forward(self, waveform: Tensor) -> Tensor:
        """Logits (B, n_classes) from waveforms (B, time) in [-1, 1] at the config's sample rate."""
        return self.classify(self.frontend(waveform))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
