"""Dependencies are declared once (requirements.in), pinned once (requirements.lock), and every other list derives from them."""

from __future__ import annotations

import tomllib

import pytest
import yaml

from infra import requirements as req
from infra.requirements import ROOT

RUNTIME_CODE = [ROOT / d for d in ("crnn", "scoring", "tasks", "flows", "infra")] + [ROOT / "typer_cli.py"]
DEV_CODE = [ROOT / "tests", ROOT / "bench"]


def test_every_imported_module_is_declared_and_locked() -> None:
    runtime = set(req.distributions(req.imported_modules(RUNTIME_CODE)).values())
    dev = set(req.distributions(req.imported_modules(DEV_CODE)).values())
    declared, declared_dev = req.declared(ROOT / "requirements.in"), req.declared(ROOT / "requirements-dev.in")
    assert runtime - declared == set(), "imported by the code, missing from requirements.in"
    assert dev - declared - declared_dev == set(), "imported by tests/bench, missing from requirements*.in"
    assert (declared | declared_dev) - set(req.locked()) == set(), "declared but not pinned in requirements.lock"


def test_pyproject_and_conda_yaml_derive_from_the_declarations() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "dependencies" not in project["project"] and "dependencies" in project["project"]["dynamic"]
    dynamic = project["tool"]["setuptools"]["dynamic"]
    assert dynamic["dependencies"] == {"file": ["requirements.in"]}
    assert dynamic["optional-dependencies"]["dev"] == {"file": ["requirements-dev.in"]}
    conda = yaml.safe_load((ROOT / "conda.yaml").read_text())
    pip = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    assert pip == ["-r requirements.lock"]
    assert "python=3.11" in conda["dependencies"]


def test_the_served_model_requires_what_its_code_imports_at_the_locked_versions() -> None:
    pins = dict(r.split("==") for r in req.model_requirements())
    imported = req.distributions(req.imported_modules(req.MODEL_CODE))
    assert set(imported.values()) == set(pins)
    # av: crnn.audio's decoder; onnxruntime: the CPU forward of the exported classifier (crnn.onnx_runtime)
    assert {"av", "torch", "torchaudio", "soundfile", "librosa", "mlflow", "onnxruntime"} <= set(pins)
    assert "onnx" not in pins  # only the export (at registration) needs it, not the served model
    locked = req.locked()
    assert all(locked[name] == version for name, version in pins.items())


def test_a_module_missing_from_the_lock_is_named(tmp_path, monkeypatch) -> None:
    lock = tmp_path / "requirements.lock"
    lock.write_text(
        "".join(
            line + "\n" for line in (ROOT / "requirements.lock").read_text().splitlines() if not line.startswith("av==")
        )
    )
    monkeypatch.setattr(req, "LOCK", lock)
    with pytest.raises(LookupError, match=r"requirements.lock: no pin for av"):
        req.model_requirements()


def test_imported_modules_skip_the_standard_library_the_project_and_relative_imports(tmp_path) -> None:
    code = tmp_path / "m.py"
    code.write_text(
        "import os, json\nimport numpy as np\nfrom torch.nn import functional\nfrom . import x\nfrom crnn import GENRES\n"
    )
    assert req.imported_modules([code]) == {"numpy", "torch"}
    assert req.distributions({"sklearn", "mlflow"}) == {"sklearn": "scikit-learn", "mlflow": "mlflow"}
    with pytest.raises(LookupError, match="no_such_module_xyz"):
        req.distributions({"no_such_module_xyz"})
