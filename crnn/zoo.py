"""The model zoo: the seed architectures, rebuilt in PyTorch behind one interface.

Every model is a :class:`crnn.models.GenreNet`: it takes waveforms, carries its log-mel front
end, removes each input's mean level, standardises each mel band (batch norm) and returns
logits for single-label cross-entropy. :func:`build_model` picks the class by
``ModelConfig.architecture`` from its entry in :data:`crnn.catalog.ZOO`, which also holds each
one's preprocessing and the config fields it honours.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import torch
from torch import Tensor, nn

from crnn import musicnn
from crnn.catalog import zoo_entry
from crnn.config import FeatureConfig, ModelConfig, PipelineConfig
from crnn.models import GenreNet, add_recurrent_head, recurrent_head_logits


def _require(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


class ChoiCRNN(GenreNet):
    """``choi-crnn``: 5 conv blocks (batch norm, ELU, max-pool, dropout) + 2 GRU layers.

    Source: seed ``001`` and Choi, Fazekas, Sandler and Cho, "Convolutional Recurrent Neural
    Networks for Music Classification", ICASSP 2017: 96 mel bands at 12 kHz (n_fft 512, hop
    256), 29.12 s inputs, conv blocks that pool the 96 bands down to 1, then two GRU layers of
    32 units that summarise the remaining time steps. The seed's five conv layers are used
    (the paper has four) with 32/64/64/64/64 channels, the paper's small configuration. Seed
    001 ends in a sigmoid, which is wrong for single-label genres; this model returns logits for
    softmax cross-entropy instead.

    Shapes:
        ``classify``: (B, 96, t) in dB -> (B, 10); inputs shorter than 1365 frames (29.12 s)
        are looped up to it (:func:`crnn.models.tile_frames`); the conv stack leaves
        1365 // 96 = 14 GRU steps. Default config: 146 154 parameters.

    Raises:
        ValueError: ``n_mels`` is not 96 (the pooling reduces exactly 96 bands to 1), or the
            segment pools to no time step.
    """

    fixed_input = True
    channels = (32, 64, 64, 64, 64)
    pools = (2, 2, 2, 3, 4)  # along both mel bands and frames; product 96
    gru_hidden = 32

    def __init__(self, feature_cfg: FeatureConfig, model_cfg: ModelConfig) -> None:
        super().__init__(feature_cfg, model_cfg)
        div = math.prod(self.pools)
        _require(
            feature_cfg.n_mels == div,
            f"choi-crnn pools {div} mel bands to 1; n_mels must be {div}, got {feature_cfg.n_mels}",
        )
        _require(
            feature_cfg.segment_frames >= div,
            f"choi-crnn pools time by {div}; segment_s={feature_cfg.segment_s} s gives only {feature_cfg.segment_frames} frames",
        )
        chans = (1, *self.channels)
        self.convs = nn.Sequential(
            *[
                nn.Sequential(
                    nn.Conv2d(chans[i], chans[i + 1], 3, padding=1, bias=False),
                    nn.BatchNorm2d(chans[i + 1]),
                    nn.ELU(inplace=True),
                    nn.MaxPool2d(p),
                    nn.Dropout(0.1),
                )
                for i, p in enumerate(self.pools)
            ]
        )
        self.rnn = nn.GRU(self.channels[-1], self.gru_hidden, num_layers=2, batch_first=True)
        self.dropout = nn.Dropout(model_cfg.dropout)
        self.classifier = nn.Linear(self.gru_hidden, model_cfg.n_classes)

    def head(self, log_mel: Tensor) -> Tensor:
        """Logits (B, n_classes) from normalised log-mels (B, 96, segment_frames)."""
        x = self.convs(log_mel.unsqueeze(1))  # (B, 1, 96, T) -> (B, 64, 1, T // 96)
        _, h = self.rnn(x.squeeze(2).transpose(1, 2))  # (B, steps, 64) -> h (2, B, 32)
        return self.classifier(self.dropout(h[-1]))  # last layer's final state (B, 32)


class CNNLSTM(GenreNet):
    """``cnn-lstm``: conv 5x5 (20) -> pool -> conv 5x5 (50) -> pool -> dense 20 -> LSTM 512 -> dense 10.

    Source: seed ``003``'s Keras layer table (CNN-LSTM, ~61% reported on its own split). The
    input is 64 mel bands x 173 frames (4.02 s at 22 050 Hz, hop 512); valid 5x5 convolutions
    and 2x2 max-pools give 50 x 13 x 40 = 26 000 features, a dense layer maps them to 20 values,
    which the LSTM reads as a sequence of 20 steps of 1 feature (the seed's ``Lambda`` reshape);
    its final state feeds the 10-way classifier. ReLU follows each conv and the dense layer.

    Shapes:
        ``classify``: (B, 64, t) in dB -> (B, 10); inputs shorter than 173 frames are looped up
        to it. Default config: 1 605 568 parameters: the seed's 1 603 392, plus 2 048 for
        PyTorch's second LSTM bias vector and 128 for the input batch norm.

    Raises:
        ValueError: the segment is too small for two 5x5 convolutions and pools.
    """

    fixed_input = True

    def __init__(self, feature_cfg: FeatureConfig, model_cfg: ModelConfig) -> None:
        super().__init__(feature_cfg, model_cfg)
        mels, frames = feature_cfg.n_mels, feature_cfg.segment_frames
        h, w = ((mels - 4) // 2 - 4) // 2, ((frames - 4) // 2 - 4) // 2
        _require(h >= 1 and w >= 1, f"cnn-lstm needs at least 16 x 16 inputs, got n_mels={mels} x {frames} frames")
        self.convs = nn.Sequential(
            nn.Conv2d(1, 20, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(20, 50, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )  # fmt: skip
        self.dense = nn.Sequential(nn.Linear(50 * h * w, 20), nn.ReLU(inplace=True))
        self.rnn = nn.LSTM(1, 512, batch_first=True)
        self.dropout = nn.Dropout(model_cfg.dropout)
        self.classifier = nn.Linear(512, model_cfg.n_classes)

    def head(self, log_mel: Tensor) -> Tensor:
        """Logits (B, n_classes) from normalised log-mels (B, 64, 173)."""
        x = self.convs(log_mel.unsqueeze(1))  # (B, 1, 64, 173) -> (B, 50, 13, 40)
        x = self.dense(x.flatten(1))  # (B, 26000) -> (B, 20)
        _, (h, _) = self.rnn(x.unsqueeze(-1))  # (B, 20 steps, 1) -> h (1, B, 512)
        return self.classifier(self.dropout(h[-1]))


class ParallelCNNBiLSTM(GenreNet):
    """``parallel-cnn-bilstm``: a CNN branch and a 2-layer BiLSTM branch, summed into a softmax layer.

    Source: seed ``004`` (Music-Genre-Classification-using-RCNN): 3 s clips with 50% overlap;
    a CNN of 5 conv layers with batch norm, 4 max-pools and 2 dropouts, and a 2-layer
    bidirectional LSTM, each ending in 256 values that are added before one dense softmax
    layer. The seed feeds 513 linear STFT bins pooled to 128; here 128 log-mel bands are the
    input of both branches (the mel filterbank does that reduction). Conv channels
    16/32/64/64/64 (3x3, ReLU), a dense 256 after the CNN, 128 LSTM units per direction; the
    LSTM branch's output is the top layer's final forward and backward states.

    Shapes:
        ``classify``: (B, 128, t) in dB -> (B, 10); inputs shorter than 129 frames (3 s) are
        looped up to it. Default config: 1 808 506 parameters.

    Raises:
        ValueError: the segment pools to nothing in the CNN branch (fewer than 16 x 16).
    """

    fixed_input = True
    channels = (16, 32, 64, 64, 64)
    branch_dim = 256

    def __init__(self, feature_cfg: FeatureConfig, model_cfg: ModelConfig) -> None:
        super().__init__(feature_cfg, model_cfg)
        mels, frames = feature_cfg.n_mels, feature_cfg.segment_frames
        _require(
            mels >= 16 and frames >= 16, f"parallel-cnn-bilstm needs at least 16 x 16 inputs, got {mels} x {frames}"
        )
        chans, blocks = (1, *self.channels), []
        for i in range(len(self.channels)):
            blocks += [nn.Conv2d(chans[i], chans[i + 1], 3, padding=1, bias=False), nn.BatchNorm2d(chans[i + 1])]
            blocks += [nn.ReLU(inplace=True)] + ([nn.MaxPool2d(2)] if i < 4 else [])
            blocks += [nn.Dropout(0.25)] if i in (1, 3) else []
        self.cnn = nn.Sequential(*blocks)
        self.cnn_out = nn.Sequential(
            nn.Linear(self.channels[-1] * (mels // 16) * (frames // 16), self.branch_dim), nn.ReLU(inplace=True)
        )
        self.rnn = nn.LSTM(mels, self.branch_dim // 2, num_layers=2, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(model_cfg.dropout)
        self.classifier = nn.Linear(self.branch_dim, model_cfg.n_classes)

    def head(self, log_mel: Tensor) -> Tensor:
        """Logits (B, n_classes) from normalised log-mels (B, 128, 129)."""
        cnn = self.cnn_out(self.cnn(log_mel.unsqueeze(1)).flatten(1))  # (B, 64, 8, 8) -> (B, 256)
        _, (h, _) = self.rnn(log_mel.transpose(1, 2))  # (B, frames, 128) -> h (4, B, 128)
        rnn = torch.cat([h[-2], h[-1]], dim=1)  # top layer, forward and backward: (B, 256)
        return self.classifier(self.dropout(cnn + rnn))


class MusicnnNet(GenreNet):
    """Base of the ``musicnn-*`` models: the pretrained musicnn (:class:`crnn.musicnn.Musicnn`) under a genre head.

    The input is the project's dB log-mel at musicnn's settings (16 kHz, n_fft 512, hop 256, 96
    bands); each input's mean level is moved to :attr:`reference_db` (the median track level of
    gtzan_mini at these settings), so loudness is not a cue, then converted to musicnn's own
    compression (:func:`crnn.musicnn.musicnn_input`). The pretrained weights come from
    :meth:`load_pretrained`; until then the musicnn layers are randomly initialised (as in
    tests). ``set_frozen(True)`` (the default) keeps them in eval mode without gradients.

    Raises:
        ValueError: the feature config is not musicnn's.
    """

    reference_db = -20.0
    """Mean dB level each input is moved to (``level_norm``)."""
    inference_batch_size = 2
    """On a 2-core CPU musicnn's large feature maps make batches slower per segment (42 ms at 1-2, 60 ms at 16)."""
    inference_channels_last = False
    """Channels-last makes musicnn's one-channel front end and its max over mel positions ~1.5x slower."""

    def __init__(self, feature_cfg: FeatureConfig, model_cfg: ModelConfig) -> None:
        self.pretrained_checkpoint = model_cfg.pretrained
        super().__init__(feature_cfg, model_cfg)
        got = (feature_cfg.sample_rate, feature_cfg.n_fft, feature_cfg.hop_length, feature_cfg.n_mels)
        want = (musicnn.SAMPLE_RATE, musicnn.N_FFT, musicnn.HOP_LENGTH, musicnn.N_MELS)
        _require(
            got == want,
            f"{model_cfg.architecture} needs musicnn's features (sample_rate, n_fft, hop_length, n_mels) = {want}, got {got}",
        )
        self.musicnn = musicnn.Musicnn(n_tags=len(musicnn.CHECKPOINTS[model_cfg.pretrained]))
        self.frozen = False
        self.set_frozen(True)

    def load_pretrained(self, path: str | Path) -> None:
        """Load the converted weights of ``model_cfg.pretrained`` (an ``.npz`` from ``infra.pretrained``).

        Raises:
            FileNotFoundError, KeyError, ValueError: see :func:`crnn.musicnn.load_pretrained`.
        """
        self.musicnn.load_state_dict(musicnn.load_pretrained(path, self.model_cfg.pretrained).state_dict())

    def pretrained_parameters(self) -> list[nn.Parameter]:
        """Musicnn's parameters."""
        return list(self.musicnn.parameters())

    def set_frozen(self, frozen: bool) -> None:
        """Freeze (eval mode, no gradients) or unfreeze the musicnn layers."""
        self.frozen = frozen
        for p in self.musicnn.parameters():
            p.requires_grad_(not frozen)
        self.musicnn.train(self.training and not frozen)

    def train(self, mode: bool = True) -> MusicnnNet:
        """Like ``nn.Module.train``, but frozen musicnn layers stay in eval mode."""
        super().train(mode)
        self.musicnn.train(mode and not self.frozen)
        return self

    @property
    def frozen_embedding(self) -> bool:
        """True while the musicnn layers are frozen: :meth:`embedding` is then a fixed function."""
        return self.frozen

    def embedding_fingerprint(self) -> str:
        """SHA-1 of the class, the level settings and every musicnn weight and statistic."""
        digest = hashlib.sha1(f"{type(self).__name__}/{self.model_cfg.level_norm}/{self.reference_db}".encode())
        for name, value in self.musicnn.state_dict().items():
            digest.update(name.encode())
            digest.update(value.detach().cpu().numpy().tobytes())
        return digest.hexdigest()

    def musicnn_input(self, log_mel: Tensor) -> Tensor:
        """(B, n_mels, frames) in dB -> musicnn's input (B, 1, frames, n_mels), level-normalised."""
        if self.model_cfg.level_norm:
            log_mel = log_mel - log_mel.mean(dim=(1, 2), keepdim=True) + self.reference_db
        return musicnn.musicnn_input(log_mel)


