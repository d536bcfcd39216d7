"""``evaluate --library L --label-map M``: a registered model against a library's own genre tags, end to end."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from crnn.requests import EVALUATION_EXPERIMENT
from tests.conftest import ROOT, readme_command, user_shell_env
from typer_cli import app

LABEL_MAP = 'rock = ["Hard Rock", "Rock & Roll"]\njazz = ["Bebop"]\nfolk = "Folk"\n'
TAGS = {
    "a.wav": "Hard-Rock",
    "b.wav": "BEBOP",
    "c.wav": "rock & roll",
    "d.wav": "Folk",
    "e.wav": None,
    "f.wav": "Polka",
}


@pytest.fixture
def tagged_library(write_tone, tmp_path: Path) -> Path:
    """Six 2 s tones with messy ID3 genre tags (one untagged, one unmapped, one the model lacks) and a broken file."""
    from tests.scoring.test_tags import set_tags

    for i, (name, tag) in enumerate(TAGS.items()):
        set_tags(write_tone(f"music/{name}", 220.0 * (i + 1), seconds=2.0), tag, name)
    (tmp_path / "music" / "broken.wav").write_bytes(b"RIFF not really")
    (tmp_path / "labels.toml").write_text(LABEL_MAP)
    return tmp_path / "music"


@pytest.fixture
def two_label_champion(mlflow_store: str, tmp_path: Path) -> str:
    """An untrained ``crnn-attention`` model with labels jazz and rock, registered as the champion."""
    from crnn.config import PipelineConfig
    from crnn.inference import build_model, checkpoint_state
    from crnn.train import save_checkpoint
    from infra import registry

    cfg = PipelineConfig.from_options(architecture="crnn-attention").with_labels(["jazz", "rock"])
    save_checkpoint(checkpoint_state(build_model(cfg).eval(), cfg), tmp_path / "model.pt")
    exp = mlflow.create_experiment("models", artifact_location=(tmp_path / "artifacts").as_uri())
    run_id = MlflowClient().create_run(exp).info.run_id
    version = mlflow.register_model(registry.log_model(run_id, tmp_path / "model.pt", ["jazz", "rock"]), "genre-crnn")
    MlflowClient().set_registered_model_alias("genre-crnn", "champion", version.version)
    # the CLI runs from the repository root: keep the evaluation's artifacts under tmp_path
    mlflow.create_experiment(EVALUATION_EXPERIMENT, artifact_location=(tmp_path / "eval-artifacts").as_uri())
    return mlflow_store


@pytest.mark.slow
def test_readme_evaluate_library_reports_against_the_mapped_tags(tagged_library, two_label_champion, tmp_path) -> None:
    before = {p.name: p.read_bytes() for p in tagged_library.iterdir()}
    command = readme_command("typer_cli.py evaluate --library")
    command = command.replace("~/Music", str(tagged_library)).replace("labels.toml", str(tmp_path / "labels.toml"))
    command += f" --output-dir {tmp_path / 'scores'}"
    env = user_shell_env(PREFECT_HOME=str(tmp_path / "prefect"))
    done = subprocess.run(["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "labels the model lacks: folk" in " ".join(done.stderr.split())

    report = tmp_path / "scores" / "evaluation"
    files = {Path(r["path"]).name: r for r in csv.DictReader((report / "files.csv").open())}
    assert {n: (r["label"], r["excluded"]) for n, r in files.items()} == {
        "a.wav": ("rock", ""), "b.wav": ("jazz", ""), "c.wav": ("rock", ""), "d.wav": ("folk", ""),
        "e.wav": ("", "untagged"), "f.wav": ("", "unmapped tag"), "broken.wav": ("", "not scored"),
    }  # fmt: skip
    kept = [r for r in files.values() if not r["excluded"]]
    assert files["d.wav"]["correct"] == "False"  # the model has no folk: it cannot be right
    runs = MlflowClient().search_runs([mlflow.get_experiment_by_name(EVALUATION_EXPERIMENT).experiment_id])
    (run,) = runs
    m = run.data.metrics
    assert m["library/tracks"] == 4 and m["library/accuracy"] == pytest.approx(
        sum(r["correct"] == "True" for r in kept) / 4
    )
    assert (m["library/excluded/untagged"], m["library/excluded/unmapped_tag"], m["library/excluded/not_scored"]) == (
        1,
        1,
        1,
    )
    assert run.data.params["model_version"] == "genre-crnn/1" and run.info.status == "FINISHED"
    artifacts = {a.path for a in MlflowClient().list_artifacts(run.info.run_id, "evaluation")}
    assert {"evaluation/report.md", "evaluation/confusion.csv", "evaluation/labels.toml"} <= artifacts
    confusion = list(csv.reader((report / "confusion.csv").open()))
    assert confusion[0] == ["tag_label", "jazz", "rock", "folk"] and sum(int(x) for x in confusion[3][1:]) == 1
    assert {p.name: p.read_bytes() for p in tagged_library.iterdir()} == before  # tags untouched


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--library", "music"], "--library needs a label map"),
        (["--library", "music", "--label-map", "bad.toml"], "bad.toml: not valid TOML"),
        (["--library", "music", "--label-map", "dup.toml"], "tag value 'rock' is mapped to both 'rock' and 'pop'"),
        (["--library", "s3://bucket/music", "--label-map", "dup.toml"], "the library must be local folders"),
        (["--library", "nowhere", "--label-map", "bad.toml"], "no such file or folder: nowhere"),
        (["--library", "music", "--data", "music"], "give exactly one"),
        (["--data", "music", "--label-map", "dup.toml"], "only with --library"),
        (["--library", "music", "--label-map", "bad.toml", "--uncertain-below", "2"], "uncertain_below must be in"),
    ],
)
def test_bad_evaluate_options_are_one_line_usage_errors(tmp_path, monkeypatch, args, message) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "music").mkdir()
    (tmp_path / "bad.toml").write_text("rock = [\n")
    (tmp_path / "dup.toml").write_text('rock = ["Rock"]\npop = ["rock"]\n')
    result = CliRunner().invoke(app, ["evaluate", *args])
    assert result.exit_code == 2, result.output
    squeezed = "".join(result.output.replace("│", "").split())  # rich wraps long lines inside a box
    assert "".join(message.split()) in squeezed
    assert not (tmp_path / "scores").exists() and not (tmp_path / "mlflow.db").exists()
