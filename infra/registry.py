"""MLflow Model Registry adapter: log the pyfunc model, register it, champion/challenger aliases."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types.schema import Array, ColSpec, Schema

from crnn import GENRES, promotion
from crnn.promotion import SELECTION_METRIC, Challenger, ChampionEvidence, Decision
from crnn.requests import CHALLENGER, CHAMPION, MODEL_NAME  # noqa: F401 - registry.MODEL_NAME for callers
from infra.genre_model import ONNX_ARTIFACT, paths_allowed
from infra.requirements import model_requirements
from infra.tracking import SPLIT_ARTIFACT_DIR

log = logging.getLogger(__name__)

LABELS_TAG = "labels"
"""Version tag holding the JSON list of labels the version predicts, in output order."""
_PROJECT_ROOT = Path(__file__).resolve().parent.parent


def signature(labels: Sequence[str]) -> ModelSignature:
    """Input: ``path`` or ``waveform`` + ``sample_rate`` (Hz); output: ``genre`` and ``prob_<label>`` per label."""
    inputs = Schema(
        [
            ColSpec("string", "path", required=False),
            ColSpec(Array("double"), "waveform", required=False),
            ColSpec("long", "sample_rate", required=False),
        ]
    )
    outputs = Schema([ColSpec("string", "genre")] + [ColSpec("double", f"prob_{g}") for g in labels])
    return ModelSignature(inputs=inputs, outputs=outputs)


def signature_labels(model: mlflow.models.Model) -> list[str] | None:
    """The labels of a model saved with :func:`signature`, in output order (``None`` without a signature)."""
    if model.signature is None or model.signature.outputs is None:
        return None
    return [name.removeprefix("prob_") for name in model.signature.outputs.input_names()[1:]]


def input_example() -> pd.DataFrame:
    """One 1.5 s, 8 kHz waveform (a 440 Hz tone): small, and exercises resampling."""
    t = np.arange(12000) / 8000
    return pd.DataFrame({"waveform": [0.1 * np.sin(2 * np.pi * 440 * t)], "sample_rate": [8000]})


def pip_requirements() -> list[str]:
    """Pinned runtime requirements of the served model: the locked versions of what its code imports."""
    return model_requirements()


ONNX_TAG = "onnx_classifier"
"""Run tag: whether the classifier was exported (with its largest probability difference to torch), or why not."""


def export_onnx(checkpoint: str | Path, folder: str | Path) -> tuple[Path | None, str]:
    """Export the checkpoint's segment classifier to ``folder/classifier.onnx`` and check it against torch.

    Returns:
        ``(path, note)``: the checked file and its largest probability difference to torch, or ``(None, reason)``
        when the export or the check failed (never raised: the model then scores with torch).
    """
    from crnn.inference import load_checkpoint
    from crnn.onnx_runtime import OnnxClassifier, check_classifier, export_classifier

    path = Path(folder) / "classifier.onnx"
    try:
        model, _ = load_checkpoint(checkpoint)
        export_classifier(model, path)
        worst = check_classifier(model, OnnxClassifier(path))
    except Exception as exc:  # noqa: BLE001 - a failed export must not fail registration
        log.warning(
            "ONNX export of %s failed, the model will score with torch: %s: %s", checkpoint, type(exc).__name__, exc
        )
        path.unlink(missing_ok=True)
        return None, f"not exported ({type(exc).__name__}: {exc})"[:500]
    return path, f"exported; max |dprob| against torch {worst:.1e}"


def log_model(run_id: str, checkpoint: str | Path, labels: Sequence[str]) -> str:
    """Log the pyfunc model to the run and return its URI.

    Code: ``crnn/``; artifacts: the checkpoint predicting ``labels`` and, when :func:`export_onnx` succeeds,
    its exported classifier (:data:`ONNX_ARTIFACT`, used for the CPU forward); run tag :data:`ONNX_TAG` says which.
    """
    with tempfile.TemporaryDirectory() as tmp, mlflow.start_run(run_id=run_id):
        onnx, note = export_onnx(checkpoint, tmp)
        artifacts = {"checkpoint": str(checkpoint)} | ({ONNX_ARTIFACT: str(onnx)} if onnx else {})
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(_PROJECT_ROOT / "infra" / "genre_model.py"),
            artifacts=artifacts,
            code_paths=[str(_PROJECT_ROOT / "crnn")],
            signature=signature(labels),
            input_example=input_example(),
            pip_requirements=pip_requirements(),
        )
        mlflow.set_tag(ONNX_TAG, note)
    return info.model_uri


def _champion(client: MlflowClient, name: str) -> ModelVersion | None:
    """The version holding alias ``champion``; ``None`` only when the alias (or model) does not exist."""
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE") and "not found" in str(exc).lower():
            return None
        raise


def test_split_digest(test: pd.DataFrame) -> str:
    """Digest of a test split (track ids and audio SHA-256): equal digests mean the same test set."""
    rows = test.sort_values("track_id")
    return hashlib.sha256("\n".join(rows["track_id"] + ":" + rows["sha256"]).encode()).hexdigest()[:16]


def trained_on(run_id: str) -> set[str] | None:
    """Audio SHA-256 of the train and val tracks of a run (from its logged split table), or ``None`` if absent."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            folder = Path(
                mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=SPLIT_ARTIFACT_DIR, dst_path=tmp)
            )
        except (MlflowException, OSError):
            return None
        tables = sorted(folder.glob("split-*.csv"))
        if not tables:
            return None
        df = pd.read_csv(tables[0])
    return set(df.loc[df["split"].isin(["train", "val"]), "sha256"])


