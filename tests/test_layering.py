"""Layering rules of STYLE.md, checked statically with ``ast``: who may import whom."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CRNN_FORBIDDEN = {"mlflow", "prefect", "typer", "typer_cli", "tasks", "flows", "infra"}
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
    bad = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for module, _, line in imports(path.read_text())
        if root_of(module) in CRNN_FORBIDDEN
    ]
    assert not bad, "crnn/ must stay pure (torch, numpy, soundfile, librosa):\n" + "\n".join(bad)


@pytest.mark.parametrize("path", py_files("tasks"), ids=lambda p: str(p.relative_to(ROOT)))
def test_tasks_do_not_import_the_cli(path: Path) -> None:
    bad = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for module, _, line in imports(path.read_text())
        if root_of(module) in {"typer", "typer_cli", "flows"}
    ]
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
        if root == "infra" and name is not None:
            if name.isupper() or (path.name, f"{module}.{name}") in FLOW_INFRA_EXCEPTIONS:
                continue
            bad.append(where + " (only constants may come from infra)")
            continue
        bad.append(where)
    assert not bad, (
        "flows/ may import only prefect, the stdlib, crnn.config, crnn.requests, infra constants and tasks:\n"
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
