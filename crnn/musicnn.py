"""A PyTorch port of musicnn, the pretrained music audio tagger, and the loader of its converted weights.

Source: J. Pons and X. Serra, "musicnn: pre-trained convolutional neural networks for music
audio tagging", ISMIR late-breaking demo, 2019; the layers follow ``musicnn/models.py``
(``build_musicnn``, ``frontend``, ``midend``, ``backend``) and the signal processing
``musicnn/configuration.py`` of the PyPI package ``musicnn`` 0.1.0 (ISC licence), whose wheel
ships the TensorFlow checkpoints ``MSD_musicnn`` (Million Song Dataset, 50 last.fm tags) and
``MTT_musicnn`` (MagnaTagATune, 50 tags). ``infra.pretrained`` converts a checkpoint into a
torch-free ``.npz`` of the TensorFlow variables (by their TF names); :func:`load_tf_variables`
maps them onto :class:`Musicnn`.

Layout. TensorFlow runs the model on (batch, time, frequency, channels); here the input is
(B, 1, frames, n_mels) for the 2-D convolutions (time is height, mel bands width), so the TF
kernels (kh, kw, in, out) map to torch's (out, in, kh, kw) without any flip. The mid-end's
convolutions span all channels of their input, so they are 1-D convolutions over time here.
Batch norms use TensorFlow's epsilon (1e-3).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

SAMPLE_RATE = 16000
"""Sample rate (in Hz) musicnn was trained at (``configuration.SR``)."""
N_FFT = 512
"""FFT size (in samples) of musicnn's mel spectrogram (``configuration.FFT_SIZE``)."""
HOP_LENGTH = 256
"""Hop (in samples) of musicnn's mel spectrogram (``configuration.FFT_HOP``)."""
N_MELS = 96
"""Mel bands (``configuration.N_MELS``)."""
INPUT_FRAMES = 187
"""Frames of one 3 s training patch (``n_frames`` in the checkpoints' ``config.json``)."""
EMBEDDING_DIM = 561 + 3 * 64
"""Channels per time step leaving the mid-end: front end (2 x 204 timbral + 3 x 51 temporal) + 3 x 64."""
PENULTIMATE_DIM = 200
"""Width of the penultimate dense layer (``num_units_backend``), the usual musicnn embedding."""

MSD_LABELS = (
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s", "alternative rock",
    "jazz", "beautiful", "metal", "chillout", "male vocalists", "classic rock", "soul", "indie rock", "Mellow",
    "electronica", "80s", "folk", "90s", "chill", "instrumental", "punk", "oldies", "blues", "hard rock", "ambient",
    "acoustic", "experimental", "female vocalist", "guitar", "Hip-Hop", "70s", "party", "country", "easy listening",
    "sexy", "catchy", "funk", "electro", "heavy metal", "Progressive rock", "60s", "rnb", "indie pop", "sad", "House",
    "happy",
)  # fmt: skip
MTT_LABELS = (
    "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast", "piano", "ambient",
    "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male", "singing", "vocals", "no vocals",
    "harpsichord", "loud", "quiet", "flute", "woman", "male vocal", "no vocal", "pop", "soft", "sitar", "solo", "man",
    "classic", "choir", "voice", "new age", "dance", "male voice", "female vocal", "beats", "harp", "cello",
    "no voice", "weird", "country", "metal", "female voice", "choral",
)  # fmt: skip
CHECKPOINTS: dict[str, tuple[str, ...]] = {"MSD_musicnn": MSD_LABELS, "MTT_musicnn": MTT_LABELS}
"""The musicnn checkpoints this port loads, with their tag vocabularies (``configuration.py``)."""

_EPS = 1e-3  # tf.compat.v1.layers.batch_normalization's default epsilon


def musicnn_input(log_mel_db: Tensor) -> Tensor:
    """Musicnn's input representation from a dB log-mel spectrogram.

    musicnn compresses mel power as ``log10(10000 * power + 1)`` after storing the power in
    float16 (``extractor.batch_data``); the same is done here from ``power = 10 ** (dB / 10)``.

    Args:
        log_mel_db: mel power in dB, shape (B, n_mels, frames), from :class:`crnn.features.LogMel`
            at 16 kHz, n_fft 512, hop 256, 96 bands.

    Returns:
        Shape (B, 1, frames, n_mels): the layout of :meth:`Musicnn.embed`'s input.
    """
    # musicnn's float16 storage; clamped to float16's largest value, where musicnn's own cast gives inf (and the
    # network NaN): a sparse spectrum (a pure tone) lifted to the reference level reaches it.
    power = torch.pow(10.0, log_mel_db.float() / 10.0).clamp(max=torch.finfo(torch.float16).max).half().float()
    return torch.log10(10000.0 * power + 1.0).transpose(1, 2).unsqueeze(1)  # (B, n_mels, T) -> (B, 1, T, n_mels)


