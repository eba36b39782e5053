"""DESIGN.md's layering for detection, read from the source (every import statement, at any
depth): resdet/d2 and resdet/tvdet never import each other, resdet/detection imports neither, and
no module of the three sits in an import loop."""

from __future__ import annotations

import ast
import os
from typing import Dict, List, Set

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGES = ("resdet.d2", "resdet.tvdet", "resdet.detection")


def _modules() -> Dict[str, str]:
    mods = {}
    for folder, _, files in os.walk(os.path.join(REPO, "resdet")):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(folder, f)
                name = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
                mods[name[: -len(".__init__")] if name.endswith(".__init__") else name] = path
    return mods


def _imports(name: str, path: str, mods: Dict[str, str]) -> Set[str]:
    """The resdet modules ``name`` imports (a name resolves to its longest module prefix)."""
    package = name if path.endswith("__init__.py") else name.rsplit(".", 1)[0]
    out = set()
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        names: List[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        for x in names:
            while x and x not in mods:
                x = x.rsplit(".", 1)[0] if "." in x else ""
            if x and x != name:
                out.add(x)
    return out


def _graph() -> Dict[str, Set[str]]:
    mods = _modules()
    return {m: _imports(m, p, mods) for m, p in mods.items()}


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_adapters_never_import_each_other_and_detection_imports_neither():
    graph = _graph()
    bad = [(m, d) for m, deps in graph.items() for d in deps
           if (_in(m, "resdet.tvdet") and _in(d, "resdet.d2"))
           or (_in(m, "resdet.d2") and _in(d, "resdet.tvdet"))
           or (_in(m, "resdet.detection") and (_in(d, "resdet.d2") or _in(d, "resdet.tvdet")))]
    assert bad == []


def test_no_detection_module_sits_in_an_import_loop():
    graph = _graph()
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    loops: List[List[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                loops.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    ours = [c for c in loops if any(_in(m, p) for m in c for p in PACKAGES)]
    assert ours == []
