"""Tests for scoring.prepare: each file's preparation state, decided before the model runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from crnn.audio import file_sha256
from crnn.config import PipelineConfig
from crnn.inference import build_model
from scoring.library import LibraryFile
from scoring.prepare import PrepState, loaded_model, prepare


@pytest.fixture(scope="module")
def net():
    return build_model(PipelineConfig.from_options(architecture="crnn-attention")).eval()


def _file(path: Path) -> LibraryFile:
    st = path.stat()
    return LibraryFile(str(path), st.st_size, st.st_mtime_ns)


def test_a_new_file_is_decoded(write_tone, net, tmp_path) -> None:
    path = write_tone("a.wav", 440.0, seconds=2.0)
    prepared = prepare(_file(path), {}, net, tmp_path / "cache", None)
    assert prepared.state is PrepState.DECODED == "decoded"
    assert prepared.sha256 == file_sha256(path) and prepared.reason is None
    assert prepared.waveform.ndim == 1 and not prepared.truncated


def test_same_content_is_unchanged_without_decoding(write_tone, net, tmp_path) -> None:
    path = write_tone("a.wav", 440.0, seconds=2.0)
    prepared = prepare(_file(path), {"known_sha256": file_sha256(path)}, net, tmp_path / "cache", None)
    assert prepared.state is PrepState.UNCHANGED and prepared.waveform is None


def test_an_s3_object_with_its_known_etag_is_unchanged_without_download(net, tmp_path) -> None:
    file = LibraryFile("s3://bucket/a.mp3", 10, 0, etag="abc")
    prepared = prepare(file, {"known_etag": "abc", "known_sha256": "f" * 64}, net, tmp_path / "cache", None)
    assert (prepared.state, prepared.sha256) == (PrepState.UNCHANGED, "f" * 64)


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [("notes.txt", b"hello", "unsupported format .txt"), ("empty.wav", b"", "zero-length"), ("bad.wav", b"x" * 64, "")],
)
def test_files_that_cannot_be_scored_fail_with_a_reason(net, tmp_path, name, content, reason) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    prepared = prepare(_file(path), {}, net, tmp_path / "cache", None)
    assert prepared.state is PrepState.FAILED and prepared.reason and reason in prepared.reason


def test_a_vanished_file_raises_so_nothing_is_recorded(net, tmp_path) -> None:
    file = LibraryFile(str(tmp_path / "gone.wav"), 100, 0)
    with pytest.raises(OSError):
        prepare(file, {}, net, tmp_path / "cache", None)


def test_the_model_is_loaded_once_per_checkpoint_and_device(tmp_path) -> None:
    from crnn.inference import checkpoint_state
    from crnn.train import save_checkpoint

    cfg = PipelineConfig.from_options(architecture="crnn-attention")
    path = tmp_path / "m.pt"
    save_checkpoint(checkpoint_state(build_model(cfg).eval(), cfg), path)
    assert loaded_model(str(path), "cpu") is loaded_model(str(path), "cpu")