def split_accuracy(model_uri: str, test: pd.DataFrame) -> float:
    """Track accuracy of a registered model on the ``path``/``genre`` rows of ``test``, through its pyfunc.

    These are our own test files: their paths are allowed for the call (:func:`infra.genre_model.paths_allowed`).
    """
    model = mlflow.pyfunc.load_model(model_uri)
    with paths_allowed():
        out = model.predict(pd.DataFrame({"path": test["path"].tolist()}))
    return float((out["genre"].to_numpy() == test["genre"].to_numpy()).mean())


def _evidence(
    name: str, champion: ModelVersion, challenger: Challenger, model_uri: str, test: pd.DataFrame
) -> ChampionEvidence:
    """Gather what :func:`crnn.promotion.decide` needs about ``champion``, fetching only what it asks for."""
    evidence = ChampionEvidence(
        version=str(champion.version),
        labels=version_labels(champion),
        split_digest=champion.tags.get("split_digest"),
        recorded_score=float(champion.tags[SELECTION_METRIC]) if SELECTION_METRIC in champion.tags else None,
    )
    if promotion.needs_split_table(challenger, evidence):
        seen = trained_on(champion.run_id)
        evidence = replace(evidence, trained_on=None if seen is None else frozenset(seen))
    if promotion.needs_rescore(challenger, evidence):
        try:
            champ = split_accuracy(f"models:/{name}/{champion.version}", test)
            evidence = replace(evidence, rescored=(split_accuracy(model_uri, test), champ))
        except Exception as exc:  # a champion that no longer loads or scores must not block registration
            evidence = replace(evidence, rescore_error=f"{type(exc).__name__}: {exc}")
    return evidence


def version_labels(version: ModelVersion) -> tuple[str, ...]:
    """The labels a registered version predicts (its ``labels`` tag); versions without it predict GTZAN's."""
    tag = version.tags.get(LABELS_TAG)
    return tuple(json.loads(tag)) if tag else GENRES


VERSION_METRICS = (SELECTION_METRIC, "test/macro_f1")
"""Test metrics of the training run copied onto its registry version as tags (4 decimals shown in the UI)."""
CROSS_ARTIST_TAG, CROSS_ARTIST_RUN_TAG = "cross_artist_accuracy", "cross_artist_source"
"""Version tags: the latest protocol-flow cross-artist accuracy of the version's architecture, and where it comes from."""


def architecture_cross_artist(experiment_id: str, architecture: str) -> dict[str, str]:
    """The cross-artist figure of ``architecture`` as version tags; ``{}`` when it is not known.

    It comes from the latest finished protocol-flow summary run of that model in ``experiment_id``
    (its ``cross_artist/accuracy``).

    It measures the architecture under the protocol, not the registered weights themselves; the source tag says so.
    """
    runs = MlflowClient().search_runs(
        [experiment_id],
        f"params.`protocol.model` = '{architecture}' and tags.`protocol.evaluation` = 'summary' "
        "and attributes.status = 'FINISHED'",
        max_results=1,
        order_by=["attributes.start_time DESC"],
    )
    if not runs or "cross_artist/accuracy" not in runs[0].data.metrics:
        return {}
    run = runs[0]
    return {
        CROSS_ARTIST_TAG: f"{run.data.metrics['cross_artist/accuracy']:.4f}",
        CROSS_ARTIST_RUN_TAG: f"protocol-flow run {run.info.run_id} of {architecture} (the architecture, not this version)",
    }


def run_version_tags(run_id: str) -> dict[str, str]:
    """Tags describing a training run's model on its registry version.

    ``architecture``, ``split`` (method), the run's :data:`VERSION_METRICS` and the architecture's
    cross-artist figure when known (:func:`architecture_cross_artist`).
    """
    run = MlflowClient().get_run(run_id)
    params, tags, metrics = run.data.params, run.data.tags, run.data.metrics
    out = {
        "architecture": tags.get("architecture") or params.get("model.architecture", ""),
        "split": tags.get("split") or params.get("split.method_used", ""),
    }
    out |= {k: f"{metrics[k]:.4f}" for k in VERSION_METRICS if k in metrics}
    if out["architecture"]:
        out |= architecture_cross_artist(run.info.experiment_id, out["architecture"])
    return {k: v for k, v in out.items() if v}


