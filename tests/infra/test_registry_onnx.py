"""A logged model carries its exported classifier; serving and scoring run it; a model without one scores with torch."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from crnn import GENRES
from crnn.config import PipelineConfig
from crnn.inference import BF16_PROB_TOLERANCE, build_model, checkpoint_state, inference_settings
from crnn.onnx_runtime import attached
from crnn.scoring import score_waveform
from crnn.train import save_checkpoint
from infra import registry
from infra.genre_model import ONNX_ARTIFACT, GenreModel
from scoring.prepare import loaded_model

RATE = 16000
TONE = (0.1 * np.sin(2 * np.pi * 440 * np.arange(4 * RATE) / RATE)).astype(np.float32)


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    """A random crnn-attention checkpoint."""
    cfg = PipelineConfig.from_options(architecture="crnn-attention")
    path = tmp_path / "model.pt"
    save_checkpoint(checkpoint_state(build_model(cfg).eval(), cfg), path)
    return path


def _logged(checkpoint: Path, tmp_path: Path) -> tuple[dict, str]:
    """Log and register the checkpoint's model; its :func:`registry.resolve_model` dict and the run's ONNX tag."""
    with mlflow.start_run() as run:
        pass
    model_uri = registry.log_model(run.info.run_id, checkpoint, GENRES)
    version = mlflow.register_model(model_uri, registry.MODEL_NAME).version
    resolved = registry.resolve_model(f"models:/{registry.MODEL_NAME}/{version}", tmp_path / "models")
    return resolved, MlflowClient().get_run(run.info.run_id).data.tags[registry.ONNX_TAG]


def _served(resolved: dict) -> GenreModel:
    """The pyfunc wrapper loaded as MLflow loads it, with the artifacts the model carries."""
    artifacts = {"checkpoint": resolved["checkpoint"]} | ({ONNX_ARTIFACT: resolved["onnx"]} if resolved["onnx"] else {})
    served = GenreModel()
    served.load_context(SimpleNamespace(artifacts=artifacts))
    return served


def test_a_registered_model_carries_its_classifier_and_scoring_and_serving_run_it(
    mlflow_store, checkpoint, tmp_path
) -> None:
    resolved, tag = _logged(checkpoint, tmp_path)
    assert resolved["onnx"] and Path(resolved["onnx"]).parent == Path(resolved["checkpoint"]).parent
    assert tag.startswith("exported; max |dprob| against torch")
    net = loaded_model(resolved["checkpoint"], "cpu", resolved["onnx"])  # what score-chunk loads
    assert attached(net) is not None and inference_settings(net).runtime == "onnxruntime"
    torch_net = loaded_model(resolved["checkpoint"], "cpu")
    assert inference_settings(torch_net).runtime == "torch"
    noise = np.random.default_rng(0).uniform(-0.3, 0.3, 22050 * 4).astype(np.float32)  # 4 s at the model's rate
    fast, plain = score_waveform(net, noise), score_waveform(torch_net, noise)
    # torch may run bf16 autocast (crnn.inference.BF16_PROB_TOLERANCE); ORT is fp32
    assert fast.genre == plain.genre and np.abs(fast.probs - plain.probs).max() <= BF16_PROB_TOLERANCE
    served = _served(resolved)
    assert inference_settings(served.model).runtime == "onnxruntime"
    out = served.predict(None, pd.DataFrame({"waveform": [TONE.tolist()], "sample_rate": [RATE]}))
    assert out["genre"].iloc[0] in GENRES


def test_a_failed_export_registers_the_model_anyway_and_it_scores_with_torch(
    mlflow_store, checkpoint, tmp_path, monkeypatch, caplog
) -> None:
    def broken(model, path):
        raise RuntimeError("exporter cannot express this layer")

    monkeypatch.setattr("crnn.onnx_runtime.export_classifier", broken)
    resolved, tag = _logged(checkpoint, tmp_path)
    assert resolved["onnx"] is None and "not exported (RuntimeError: exporter cannot express" in tag
    assert "the model will score with torch" in caplog.text
    assert inference_settings(loaded_model(resolved["checkpoint"], "cpu", resolved["onnx"])).runtime == "torch"
    served = _served(resolved)  # a version logged before the export existed looks the same
    assert inference_settings(served.model).runtime == "torch"
    out = served.predict(None, pd.DataFrame({"waveform": [TONE.tolist()], "sample_rate": [RATE]}))
    assert out["genre"].iloc[0] in GENRES
