"""Training loop: seeded, device-agnostic, Adam, early stopping on validation loss."""

from __future__ import annotations

import copy
import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cachetools
import numpy as np
import torch
import torchaudio
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from crnn.atomic import atomic_open
from crnn.calibration import fit_temperature
from crnn.config import FeatureConfig, TrainConfig
from crnn.features import segment_starts

EpochCallback = Callable[[int, dict[str, float]], None]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) RNGs."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else is passed to ``torch.device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class SegmentDataset(Dataset):
    """Fixed-length segments cut from whole-track log-mel spectrograms.

    Item ``i`` is ``(log_mel, label, track_index)`` with log_mel shape (n_mels, segment_frames).
    With ``jitter=True`` (training) each segment start moves by a random offset of up to half
    the segment hop, so every epoch sees slightly different crops. Offsets come from torch's
    global RNG, which ``DataLoader`` seeds differently in every worker and epoch (and
    :func:`fit` seeds from ``TrainConfig.seed``), so crops are reproducible and never repeat
    across workers.

    Args:
        log_mels: one array per track, shape (n_mels, frames_i), in dB; tracks shorter than
            one segment are skipped.
        labels: genre index per track.
        cfg: segment length and hop.
        jitter: randomise segment starts.
        seed: seeds the jitter RNG.
    """

    def __init__(
        self,
        log_mels: Sequence[np.ndarray],
        labels: Sequence[int],
        cfg: FeatureConfig,
        *,
        jitter: bool = False,
        seed: int = 0,
    ) -> None:
        self.log_mels, self.labels, self.cfg, self.jitter = log_mels, list(labels), cfg, jitter
        self.items = [
            (t, s)
            for t, mel in enumerate(log_mels)
            if mel.shape[1] >= cfg.segment_frames
            for s in segment_starts(mel.shape[1], cfg)
        ]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[Tensor, int, int]:
        t, start = self.items[i]
        mel, width = self.log_mels[t], self.cfg.segment_frames
        if self.jitter:
            half = self.cfg.hop_frames // 2
            offset = int(torch.randint(-half, half + 1, ()).item())
            start = int(np.clip(start + offset, 0, mel.shape[1] - width))
        return torch.from_numpy(np.ascontiguousarray(mel[:, start : start + width])), self.labels[t], t


@dataclass
class FitResult:
    """Outcome of :func:`fit`: the best epoch (1-based) by ``val/loss``, its metrics, all epochs, the temperature."""

    best_epoch: int
    best_metrics: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_early: bool = False
    temperature: float = 1.0


def _amp_dtype(device: torch.device) -> torch.dtype | None:
    """Mixed-precision dtype on CUDA: bfloat16 where the GPU has it natively, else float16; None on CPU."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16


def _autocast(device: torch.device) -> torch.autocast:
    dtype = _amp_dtype(device)
    return torch.autocast(device_type=device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


def spec_augment(cfg: TrainConfig) -> nn.Module:
    """SpecAugment masking (Park et al. 2019) for log-mel batches (B, n_mels, frames); empty when off.

    One frequency mask of up to ``cfg.freq_mask`` bands and one time mask of up to
    ``cfg.time_mask`` frames per example (see :func:`apply_masks` for the fill value).
    """
    layers: list[nn.Module] = []
    if cfg.freq_mask:
        layers.append(torchaudio.transforms.FrequencyMasking(cfg.freq_mask, iid_masks=True))
    if cfg.time_mask:
        layers.append(torchaudio.transforms.TimeMasking(cfg.time_mask, iid_masks=True))
    return nn.Sequential(*layers)


def apply_masks(augment: nn.Module, log_mel: Tensor) -> Tensor:
    """Apply :func:`spec_augment` masks to (B, n_mels, frames) in dB, filling with each example's mean level.

    torchaudio fills masks with 0; masking the mean-removed input and adding the mean back makes
    a masked cell read as the example's average level instead of 0 dB (which would be loud).
    """
    if len(augment) == 0:
        return log_mel
    mean = log_mel.mean(dim=(1, 2), keepdim=True)
    return augment((log_mel - mean).unsqueeze(1)).squeeze(1) + mean  # masks act on (B, 1, n_mels, frames)


EMBEDDING_CACHE_BYTES = 2 << 30
"""Memory for frozen embeddings kept between trainings in one process (the protocol's folds and seeds)."""

_EMBEDDINGS: cachetools.LRUCache = cachetools.LRUCache(
    EMBEDDING_CACHE_BYTES, getsizeof=lambda t: t.numel() * t.element_size()
)


class EmbeddingDataset(Dataset):
    """Segments already passed through a model's frozen :meth:`~crnn.models.GenreNet.embedding`.

    Item ``i`` is ``(embedding, label, track_index)``, the embedding in float32 (stored as float16
    to halve memory). Built by :meth:`from_segments` without jitter, since the embeddings are
    computed once for the whole training. Embeddings are also kept in a process-wide LRU cache
    (:data:`EMBEDDING_CACHE_BYTES`) keyed by the frozen weights' fingerprint and the segment's
    bytes, so the protocol's evaluations and seeds embed each segment once.
    """

    def __init__(self, embeddings: Tensor, labels: Sequence[int], tracks: Sequence[int]) -> None:
        self.embeddings, self.labels, self.tracks = embeddings, list(labels), list(tracks)

    @classmethod
    @torch.inference_mode()
    def from_segments(cls, model: nn.Module, segments: SegmentDataset, device: torch.device) -> EmbeddingDataset:
        """Embed every segment of ``segments`` (its fixed grid, no jitter) with ``model.embedding`` on ``device``."""
        model.eval()
        batch_size = model.inference_batch_size if device.type == "cpu" else 64
        fingerprint = model.embedding_fingerprint()
        crops = [
            np.ascontiguousarray(segments.log_mels[t][:, s : s + segments.cfg.segment_frames])
            for t, s in segments.items
        ]
        keys = [(fingerprint, hashlib.sha1(c.tobytes()).hexdigest()) for c in crops]
        todo = [i for i, k in enumerate(keys) if k not in _EMBEDDINGS]
        for start in range(0, len(todo), batch_size):
            index = todo[start : start + batch_size]
            x = torch.from_numpy(np.stack([crops[i] for i in index])).to(device)  # (B, n_mels, segment_frames)
            for i, e in zip(index, model.embedding(x).to("cpu", torch.float16), strict=True):
                _EMBEDDINGS[keys[i]] = e.clone()
        embeddings = torch.stack([_EMBEDDINGS.get(k) for k in keys])  # a full cache may have evicted a fresh entry
        return cls(embeddings, [segments.labels[t] for t, _ in segments.items], [t for t, _ in segments.items])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, int, int]:
        return self.embeddings[i].float(), self.labels[i], self.tracks[i]