class _ConvBNPool(nn.Module):
    """Conv2d -> ReLU -> batch norm -> max over all mel positions (``timbral_block``/``tempo_block``).

    Input (B, 1, frames + pad, n_mels) -> output (B, filters, frames).
    """

    def __init__(self, filters: int, kernel: tuple[int, int], time_pad: tuple[int, int]) -> None:
        super().__init__()
        self.time_pad = time_pad
        self.conv = nn.Conv2d(1, filters, kernel)
        self.bn = nn.BatchNorm2d(filters, eps=_EPS)

    def forward(self, x: Tensor) -> Tensor:
        """(B, 1, T, n_mels) -> (B, filters, T)."""
        x = self.conv(F.pad(x, (0, 0, *self.time_pad)))  # pad frames only -> (B, filters, T, n_mels - kw + 1)
        if self.training:
            return self.bn(F.relu(x)).amax(dim=3)  # max-pool over the remaining mel positions: (B, filters, T)
        # Eval: BN is a per-channel affine map a * v + b, so the max over mel positions of a * relu(v) + b is
        # a * relu(max v) + b where a >= 0 and a * relu(min v) + b where a < 0. Same result, without two passes
        # of ReLU and BN over the large (B, filters, T, positions) map.
        low, high = torch.aminmax(x, dim=3)  # (B, filters, T) each
        scale = self.bn.weight / torch.sqrt(self.bn.running_var + self.bn.eps)
        shift = self.bn.bias - self.bn.running_mean * scale
        picked = torch.where((scale >= 0)[:, None], high, low)
        return scale[:, None] * F.relu(picked) + shift[:, None]


class _MidendConv(nn.Module):
    """Conv over time spanning all channels -> ReLU -> batch norm (``midend``'s layers); (B, C, T) -> (B, 64, T)."""

    def __init__(self, in_channels: int, filters: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, filters, 7, padding=3)
        self.bn = nn.BatchNorm1d(filters, eps=_EPS)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, T) -> (B, filters, T)."""
        return self.bn(F.relu(self.conv(x)))


class Musicnn(nn.Module):
    """musicnn (``MSD_musicnn``/``MTT_musicnn``): musically motivated front end, dense mid-end, pooled back end.

    Source: Pons & Serra, ISMIR LBD 2019, ``build_musicnn(num_filt_frontend=1.6,
    num_filt_midend=64, num_units_backend=200)`` with the ``7774timbraltemporal`` front end.

    Layers (T = frames; a 3 s patch is 187 frames):
        input batch norm (1 channel) on (B, 1, T, 96)
        front end, concatenated to (B, 561, T):
            timbral: conv 7x38 and 7x67 (time x mel), 204 filters each, max over mel positions
            temporal: conv 128x1, 64x1, 32x1 ('same' in time), 51 filters each, max over mel bands
        mid-end: three 1-D convs (kernel 7, 64 filters, ReLU, BN) over time, the 2nd and 3rd
            residual; concatenated with the front end: (B, 753, T)
        back end: max and mean over time, interleaved (B, 1506) -> BN -> dropout 0.5 ->
            dense 200 + ReLU -> BN (the penultimate layer, (B, 200)) -> dropout 0.5 -> dense 50

    Shapes:
        ``embed``: (B, 1, T, 96) musicnn input (:func:`musicnn_input`) -> (B, 753, T), any T >= 1.
        ``forward``: (B, 1, T, 96) -> (logits (B, 50), penultimate (B, 200)); tag
        probabilities are ``sigmoid(logits)`` (multi-label). 787 159 parameters + batch-norm statistics.
    """

    def __init__(self, n_mels: int = N_MELS, n_tags: int = 50) -> None:
        super().__init__()
        self.input_bn = nn.BatchNorm2d(1, eps=_EPS)
        timbral = int(1.6 * 128)
        temporal = int(1.6 * 32)
        self.timbral = nn.ModuleList(
            [_ConvBNPool(timbral, (7, int(f * n_mels)), (3, 3)) for f in (0.4, 0.7)]
        )  # 'valid' after padding time by 3 on both sides
        self.temporal = nn.ModuleList(
            [_ConvBNPool(temporal, (k, 1), ((k - 1) // 2, k // 2)) for k in (128, 64, 32)]
        )  # TF 'same': the odd extra pad goes after
        front = 2 * timbral + 3 * temporal
        self.midend = nn.ModuleList([_MidendConv(front, 64), _MidendConv(64, 64), _MidendConv(64, 64)])
        self.pool_bn = nn.BatchNorm1d(2 * (front + 3 * 64), eps=_EPS)
        self.dense = nn.Linear(2 * (front + 3 * 64), PENULTIMATE_DIM)
        self.dense_bn = nn.BatchNorm1d(PENULTIMATE_DIM, eps=_EPS)
        self.dropout = nn.Dropout(0.5)
        self.logits = nn.Linear(PENULTIMATE_DIM, n_tags)

    def embed(self, x: Tensor) -> Tensor:
        """Front end + mid-end features per frame: (B, 1, T, n_mels) -> (B, 753, T)."""
        x = self.input_bn(x)
        front = torch.cat([block(x) for block in (*self.timbral, *self.temporal)], dim=1)  # (B, 561, T)
        m1 = self.midend[0](front)  # (B, 64, T)
        m2 = self.midend[1](m1) + m1
        m3 = self.midend[2](m2) + m2
        return torch.cat([front, m1, m2, m3], dim=1)  # (B, 753, T)

    def penultimate(self, features: Tensor) -> Tensor:
        """The 200-d penultimate layer from :meth:`embed`'s (B, 753, T): (B, 200)."""
        pooled = torch.stack([features.amax(dim=2), features.mean(dim=2)], dim=2).flatten(1)  # (B, 753 * 2)
        return self.dense_bn(F.relu(self.dense(self.dropout(self.pool_bn(pooled)))))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Tag logits (B, n_tags) and penultimate features (B, 200) of musicnn input (B, 1, T, n_mels)."""
        penultimate = self.penultimate(self.embed(x))
        return self.logits(self.dropout(penultimate)), penultimate


def tf_variable_map() -> dict[str, str]:
    """Torch parameter/buffer name of :class:`Musicnn` -> TensorFlow variable name in the checkpoint.

    TF names layers in creation order (``conv2d``, ``conv2d_1``, ..., ``batch_normalization_10``,
    ``dense``, ``dense_1``); ``build_musicnn`` creates them in the order listed here.
    """
    convs = ["timbral.0.conv", "timbral.1.conv", "temporal.0.conv", "temporal.1.conv", "temporal.2.conv"]
    convs += ["midend.0.conv", "midend.1.conv", "midend.2.conv"]
    bns = ["input_bn", *(c.replace(".conv", ".bn") for c in convs), "pool_bn", "dense_bn"]
    out: dict[str, str] = {}
    for i, name in enumerate(convs):
        tf = "conv2d" + (f"_{i}" if i else "")
        out[f"{name}.weight"], out[f"{name}.bias"] = f"{tf}/kernel", f"{tf}/bias"
    for i, name in enumerate(bns):
        tf = "batch_normalization" + (f"_{i}" if i else "")
        for suffix, var in (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean")):
            out[f"{name}.{suffix}"] = f"{tf}/{var}"
        out[f"{name}.running_var"] = f"{tf}/moving_variance"
    for name, tf in (("dense", "dense"), ("logits", "dense_1")):
        out[f"{name}.weight"], out[f"{name}.bias"] = f"{tf}/kernel", f"{tf}/bias"
    return out


def _to_torch(array: np.ndarray, target: Tensor) -> Tensor:
    """A TF array in torch's layout: conv kernels (kh, kw, in, out) -> (out, in, kh, kw), dense (in, out) -> (out, in)."""
    value = torch.from_numpy(np.asarray(array, dtype=np.float32))
    if value.ndim == 4:
        value = value.permute(3, 2, 0, 1)  # (out, in, kh, kw)
        if target.ndim == 3:  # mid-end Conv1d: TF (7, C, 1, 64) -> (64, 1, 7, C) -> (64, C, 7)
            value = value[:, 0].transpose(1, 2)
    elif value.ndim == 2:
        value = value.T
    if value.shape != target.shape:
        raise ValueError(f"TF variable of shape {tuple(array.shape)} does not fit {tuple(target.shape)}")
    return value.contiguous()


