"""The training modules import one another without circles, and the run-folder code without Lightning."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "deepscope"


def _module_name(path: Path) -> str:
    return "deepscope." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__")


def _import_graph(folder: Path) -> dict[str, set[str]]:
    """Module -> the modules of ``folder`` it imports, at the top or inside a function alike."""
    modules = {_module_name(p): p for p in folder.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_training_modules_have_no_import_circle():
    graph = _import_graph(PACKAGE / "training")
    assert "deepscope.training.trainer" in graph and "deepscope.training.distributed" in graph
    assert _cycles(graph) == []


@pytest.mark.parametrize("module", ["deepscope.training.run", "deepscope.training.processes",
                                    "deepscope.training.lock", "deepscope.training.quiet"])
def test_run_folder_code_imports_without_lightning(module):
    code = (f"import sys, json; import {module}; "
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning'))))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


@pytest.mark.parametrize("first", ["deepscope.training.distributed", "deepscope.training.trainer"])
def test_distributed_and_trainer_import_in_either_order(first):
    other = {"deepscope.training.distributed": "deepscope.training.trainer"}.get(first, "deepscope.training.distributed")
    proc = subprocess.run([sys.executable, "-c", f"import {first}; import {other}; "
                           "from deepscope.training.distributed import quiet_lightning, process_count"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
