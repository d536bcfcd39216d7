"""Layering rules of STYLE.md, checked statically with ``ast``: who may import whom."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CRNN_FORBIDDEN = {"mlflow", "prefect", "typer", "typer_cli", "tasks", "flows", "infra", "scoring"}
SCORING_FORBIDDEN = {"mlflow", "prefect", "typer", "typer_cli", "tasks", "flows"}
SCORING_INFRA_ALLOWED = {"infra.storage"}
"""scoring/ (the batch-scoring engine) uses crnn/ and, of infra/, only the storage adapter."""
INFRA_FORBIDDEN = {"scoring", "tasks", "flows", "typer_cli"}
CRNN_ALLOWED_ROOTS = {
    "crnn",
    # STYLE.md's list for crnn/: torch, torchaudio, numpy, soundfile, PyAV, librosa, scikit-learn.
    "torch",
    "torchaudio",
    "numpy",
    "soundfile",
    "av",
    "librosa",
    "sklearn",
    # Beyond STYLE.md's list, each for one job: soxr (librosa's resampler, streamed in crnn.audio) and
    # cachetools (crnn.train's bounded cache of frozen embeddings).
    "soxr",
    "cachetools",
    # pydantic: the typed run requests (crnn.requests), one declaration of every option.
    "pydantic",
    # mutagen: genre and artist tags of a tagged library (crnn.tagged), a pure file library; pandas: FMA's
    # two-level-header tracks.csv (crnn.fma).
    "mutagen",
    "pandas",
    # onnxruntime: the CPU forward of a registered model's exported classifier (crnn.onnx_runtime), chosen
    # where InferenceSettings chooses every other forward setting.
    "onnxruntime",
}
"""Third-party packages crnn/ may import: everything else is the standard library."""
FLOW_ALLOWED_ROOTS = {"prefect", "prefect_dask", "pydantic", "tasks", "flows"}
# Names flows/ imports from infra that are not constants; each one is a known deviation from
# "flows/ imports only constants from infra" and should move into a task.
FLOW_INFRA_EXCEPTIONS: set[tuple[str, str]] = set()


def imports(source: str) -> list[tuple[str, str | None, int]]:
    """Every import in ``source``, nested ones included, as ``(module, imported name or None, line)``.

    Relative imports (``from . import x``) are returned with a leading dot.
    """
    found: list[tuple[str, str | None, int]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((alias.name, None, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            found.extend((module, alias.name, node.lineno) for alias in node.names)
    return found


def py_files(package: str) -> list[Path]:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no Python files under {package}/"
    return files


def root_of(module: str) -> str:
    return module.split(".")[0]


def test_import_collector_sees_every_form() -> None:
    src = (
        "import os, mlflow.tracking as t\n"
        "from prefect import flow\n"
        "from . import sibling\n"
        "def f():\n"
        "    import typer\n"
        "    from infra.tracking import X\n"
    )
    assert sorted(imports(src), key=lambda x: x[2]) == [
        ("os", None, 1),
        ("mlflow.tracking", None, 1),
        ("prefect", "flow", 2),
        (".", "sibling", 3),
        ("typer", None, 5),
        ("infra.tracking", "X", 6),
    ]


@pytest.mark.parametrize("path", py_files("crnn"), ids=lambda p: str(p.relative_to(ROOT)))
def test_crnn_imports_no_orchestration_or_tracking(path: Path) -> None:
    bad = bad_imports(path, lambda module, _: root_of(module) in CRNN_FORBIDDEN)
    assert not bad, "crnn/ must not import orchestration, tracking or the CLI:\n" + "\n".join(bad)


@pytest.mark.parametrize("path", py_files("crnn"), ids=lambda p: str(p.relative_to(ROOT)))
def test_crnn_imports_only_the_stdlib_and_its_allowed_packages(path: Path) -> None:
    bad = bad_imports(
        path,
        lambda module, _: (
            not module.startswith(".")
            and module != "__future__"
            and root_of(module) not in sys.stdlib_module_names
            and root_of(module) not in CRNN_ALLOWED_ROOTS
        ),
    )
    assert not bad, f"crnn/ may import only the stdlib and {sorted(CRNN_ALLOWED_ROOTS)}:\n" + "\n".join(bad)


def test_crnn_allowed_packages_are_all_used() -> None:
    """A package no crnn/ module imports any more should leave the allowed list."""
    used = {root_of(m) for path in py_files("crnn") for m, _, _ in imports(path.read_text())}
    assert CRNN_ALLOWED_ROOTS <= used


def bad_imports(path: Path, is_bad) -> list[str]:
    """``file:line: module`` for each import of ``path`` for which ``is_bad(module, name)`` holds."""
    found = imports(path.read_text())
    return [f"{path.relative_to(ROOT)}:{line}: {module}" for module, name, line in found if is_bad(module, name)]


def scoring_may_not(module: str, name: str | None) -> bool:
    """scoring/ imports neither orchestration, the CLI nor MLflow; of infra/, only the storage adapter."""
    if root_of(module) == "infra":
        return module not in SCORING_INFRA_ALLOWED and f"infra.{name}" not in SCORING_INFRA_ALLOWED
    return root_of(module) in SCORING_FORBIDDEN


@pytest.mark.parametrize("path", py_files("scoring"), ids=lambda p: str(p.relative_to(ROOT)))
def test_scoring_imports_crnn_and_storage_only(path: Path) -> None:
    bad = bad_imports(path, scoring_may_not)
    assert not bad, (
        "scoring/ may use crnn/ and infra.storage, not Prefect, Typer, MLflow or other infra:\n" + "\n".join(bad)
    )


@pytest.mark.parametrize("path", py_files("infra"), ids=lambda p: str(p.relative_to(ROOT)))
def test_infra_does_not_import_the_layers_above(path: Path) -> None:
    bad = bad_imports(path, lambda module, _: root_of(module) in INFRA_FORBIDDEN)
    assert not bad, "infra/ must not import scoring, tasks, flows or the CLI:\n" + "\n".join(bad)


@pytest.mark.parametrize("path", py_files("tasks"), ids=lambda p: str(p.relative_to(ROOT)))
def test_tasks_do_not_import_the_cli(path: Path) -> None:
    bad = bad_imports(path, lambda module, _: root_of(module) in {"typer", "typer_cli", "flows"})
    assert not bad, "tasks/ must not import typer, the CLI or flows:\n" + "\n".join(bad)


@pytest.mark.parametrize("path", py_files("flows"), ids=lambda p: str(p.relative_to(ROOT)))
def test_flows_import_only_prefect_stdlib_config_requests_infra_constants_and_tasks(path: Path) -> None:
    bad = []
    for module, name, line in imports(path.read_text()):
        where = f"{path.relative_to(ROOT)}:{line}: {module}" + (f".{name}" if name else "")
        root = root_of(module)
        if module.startswith(".") or module == "__future__" or root in sys.stdlib_module_names:
            continue
        if root in FLOW_ALLOWED_ROOTS:
            continue
        if module in ("crnn.config", "crnn.requests") or (module == "crnn" and name in ("config", "requests")):
            continue
        if root in ("infra", "scoring") and name is not None:
            if name.isupper() or (path.name, f"{module}.{name}") in FLOW_INFRA_EXCEPTIONS:
                continue
            bad.append(where + f" (only constants may come from {root})")
            continue
        bad.append(where)
    assert not bad, (
        "flows/ may import only prefect, the stdlib, crnn.config, crnn.requests, infra/scoring constants and tasks:\n"
        + "\n".join(bad)
    )


def test_flow_infra_exceptions_are_still_needed() -> None:
    """An exception that no flow uses any more should be deleted from the list."""
    used = {
        (path.name, f"{module}.{name}")
        for path in py_files("flows")
        for module, name, _ in imports(path.read_text())
        if root_of(module) == "infra"
    }
    assert FLOW_INFRA_EXCEPTIONS <= used