def load_tf_variables(model: Musicnn, variables: Mapping[str, np.ndarray]) -> None:
    """Copy musicnn's TensorFlow variables (by TF name) into ``model``, in place.

    Args:
        model: a freshly built :class:`Musicnn`.
        variables: TF variable name -> array, as ``infra.pretrained`` writes them.

    Raises:
        KeyError: a variable the model needs is missing. ValueError: a shape does not fit.
    """
    state = model.state_dict()
    mapping = tf_variable_map()
    missing = sorted(tf for name, tf in mapping.items() if tf not in variables)
    if missing:
        raise KeyError(f"musicnn weights lack {len(missing)} variables, e.g. {missing[0]}")
    model.load_state_dict(
        {name: _to_torch(variables[tf], state[name]) for name, tf in mapping.items()} | _tracked_batches(state)
    )


def _tracked_batches(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {k: v for k, v in state.items() if k.endswith("num_batches_tracked")}


def load_pretrained(path: str | Path, checkpoint: str) -> Musicnn:
    """:class:`Musicnn` with the converted weights of ``checkpoint`` read from ``path`` (an ``.npz``), in eval mode.

    Raises:
        ValueError: an unknown checkpoint name, or the file holds another checkpoint.
        FileNotFoundError: no such file.
    """
    if checkpoint not in CHECKPOINTS:
        raise ValueError(f"musicnn checkpoint must be one of {', '.join(CHECKPOINTS)}, got {checkpoint!r}")
    with np.load(path) as data:
        variables = {k: data[k] for k in data.files}
    stored = str(variables.pop("__checkpoint__", checkpoint))
    if stored != checkpoint:
        raise ValueError(f"{path}: holds musicnn checkpoint {stored!r}, not {checkpoint!r}")
    model = Musicnn(n_tags=len(CHECKPOINTS[checkpoint]))
    load_tf_variables(model, variables)
    return model.eval()
