"""Per-file preparation before the model runs: identity check, hashing and decoding, as an explicit state.

Runs in the decode thread of :func:`crnn.scoring.prefetch` while the model scores the previous file.
The model is loaded once per worker process and device (:func:`loaded_model`).
"""

from __future__ import annotations

import enum
import functools
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crnn.audio import AudioDecodeError, file_sha256, non_regular_reason
from crnn.inference import load_checkpoint
from crnn.models import GenreNet
from crnn.scoring import decode_for
from crnn.train import resolve_device
from scoring.library import LibraryFile, local_copy, unsupported_reason


class PrepState(enum.StrEnum):
    """Where a file stands after preparation (string values, so they log and compare as plain text)."""

    UNCHANGED = "unchanged"
    """Same content (S3 ETag or SHA-256) as when this model version last scored it: nothing to do."""
    DECODED = "decoded"
    """New or changed, decoded: ready for the model."""
    FAILED = "failed"
    """Cannot be scored (unsupported, not a regular file, undecodable): recorded with its reason."""


@dataclass
class Prepared:
    """One file after the decode thread.

    Attributes:
        state: see :class:`PrepState`.
        sha256: content hash (hex); ``None`` when the file was refused before reading it.
        reason: why the file failed, when ``state`` is ``FAILED``.
        waveform: mono samples in [-1, 1] at the model's rate, shape (time,), when ``DECODED``.
        truncated: the decode stopped at ``max_duration_s``.
    """

    state: PrepState
    sha256: str | None = None
    reason: str | None = None
    waveform: np.ndarray | None = None
    truncated: bool = False


def prepare(file: LibraryFile, hints: dict, model: GenreNet, cache_dir: Path, max_duration_s: float | None) -> Prepared:
    """Hash and decode one file.

    Args:
        file: the listed file (local or S3).
        hints: ``known_etag`` / ``known_sha256`` of this model version's row, if any (from the plan).
        model: gives the sample rate and segment length to decode for.
        cache_dir: where S3 objects are downloaded (removed again once decoded).
        max_duration_s: seconds decoded from the start of the file; ``None``: the whole file.

    Returns:
        The file's :class:`Prepared` state.

    Raises:
        OSError: reading or downloading failed (nothing is recorded: the next run tries again).
    """
    if file.is_s3 and file.etag and file.etag == hints.get("known_etag"):
        return Prepared(PrepState.UNCHANGED, hints.get("known_sha256"))
    if reason := unsupported_reason(file):
        return Prepared(PrepState.FAILED, reason=reason)
    local = local_copy(file, cache_dir)
    if reason := non_regular_reason(local):  # replaced by a FIFO or device since it was listed
        return Prepared(PrepState.FAILED, reason=reason)
    try:
        sha256 = file_sha256(local)
        if sha256 == hints.get("known_sha256"):
            return Prepared(PrepState.UNCHANGED, sha256)
        try:
            waveform, truncated = decode_for(model, local, max_duration_s)
        except AudioDecodeError as exc:
            return Prepared(PrepState.FAILED, sha256, exc.reason)
        return Prepared(PrepState.DECODED, sha256, waveform=waveform, truncated=truncated)
    finally:
        if file.is_s3:  # the cached copy is only needed until it is decoded
            local.unlink(missing_ok=True)


_load_lock = threading.Lock()


@functools.lru_cache(maxsize=2)
def _load(checkpoint: str, device: str, onnx: str | None) -> GenreNet:
    return load_checkpoint(checkpoint, resolve_device(device), onnx)[0]


def loaded_model(checkpoint: str, device: str, onnx: str | None = None) -> GenreNet:
    """The checkpoint's model in eval mode, loaded once per worker process and device (threads wait for it).

    With ``onnx`` (the registered model's exported classifier, :func:`infra.registry.resolve_model`) the
    model scores in ONNX Runtime on a CPU, one session per worker process, on as many intra-op threads
    as torch has when the model is loaded (:func:`crnn.inference.load_checkpoint`); without it, with torch.
    """
    with _load_lock:
        return _load(checkpoint, device, onnx)
