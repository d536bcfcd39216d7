"""Pretrained musicnn weights: converted once, verified, never left half-written; the port equals musicnn itself."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from crnn.musicnn import Musicnn, load_pretrained
from infra import pretrained
from infra.pretrained import PretrainedWeightsError, ensure_musicnn_weights, weights_path

FAKE_CONVERTER = """
import sys, numpy as np
out = sys.argv[sys.argv.index("--out") + 1]
{body}
"""


@pytest.fixture
def fake_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The conversion with this interpreter standing in for the TF environment and a script standing in for TF."""
    monkeypatch.setattr(pretrained, "converter_env", lambda root: Path(sys.executable))
    monkeypatch.setattr(pretrained, "_checkpoint_dir", lambda python, checkpoint: tmp_path)

    def use(body: str) -> None:
        script = tmp_path / "convert.py"
        script.write_text(FAKE_CONVERTER.format(body=body))
        monkeypatch.setattr(pretrained, "CONVERTER", script)

    return use


def _tf_variables() -> dict[str, np.ndarray]:
    from tests.crnn.test_musicnn import _as_tf

    return _as_tf(Musicnn())


def test_conversion_runs_once_and_the_result_loads(tmp_path: Path, fake_env) -> None:
    source = tmp_path / "variables.npz"
    np.savez(source, __checkpoint__=np.array("MSD_musicnn"), **_tf_variables())
    fake_env(f"import shutil; shutil.copy({str(source)!r}, out)")
    root = tmp_path / "cache"
    path = ensure_musicnn_weights("MSD_musicnn", root)
    assert path == weights_path("MSD_musicnn", root) and path.name.startswith("MSD_musicnn-8579734ee638")
    load_pretrained(path, "MSD_musicnn")
    fake_env("raise SystemExit('must not run again')")
    assert ensure_musicnn_weights("MSD_musicnn", root) == path
    assert sorted(p.name for p in path.parent.iterdir() if p.suffix == ".npz") == [path.name]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "open(out, 'wb').write(b'half'); raise SystemExit('killed')",
            "reading the TensorFlow checkpoint failed: killed",
        ),
        ("np.savez(out, __checkpoint__=np.array('MSD_musicnn'), x=np.zeros(1))", "lack"),
    ],
)
def test_a_failed_or_partial_conversion_leaves_no_file_that_loads(tmp_path: Path, fake_env, body, message) -> None:
    fake_env(body)
    root = tmp_path / "cache"
    with pytest.raises((PretrainedWeightsError, KeyError), match=message):
        ensure_musicnn_weights("MSD_musicnn", root)
    assert not [p for p in (root / "musicnn").iterdir() if p.suffix == ".npz"]


def test_unknown_checkpoint_and_missing_uv_are_clear_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="must be one of MSD_musicnn, MTT_musicnn, got 'MSD_vgg'"):
        ensure_musicnn_weights("MSD_vgg", tmp_path)
    monkeypatch.setattr(pretrained.shutil, "which", lambda *a, **k: None)
    with pytest.raises(PretrainedWeightsError, match="needs uv"):
        pretrained.converter_env(tmp_path)


def test_cache_dir_follows_the_environment_or_the_work_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(pretrained.CACHE_ENV, "/somewhere")
    assert pretrained.cache_dir("work") == Path("/somewhere")
    monkeypatch.delenv(pretrained.CACHE_ENV)
    assert pretrained.cache_dir("work") == Path("work/pretrained")


@pytest.mark.slow
def test_port_matches_musicnns_own_extractor_on_real_audio(pretrained_dir: Path, gtzan_mini: Path) -> None:
    """Parity with musicnn's TensorFlow ``extractor`` (needs PyPI access the first time: TF in its own env)."""
    weights = ensure_musicnn_weights("MSD_musicnn", pretrained_dir)
    python = pretrained.converter_env(pretrained_dir)
    audio = sorted((gtzan_mini / "jazz").glob("*.wav"))[0]
    reference = pretrained_dir / "reference.npz"
    subprocess.run(
        [str(python), str(pretrained.CONVERTER), "--checkpoint-dir", str(pretrained._checkpoint_dir(python, "MSD_musicnn")),
         "--name", "MSD_musicnn", "--out", str(pretrained_dir / "again.npz"),
         "--reference", str(audio), "--reference-out", str(reference)],
        check=True, capture_output=True,
    )  # fmt: skip
    ref = np.load(reference)
    model = load_pretrained(weights, "MSD_musicnn")
    with torch.inference_mode():
        logits, penultimate = model(torch.from_numpy(ref["patches"]).unsqueeze(1))  # (10, 187, 96) patches of 3 s
    assert ref["taggram"].shape == (10, 50)
    np.testing.assert_allclose(torch.sigmoid(logits).numpy(), ref["taggram"], atol=1e-4)
    # musicnn's extractor keeps the first batch's features for every patch (its loop unpacks into other names)
    np.testing.assert_allclose(penultimate[0].numpy(), ref["penultimate"][0], atol=1e-4)
