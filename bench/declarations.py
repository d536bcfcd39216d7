"""Count option declarations the way issue 12 did: parameter declarations per distinct option name.

Counted in the source: the parameters of each ``typer_cli.py`` command (``request`` itself is not an
option), of the three flows, of each MLproject entry point, and the fields of the run requests
(``crnn/requests.py``). MLproject is reported apart when it is generated (its first line says so).

    .venv/bin/python bench/declarations.py [ROOT]     # ROOT: a checkout (default: this one)
"""

from __future__ import annotations

import ast
import sys
from collections import Counter
from pathlib import Path

import yaml

FLOWS = {"flows/train_flow.py": "train_flow", "flows/batch_score_flow.py": "batch_score_flow"}
FLOWS["flows/protocol_flow.py"] = "protocol_flow"


def _args(fn: ast.FunctionDef) -> list[str]:
    a = fn.args
    return [p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs) if p.arg != "request"]


def _decorated(fn: ast.FunctionDef, name: str) -> bool:
    return any(name in ast.unparse(d) for d in fn.decorator_list)


def count(root: Path) -> dict[str, Counter]:
    """Declarations per option name, by where they are declared (cli, flows, requests, mlproject)."""
    found = {"cli": Counter(), "flows": Counter(), "requests": Counter(), "mlproject": Counter()}
    for node in ast.walk(ast.parse((root / "typer_cli.py").read_text())):
        if isinstance(node, ast.FunctionDef) and _decorated(node, "app.command"):
            found["cli"].update(_args(node))
    for path, name in FLOWS.items():
        for node in ast.walk(ast.parse((root / path).read_text())):
            if isinstance(node, ast.FunctionDef) and node.name == name:
                found["flows"].update(_args(node) or ["request"])
    requests = root / "crnn" / "requests.py"
    if requests.exists():
        for node in ast.walk(ast.parse(requests.read_text())):
            if isinstance(node, ast.ClassDef) and node.name.endswith(("Request", "Options")):
                found["requests"].update(s.target.id for s in node.body if isinstance(s, ast.AnnAssign))
    spec = yaml.safe_load((root / "MLproject").read_text())
    for entry in spec["entry_points"].values():
        found["mlproject"].update(list(entry.get("parameters", {})))
    return found


def main(root: Path) -> None:
    """Print the totals, with and without a generated MLproject."""
    found = count(root)
    generated = (root / "MLproject").read_text().startswith("# Generated")
    hand = ("cli", "flows", "requests") + (() if generated else ("mlproject",))
    written = sum((found[k] for k in hand), Counter())
    every = sum(found.values(), Counter())
    print(f"{root}: " + ", ".join(f"{k} {sum(c.values())}" for k, c in found.items()))
    print(f"written by hand: {sum(written.values())} declarations of {len(written)} names")
    if generated:
        print(f"with the generated MLproject: {sum(every.values())} declarations of {len(every)} names")
    print("declared more than once by hand:", {n: c for n, c in written.most_common() if c > 1})


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1]))
