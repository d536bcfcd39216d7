"""The project's third-party dependencies: declared once in ``requirements.in``, pinned once in ``requirements.lock``.

Everything else is derived: ``pyproject.toml`` reads its dependencies from ``requirements.in``
(``requirements-dev.in`` for the test tools), ``conda.yaml`` (the environment of ``mlflow run .``)
installs ``-r requirements.lock``, and the registered model's ``pip_requirements`` are the locked
pins of the distributions that the model's code (``crnn/`` and ``infra/genre_model.py``) imports.
``tests/test_requirements.py`` fails when an imported module is missing from any of them.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterable
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
PROJECT_MODULES = frozenset({"crnn", "scoring", "tasks", "flows", "infra", "typer_cli", "bench", "tests"})
ISOLATED = frozenset({ROOT / "infra" / "musicnn_convert.py"})
"""Files that run in another environment (the musicnn converter's TensorFlow one), not ours."""
MODEL_CODE = (ROOT / "crnn", ROOT / "infra" / "genre_model.py")
"""What a registered model loads: the pyfunc wrapper and its ``code_paths``."""


def canonical(name: str) -> str:
    """PEP 503 normalised distribution name (``Scikit_Learn`` -> ``scikit-learn``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def python_files(paths: Iterable[Path]) -> list[Path]:
    """The ``.py`` files under ``paths`` (files or folders), without :data:`ISOLATED` ones."""
    files = [f for p in paths for f in ([p] if p.is_file() else sorted(p.rglob("*.py")))]
    return [f for f in files if f.resolve() not in ISOLATED]


def imported_modules(paths: Iterable[Path]) -> set[str]:
    """Top-level third-party modules that the Python files under ``paths`` import (absolute imports).

    Standard-library modules and this project's packages are left out.
    """
    names: set[str] = set()
    for path in python_files(paths):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in PROJECT_MODULES and n != "__future__"}


def distributions(modules: Iterable[str]) -> dict[str, str]:
    """``{module: distribution}`` for installed modules (canonical names; ``mlflow`` -> ``mlflow``, not ``mlflow-skinny``).

    Raises:
        LookupError: a module that no installed distribution provides.
    """
    providers = packages_distributions()
    found = {}
    for module in sorted(modules):
        names = [canonical(d) for d in providers.get(module, [])]
        if not names:
            raise LookupError(f"no installed distribution provides module {module!r}")
        found[module] = canonical(module) if canonical(module) in names else names[0]
    return found


def locked(lock: Path | None = None) -> dict[str, str]:
    """``{distribution: version}`` pinned in ``lock`` (default :data:`LOCK`; ``name==version`` lines, comments ignored)."""
    lock = lock or LOCK
    pins = {}
    for line in lock.read_text().splitlines():
        if match := re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)", line):
            pins[canonical(match[1])] = match[2]
    return pins


def declared(requirements_in: Path) -> set[str]:
    """Distribution names in a ``requirements.in``-style file (one requirement per line, ``#`` comments)."""
    names = set()
    for line in requirements_in.read_text().splitlines():
        if match := re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line.split("#", 1)[0]):
            names.add(canonical(match[1]))
    return names


def model_requirements() -> list[str]:
    """Pinned ``pip_requirements`` of the registered model: ``name==version`` (from the lock) of what its code imports.

    Raises:
        LookupError: an imported distribution is not pinned in ``requirements.lock``.
    """
    pins = locked()
    needed = sorted(set(distributions(imported_modules(MODEL_CODE)).values()))
    missing = [d for d in needed if d not in pins]
    if missing:
        raise LookupError(f"{LOCK.name}: no pin for {', '.join(missing)} (imported by the model's code)")
    return [f"{d}=={pins[d]}" for d in needed]