def register_and_promote(
    model_uri: str,
    run_id: str,
    score: float,
    test: pd.DataFrame,
    name: str,
    labels: Sequence[str],
) -> Decision:
    """Register ``model_uri`` (alias ``challenger``) and promote it to ``champion`` if it earns it.

    It is promoted when there is no champion, or when its test track accuracy beats the
    champion's on the same test tracks: the champion's recorded score when it was measured on
    this very split, else both models re-scored here, but only if the champion never trained or
    validated on any of these tracks. A champion that predicts other labels, or cannot be
    compared, is kept, and the reason says why (move the alias by hand to override). The rule
    itself is :func:`crnn.promotion.decide`; this function gathers its evidence and applies it.

    Args:
        model_uri: the logged model.
        run_id: the training run (tagged on the version).
        score: the challenger's ``test/track_accuracy``.
        test: the test split, columns ``track_id``, ``genre``, ``path``, ``sha256``.
        name: registered model name.
        labels: the class names the model predicts, in output order (tagged on the version).

    The version is also tagged with :func:`run_version_tags` (architecture, split, test metrics,
    cross-artist figure when known) and ``promotion_decision`` (the reason).
    """
    client = MlflowClient()
    digest = test_split_digest(test)
    version = str(mlflow.register_model(model_uri, name).version)
    tags = run_version_tags(run_id) | {
        "run_id": run_id,
        SELECTION_METRIC: f"{score:.6f}",
        "split_digest": digest,
        LABELS_TAG: json.dumps(list(labels)),
    }
    for k, v in tags.items():
        client.set_model_version_tag(name, version, k, v)
    client.set_registered_model_alias(name, CHALLENGER, version)
    challenger = Challenger(version, score, digest, tuple(test["sha256"]), tuple(labels))
    champion = _champion(client, name)
    evidence = None if champion is None else _evidence(name, champion, challenger, model_uri, test)
    decision = promotion.decide(challenger, evidence)
    if decision.promoted:
        client.set_registered_model_alias(name, CHAMPION, version)
    client.set_model_version_tag(name, version, "promotion_decision", decision.reason)
    log.info("model %s v%s: %s", name, version, decision.reason)
    return decision


def decision_dict(decision: Decision) -> dict:
    """Plain-dict form for logging."""
    return asdict(decision)


def resolve_model(model_uri: str, cache_dir: str | Path) -> dict:
    """Resolve ``model_uri`` to a concrete version and download its checkpoint once into ``cache_dir``.

    ``models:/<name>@<alias>`` and ``models:/<name>/<version>`` resolve through the registry to
    ``<name>/<version>``; any other URI (``runs:/``, a local model folder) is identified by its
    checkpoint's SHA-256.

    Returns:
        ``uri``, ``version`` (the string recorded with every result), ``checkpoint`` (local path),
        ``onnx`` (local path of the exported classifier; ``None`` for models logged without one) and
        ``labels`` (from the signature, so that no checkpoint is opened; ``None`` if it has none).

    Raises:
        MlflowException: no such model, alias or version.
    """
    from crnn.audio import file_sha256

    parsed = _parse_models_uri(model_uri)
    if parsed is not None:
        name, ref = parsed
        client = MlflowClient()
        mv = client.get_model_version_by_alias(name, ref[1:]) if ref.startswith("@") else None
        version = f"{name}/{mv.version if mv else client.get_model_version(name, ref).version}"
        source = f"models:/{version}"
        local = Path(cache_dir) / version.replace("/", "-v")
    else:
        version, source = None, model_uri
        local = Path(cache_dir) / hashlib.sha256(model_uri.encode()).hexdigest()[:16]
    if not (local / "MLmodel").exists():
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=cache_dir, prefix=".download-"))
        # The model lands in tmp itself (models:/) or in tmp/<basename> (runs:/, local folders).
        downloaded = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(tmp)))
        if local.exists():  # an older, partial download of another process
            shutil.rmtree(local)
        downloaded.rename(local)
        shutil.rmtree(tmp, ignore_errors=True)
    saved = mlflow.models.Model.load(str(local))
    artifacts = saved.flavors["python_function"].get("artifacts", {})
    checkpoint = local / artifacts["checkpoint"]["path"]
    onnx = str(local / artifacts[ONNX_ARTIFACT]["path"]) if ONNX_ARTIFACT in artifacts else None
    if version is None:
        version = f"{model_uri}#sha256={file_sha256(checkpoint)[:12]}"
    return {
        "uri": model_uri,
        "version": version,
        "checkpoint": str(checkpoint),
        "onnx": onnx,
        "labels": signature_labels(saved),
    }


def _parse_models_uri(uri: str) -> tuple[str, str] | None:
    """``models:/name@alias`` -> ``(name, '@alias')``; ``models:/name/3`` -> ``(name, '3')``; else ``None``."""
    if not uri.startswith("models:/"):
        return None
    rest = uri[len("models:/") :].strip("/")
    if "@" in rest:
        name, alias = rest.rsplit("@", 1)
        return name, f"@{alias}"
    if "/" in rest:
        name, ref = rest.rsplit("/", 1)
        return name, ref
    raise MlflowException(f"{uri}: expected models:/<name>@<alias> or models:/<name>/<version>")
