"""The pipeline's layers hold, and no module imports another that (through others) imports it back."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_each_layer_imports_only_from_layers_below():
    """The contract in pyproject.toml ([tool.importlinter]), imports inside functions included."""
    lint = Path(sys.executable).with_name("lint-imports")
    if not lint.exists():
        pytest.skip("import-linter is not installed (it comes with the dev extra)")
    proc = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_no_import_cycles():
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("nstyle")
    edges = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(module) :] + [module]))
        if module in done:
            return
        for imported in sorted(edges.get(module, ())):
            visit(imported, [*path, module])
        done.add(module)

    for module in sorted(edges):
        visit(module, [])


#: The public entry points, whose keyword-only settings are their interface, not a list to shorten.
ENTRY_POINTS = {"stylize", "stylize_video", "probe", "grid", "sweep", "tune"}


def _shape_faults(source: str, where: str) -> list[str]:
    """Functions in ``source`` longer than 80 lines, or with more than 10 parameters."""
    import ast

    faults = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        a, entry = node.args, node.name in ENTRY_POINTS
        named = [p for p in (*a.posonlyargs, *a.args, *([] if entry else a.kwonlyargs)) if p.arg not in ("self", "cls")]
        count = len(named) + (a.vararg is not None) + (a.kwarg is not None and not entry)
        lines = node.end_lineno - node.lineno + 1  # type: ignore[operator]
        if lines > 80 or count > 10:
            faults.append(f"{where}:{node.lineno} {node.name}: {lines} lines, {count} parameters")
    return faults


def test_no_function_is_over_80_lines_or_10_parameters():
    faults = [f for p in sorted((ROOT / "src" / "nstyle").rglob("*.py")) for f in _shape_faults(p.read_text(), p.name)]
    assert not faults, "\n".join(faults)


def test_the_shape_check_finds_long_functions_and_long_argument_lists():
    long = "def f():\n" + "    x = 1\n" * 80
    wide = "def g(" + ", ".join(f"a{i}" for i in range(11)) + "): pass\n"
    entry = "def stylize(a, *, " + ", ".join(f"k{i}" for i in range(20)) + ", **options): pass\n"
    assert [f.split()[1] for f in _shape_faults(long + wide + entry, "x.py")] == ["f:", "g:"]