def _run_epoch(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device,
    optimizer: torch.optim.Optimizer | None,
    augment: nn.Module | None = None,
    scaler: torch.amp.GradScaler | None = None,
    mixup_alpha: float = 0.0,
    cached: bool = False,
) -> dict[str, float]:
    model.train(optimizer is not None)
    forward = model.classify_embedding if cached else model.classify
    scaler = scaler or torch.amp.GradScaler(device.type, enabled=False)
    loss_sum, correct, n = 0.0, 0, 0
    with torch.set_grad_enabled(optimizer is not None):
        for x, y, _ in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if augment is not None:
                x = apply_masks(augment, x)
            lam, perm = 1.0, None
            if optimizer is not None and mixup_alpha > 0:
                lam = float(torch.distributions.Beta(mixup_alpha, mixup_alpha).sample())
                perm = torch.randperm(len(y), device=device)
                x = lam * x + (1 - lam) * x[perm]  # (B, n_mels, frames) blended with a shuffled copy
            with _autocast(device):
                logits = forward(x)
                loss = nn.functional.cross_entropy(logits.float(), y)
                if perm is not None:
                    loss = lam * loss + (1 - lam) * nn.functional.cross_entropy(logits.float(), y[perm])
            if optimizer is not None:
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()  # loss scaling is active only for float16
                scaler.step(optimizer)
                scaler.update()
            loss_sum += loss.item() * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            n += len(y)
    return {"loss": loss_sum / max(n, 1), "accuracy": correct / max(n, 1)}


def save_checkpoint(state: dict, path: str | Path) -> None:
    """``torch.save`` ``state`` to ``path`` atomically (:func:`crnn.atomic.atomic_open`, mode 0644)."""
    with atomic_open(path, binary=True) as f:
        torch.save(state, f)


