"""End-to-end: a collection of 3 labels that are not GTZAN genres is trained on, registered and scored.

The labels travel with the model (checkpoint, registered signature, version tag); nothing after
training reads GTZAN's genre list.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from mlflow.tracking import MlflowClient

from crnn.requests import ScoreRequest, TrainRequest

pytestmark = pytest.mark.slow

LABELS = ("chirp", "hiss", "hum")  # sorted: the class order of a non-GTZAN collection
SAMPLE_RATE = 22050


def _sound(label: str, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A seeded example of ``label``: a rising sweep, white noise, or a 110 Hz hum with harmonics."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    f0 = rng.uniform(0.8, 1.2)
    if label == "chirp":
        y = np.sin(2 * np.pi * (300 * f0 * t + 800 * t**2))
    elif label == "hiss":
        y = rng.standard_normal(t.size) / 3
    else:
        y = sum(np.sin(2 * np.pi * 110 * f0 * k * t) / k for k in (1, 2, 3))
    return (0.3 * y / np.abs(y).max() + 0.005 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture
def collection(tmp_path: Path) -> Path:
    """5 tracks of 3.5 s per label, named ``<label>.<5 digits>.wav``, with a labels.txt naming the labels."""
    root = tmp_path / "sounds"
    rng = np.random.default_rng(0)
    for label in LABELS:
        for i in range(5):
            path = root / label / f"{label}.{i:05d}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, _sound(label, 3.5, rng), SAMPLE_RATE)
    (root / "labels.txt").write_text("hum\nhiss\nchirp\n")
    return root


def test_a_model_trained_on_other_labels_scores_with_them(prefect_harness, mlflow_store, collection, tmp_path):
    from flows.batch_score_flow import batch_score_flow
    from flows.train_flow import train_flow
    from scoring import tags

    trained = train_flow(TrainRequest(
        source=str(collection), work_dir=str(tmp_path / "work"), architecture="crnn-attention",
        epochs=2, batch_size=8, patience=2,
    ))  # fmt: skip
    assert trained["registry"]["promoted"]
    client = MlflowClient()
    run = client.get_run(trained["run_id"])
    assert run.data.params["model.labels"] == str(LABELS)
    per_genre = client.download_artifacts(trained["run_id"], "per_genre.csv", str(tmp_path))
    assert Path(per_genre).read_text().splitlines()[0] == "genre,precision,recall,f1,support"
    assert [line.split(",")[0] for line in Path(per_genre).read_text().splitlines()[1:]] == list(LABELS)
    champion = client.get_model_version_by_alias("genre-crnn", "champion")
    assert json.loads(champion.tags["labels"]) == list(LABELS)

    served = mlflow.pyfunc.load_model("models:/genre-crnn@champion")
    assert [c.name for c in served.metadata.get_output_schema().inputs] == ["genre", *(f"prob_{g}" for g in LABELS)]

    library = tmp_path / "library"
    rng = np.random.default_rng(1)
    (library / "sub").mkdir(parents=True)
    for n, label in enumerate(LABELS * 2):  # file names say nothing about the label
        sf.write(library / ("sub" if n % 2 else ".") / f"take-{n}.wav", _sound(label, 4.0, rng), SAMPLE_RATE)
    out = tmp_path / "scores"
    summary = batch_score_flow(
        ScoreRequest(library=[str(library)], output_dir=str(out), uncertain_below=0.0, tags="write")
    )
    assert summary["counts"] == {"scored": 6, "unchanged": 0, "failed": 0}

    rows = pd.read_csv(out / "library.csv")
    assert [c for c in rows.columns if c.startswith("prob_")] == [f"prob_{g}" for g in LABELS]
    assert set(rows["genre"]) <= set(LABELS) and np.allclose(
        rows[[f"prob_{g}" for g in LABELS]].sum(axis=1), 1, atol=1e-3
    )
    records = [json.loads(line) for line in (out / "library.jsonl").read_text().splitlines()]
    assert all(list(r["probs"]) == list(LABELS) and {t["genre"] for t in r["top_k"]} <= set(LABELS) for r in records)
    for row in rows.itertuples():
        assert row.tag_status == f"written: {row.genre}" and tags.read_genre(row.path) == row.genre
