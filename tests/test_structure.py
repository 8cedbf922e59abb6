"""The shape of the code: the dependency direction, no import cycles, modules and functions a reader can hold.

Imports are read from the source (module-level and deferred ones alike), so a cycle hidden inside a
function still counts.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("condense", "downstream")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules `name` imports, anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports_of(name, path, set(found)) for name, path in found.items()}


def test_condense_never_imports_downstream_and_no_library_module_imports_a_cli():
    offenders = []
    for name, targets in import_graph().items():
        for target in targets:
            if name.startswith("condense") and target.startswith("downstream"):
                offenders.append(f"{name} -> {target}")
            if target.endswith(".cli") and not name.endswith((".cli", ".__main__")):
                offenders.append(f"{name} -> {target}")
    assert not offenders, offenders


def test_no_import_cycles_among_the_projects_modules():
    graph, state, cycles = import_graph(), {}, []

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph[node]):
            if target.rpartition(".")[0] == node or node.startswith(target + "."):
                continue  # a package and its own modules: Python's usual package layout, not a cycle
            if state.get(target) == "open":
                cycles.append(" -> ".join([*path[path.index(target):], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, cycles


def test_modules_and_functions_stay_small():
    long_modules, long_functions = [], []
    for name, path in modules().items():
        source = path.read_text(encoding="utf-8")
        if len(source.splitlines()) > MAX_MODULE_LINES:
            long_modules.append(f"{name}: {len(source.splitlines())} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES:
                long_functions.append(f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert not long_modules and not long_functions, long_modules + long_functions


def test_the_checks_see_a_cycle_and_a_deferred_import(tmp_path):
    """The graph reader finds relative and deferred imports (else the tests above could never fail)."""
    source = tmp_path / "a.py"
    source.write_text("def f():\n    from .cli import main\n    from condense import distill\n")
    assert imports_of("condense.data", source, {"condense.cli", "condense.distill", "condense.data"}) == {"condense.cli", "condense.distill"}