def fit(
    model: nn.Module,
    train_set: SegmentDataset,
    val_set: SegmentDataset,
    cfg: TrainConfig,
    *,
    device: torch.device,
    checkpoint_path: str | Path | None = None,
    on_epoch_end: EpochCallback | None = None,
) -> FitResult:
    """Train ``model`` (a :class:`crnn.models.GenreNet`) with Adam and early stopping on ``val/loss``.

    The best weights (lowest validation loss) are loaded back into ``model`` at the end and, if
    ``checkpoint_path`` is given, saved there atomically whenever they improve. Then, with
    ``cfg.calibrate``, the softmax temperature is fitted on the validation segments
    (:func:`crnn.calibration.fit_temperature`) and stored in ``model.temperature``.

    A GenreNet with pretrained layers (``musicnn-*``) trains them at ``learning_rate *
    cfg.pretrained_lr_scale``; at 0 they are frozen, each segment's :meth:`embedding` is
    computed once (:class:`EmbeddingDataset`, no jitter, no SpecAugment; mixup then blends
    embeddings) and only the head trains.

    Args:
        model: must expose ``classify(log_mel)``; moved to ``device``. Freezing and
            calibration need a :class:`crnn.models.GenreNet`.
        train_set: training segments (use ``jitter=True``).
        val_set: validation segments.
        cfg: epochs, batch size, learning rate, weight decay, patience, seed.
        device: where to train; CUDA runs in bfloat16 autocast.
        checkpoint_path: optional ``.pt`` file for the best state dict.
        on_epoch_end: called as ``on_epoch_end(epoch, metrics)`` with metrics named
            ``train/loss``, ``train/accuracy``, ``val/loss``, ``val/accuracy``.

    Returns:
        The :class:`FitResult`.

    Raises:
        ValueError: an empty training or validation set.
    """
    if len(train_set) == 0 or len(val_set) == 0:
        raise ValueError(f"need training and validation segments, got {len(train_set)} and {len(val_set)}")
    seed_everything(cfg.seed)
    model.to(device)
    genre_net = hasattr(model, "set_frozen")  # any module with classify() trains; GenreNets also freeze and calibrate
    if genre_net:
        model.set_frozen(cfg.pretrained_lr_scale == 0)
    cached = genre_net and model.frozen_embedding  # a frozen pretrained part: embed each segment once, train the head
    if cached:
        train_set, val_set = (EmbeddingDataset.from_segments(model, d, device) for d in (train_set, val_set))
    gen = torch.Generator().manual_seed(cfg.seed)
    pin = device.type == "cuda"
    train_loader = DataLoader(
        train_set, cfg.batch_size, shuffle=True, generator=gen, num_workers=cfg.num_workers, pin_memory=pin
    )
    val_loader = DataLoader(val_set, cfg.batch_size * 2, num_workers=cfg.num_workers, pin_memory=pin)
    optimizer = torch.optim.Adam(_parameter_groups(model, cfg), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    augment = None if cached else spec_augment(cfg)  # SpecAugment acts on log-mels, which cached embeddings are not
    scaler = torch.amp.GradScaler(device.type, enabled=_amp_dtype(device) == torch.float16)
    result, best_state, best_loss = FitResult(0, {}), None, float("inf")
    for epoch in range(1, cfg.epochs + 1):
        train_m = _run_epoch(model, train_loader, device, optimizer, augment, scaler, cfg.mixup_alpha, cached)
        val_m = _run_epoch(model, val_loader, device, None, cached=cached)
        metrics = {f"train/{k}": v for k, v in train_m.items()} | {f"val/{k}": v for k, v in val_m.items()}
        result.history.append(metrics)
        if on_epoch_end:
            on_epoch_end(epoch, metrics)
        if val_m["loss"] < best_loss:
            best_loss, result.best_epoch, result.best_metrics = val_m["loss"], epoch, metrics
            best_state = copy.deepcopy(model.state_dict())
            if checkpoint_path is not None:
                save_checkpoint(best_state, checkpoint_path)
        elif epoch - result.best_epoch >= cfg.patience:
            result.stopped_early = True
            break
    if best_state is None:
        raise RuntimeError(f"validation loss was never finite in {len(result.history)} epochs; nothing to keep")
    model.load_state_dict(best_state)
    if cfg.calibrate and genre_net:
        logits, labels = _segment_logits(model, val_loader, device, cached)
        result.temperature = fit_temperature(logits, labels)
        model.temperature.fill_(result.temperature)
        if checkpoint_path is not None:
            save_checkpoint(model.state_dict(), checkpoint_path)
    if genre_net:
        model.set_frozen(False)  # nothing trains any more; a later fine-tuning decides again
    return result


def _parameter_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """The head at ``learning_rate``; pretrained layers at ``learning_rate * pretrained_lr_scale`` (none if frozen)."""
    if not hasattr(model, "pretrained_parameters"):
        return [{"params": list(model.parameters())}]
    pretrained = {id(p) for p in model.pretrained_parameters()}
    groups = [{"params": [p for p in model.parameters() if id(p) not in pretrained and p.requires_grad]}]
    if pretrained and cfg.pretrained_lr_scale > 0:
        groups.append({"params": model.pretrained_parameters(), "lr": cfg.learning_rate * cfg.pretrained_lr_scale})
    return groups


@torch.inference_mode()
def _segment_logits(model: nn.Module, loader: DataLoader, device: torch.device, cached: bool) -> tuple[Tensor, Tensor]:
    """Uncalibrated logits (N, n_classes) and labels (N,) of every segment of ``loader``."""
    model.eval()
    forward = model.classify_embedding if cached else model.classify
    logits, labels = [], []
    for x, y, _ in loader:
        logits.append(forward(x.to(device)).float().cpu() * model.temperature.cpu())  # undo any earlier temperature
        labels.append(y)
    return torch.cat(logits), torch.cat(labels)