class MusicnnCRNN(MusicnnNet):
    """``musicnn-crnn``: pretrained musicnn front and mid-end -> bidirectional GRU -> attention pooling -> linear.

    Source: the CRNN of seed ``000`` (CNN, bidirectional RNN, attention pooling, linear) with the
    CNN replaced by musicnn's front and mid-end (Pons & Serra, ISMIR LBD 2019), pretrained on the
    Million Song Dataset (or MagnaTagATune). The 753 mid-end features of each frame are
    projected to 128 (linear + ReLU + dropout) before the GRU (``rnn_hidden`` units per
    direction, ``rnn_type``), followed by :class:`crnn.models.AttentionPooling` and dropout.

    Shapes:
        ``embedding``: (B, 96, T) in dB -> (B, 753, T) (frozen musicnn layers); any T >= 1
        (3 s = 188 frames).
        ``classify``: (B, 96, T) -> (B, n_classes). Default config: 967 778 parameters, 787 159
        of them pretrained (frozen by default) and 180 619 trained.
    """

    projection_dim = 128

    def __init__(self, feature_cfg: FeatureConfig, model_cfg: ModelConfig) -> None:
        super().__init__(feature_cfg, model_cfg)
        self.project = nn.Sequential(
            nn.Linear(musicnn.EMBEDDING_DIM, self.projection_dim), nn.ReLU(inplace=True), nn.Dropout(model_cfg.dropout)
        )
        add_recurrent_head(self, self.projection_dim, model_cfg)

    def embedding(self, log_mel: Tensor) -> Tensor:
        """Musicnn's front + mid-end features: (B, 96, T) in dB -> (B, 753, T)."""
        return self.musicnn.embed(self.musicnn_input(log_mel))

    def head(self, embedding: Tensor) -> Tensor:
        """Logits (B, n_classes) from mid-end features (B, 753, T)."""
        return recurrent_head_logits(
            self, self.project(embedding.float().transpose(1, 2))
        )  # (B, T, 753) -> (B, T, 128)


