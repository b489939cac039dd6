"""The layering a newcomer sees in the folder tree holds in the imports: core imports nothing from
jobs, app, cli or bench; jobs nothing from app, cli or bench; bench nothing from cli, and from app
only in one place: ``studio bench gui`` measures the real window, so studio/bench/gui.py imports
``studio.app`` inside a function (never at module level: every other bench runs without Qt);
nothing outside app imports Qt; no import cycles between modules at import time (module level)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "studio"
QT = ("PySide6", "pyvistaqt", "superqt", "shiboken6", "PyQt5", "PyQt6")
# cli may reach app: `studio` with no command opens the window.
FORBIDDEN = {"core": ("studio.jobs", "studio.app", "studio.cli", "studio.bench"),
             "jobs": ("studio.app", "studio.cli", "studio.bench"), "bench": ("studio.app", "studio.cli")}
# The one exception, in a function body only: the GUI bench drives the window (studio.app.harness).
LAZY_ALLOWED = {"studio.bench.gui": ("studio.app",)}


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, top_level_only: bool):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            for a in node.names:  # "from studio.core import prior" imports studio.core.prior
                yield f"{node.module}.{a.name}"


def _files():
    return sorted(p for p in ROOT.rglob("*.py") if "__pycache__" not in p.parts)


def test_lower_layers_never_import_upper_ones_and_only_app_imports_qt():
    bad = []
    for path in _files():
        layer, module = path.relative_to(ROOT).parts[0], _module(path)
        top = set(_imports(path, top_level_only=True))
        for name in _imports(path, top_level_only=False):
            lazy_ok = name not in top and any(name == f or name.startswith(f + ".")
                                              for f in LAZY_ALLOWED.get(module, ()))
            if not lazy_ok and any(name == f or name.startswith(f + ".") for f in FORBIDDEN.get(layer, ())):
                bad.append(f"{module} imports {name}")
            if layer != "app" and name.split(".")[0] in QT:
                bad.append(f"{module} imports Qt ({name}) outside studio/app")
    assert not bad, "\n".join(bad)


def test_no_import_cycles_at_module_level():
    modules = {_module(p): p for p in _files()}
    graph = {m: sorted({n for n in _imports(p, top_level_only=True) if n in modules and n != m})
             for m, p in modules.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in graph[m]:
            if state.get(n) == 1:
                raise AssertionError("import cycle: " + " → ".join(stack[stack.index(n):] + [n]))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m)