class MusicnnLinear(MusicnnNet):
    """``musicnn-linear``: frozen musicnn embedding (the 200-d penultimate layer) -> dropout -> linear.

    Source: the transfer-learning baseline of Pons & Serra's musicnn examples (a linear
    classifier on the penultimate layer). One 3 s segment gives one embedding; a track's
    probabilities are the mean of its segments' (the issue's probe used the mean and standard
    deviation of the embeddings over a track instead).

    Shapes:
        ``embedding``: (B, 96, T) in dB -> (B, 200); ``classify``: -> (B, n_classes).
        Default config: 789 169 parameters, 787 159 of them pretrained and 2 010 trained.
    """

    def __init__(self, feature_cfg: FeatureConfig, model_cfg: ModelConfig) -> None:
        super().__init__(feature_cfg, model_cfg)
        self.dropout = nn.Dropout(model_cfg.dropout)
        self.classifier = nn.Linear(musicnn.PENULTIMATE_DIM, model_cfg.n_classes)

    def embedding(self, log_mel: Tensor) -> Tensor:
        """The penultimate layer: (B, 96, T) in dB -> (B, 200)."""
        return self.musicnn.penultimate(self.musicnn.embed(self.musicnn_input(log_mel)))

    def head(self, embedding: Tensor) -> Tensor:
        """Logits (B, n_classes) from embeddings (B, 200)."""
        return self.classifier(self.dropout(embedding.float()))


def pretrained_checkpoint(cfg: PipelineConfig) -> str | None:
    """The pretrained weights ``cfg``'s architecture starts from (``cfg.model.pretrained``), or None for none."""
    return cfg.model.pretrained if zoo_entry(cfg.model.architecture).starts_pretrained else None


def build_model(cfg: PipelineConfig) -> GenreNet:
    """A freshly initialised model of ``cfg.model.architecture`` (the class its zoo entry names) for ``cfg.features``.

    Raises:
        ValueError: the features do not fit the architecture (see each class).
    """
    return zoo_entry(cfg.model.architecture).load()(cfg.features, cfg.model)
