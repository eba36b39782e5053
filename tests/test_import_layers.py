"""No import loop among resdet's modules, and dependencies point down the layers of DESIGN.md.

Every ``import`` and ``from ... import`` of every module under ``resdet/`` is read with ``ast``
(imports inside functions too: a lazy import is still a dependency, and a loop of lazy imports
is still a loop). ``from resdet.pkg import name`` depends on ``resdet.pkg.name`` when that is a
module, else on ``resdet.pkg`` (its ``__init__``). Importing ``resdet.pkg.mod`` is not counted as
importing ``resdet.pkg``'s ``__init__`` (every submodule would otherwise loop through it).

KNOWN_CYCLES and KNOWN_UPWARD list what other branches are restructuring now; the lead shrinks
them after merging. A test fails when a listed exception no longer occurs, so the lists only
shrink.
"""

import ast
import os
from typing import Dict, List, Set, Tuple

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
PACKAGE = os.path.join(ROOT, "resdet")

# DESIGN.md "Layers", top to bottom; a module may import its own layer and those below.
# resdet.benchmark, resdet.selfcheck and resdet.export drive everything (tools' libraries);
# pretrain is an entry point beside the detection adapters; cli (run_main) and errors sit below
# everything.
LAYERS: List[Tuple[str, ...]] = [
    ("resdet.benchmark", "resdet.selfcheck", "resdet.export"),
    ("resdet.train_net", "resdet.train_detection"),
    ("resdet.d2", "resdet.tvdet", "resdet.pretrain"),
    ("resdet.reports",),
    ("resdet.detection",),
    ("resdet.engine",),
    ("resdet.evaluation",),
    ("resdet.data",),
    ("resdet.checkpoint",),
    ("resdet.modeling",),
    ("resdet.config",),
    ("resdet.cli", "resdet.errors", "resdet"),
]
# DESIGN.md: the two detection adapters never import each other.
NEVER = {("resdet.d2", "resdet.tvdet"), ("resdet.tvdet", "resdet.d2")}

# (importer, imported) pairs of modules other branches are moving now (issue 8: one detection
# layer; checkpoint and pretraining refactors).
KNOWN_UPWARD: Set[Tuple[str, str]] = {
    # Top-1/top-5 evaluation gathers over processes with the training engine's comm helpers.
    ("resdet.evaluation.classification", "resdet.engine.comm"),
}
# Sorted module lists of strongly connected components that are known loops (none since i11's
# data catalog change was merged).
KNOWN_CYCLES: Set[Tuple[str, ...]] = set()


def _module_name(path: str) -> str:
    rel = os.path.relpath(path, ROOT)[: -len(".py")].replace(os.sep, ".")
    return rel[: -len(".__init__")] if rel.endswith(".__init__") else rel


def _modules() -> Dict[str, str]:
    found = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                found[_module_name(path)] = path
    return found


def _resolve_relative(module: str, is_package: bool, level: int, target: str) -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join(base + ([target] if target else []))


def import_graph() -> Dict[str, Set[str]]:
    """``{module: {resdet modules it imports}}`` for every module under resdet/."""
    modules = _modules()
    graph: Dict[str, Set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), filename=path)
        is_package = path.endswith("__init__.py")
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = _resolve_relative(module, is_package, node.level, base)
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.append(sub if sub in modules else base)
            for target in targets:
                while target and target not in modules:  # import resdet.x.y.z of a name
                    target = target.rpartition(".")[0]
                if target and target.startswith("resdet") and target != module:
                    graph[module].add(target)
    return graph


def strongly_connected(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Tarjan's algorithm: the components with more than one module (the import loops)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    loops: List[List[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return loops


def _layer(module: str) -> Tuple[int, str]:
    """(rank, group) of ``module``: the longest matching prefix in LAYERS; rank 0 is the top."""
    best = (-1, "", "")
    for rank, group in enumerate(LAYERS):
        for prefix in group:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(
                    best[2]):
                best = (rank, prefix, prefix)
    if best[0] < 0:
        raise AssertionError(f"{module} is in no layer of LAYERS; add its package there.")
    return best[0], best[1]


def upward_imports(graph: Dict[str, Set[str]]) -> Set[Tuple[str, str]]:
    """(importer, imported) pairs where a module imports one of a higher layer or a forbidden
    sibling."""
    bad = set()
    for module, targets in graph.items():
        rank, group = _layer(module)
        for target in targets:
            target_rank, target_group = _layer(target)
            if target_rank < rank or (group, target_group) in NEVER:
                bad.add((module, target))
    return bad


def test_the_graph_sees_imports():
    graph = import_graph()
    # from-imports of names, of submodules, lazy imports inside functions
    assert "resdet.config.choices" in graph["resdet.modeling.layers"]
    assert "resdet.modeling.arch" in graph["resdet.modeling.resnet"]
    assert "resdet.config.merging" in graph["resdet.config.node"]
    assert "resdet.errors" in graph["resdet.config.merging"]
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [
        ["a", "b", "c"]]


def test_no_import_loops():
    loops = {tuple(c) for c in strongly_connected(import_graph())}
    assert sorted(loops - KNOWN_CYCLES) == [], "new import loop(s)"
    assert sorted(KNOWN_CYCLES - loops) == [], "fixed: remove from KNOWN_CYCLES"


def test_dependencies_point_down_the_layers():
    bad = upward_imports(import_graph())
    assert sorted(bad - KNOWN_UPWARD) == [], "imports of a higher layer (DESIGN.md)"
    assert sorted(KNOWN_UPWARD - bad) == [], "fixed: remove from KNOWN_UPWARD"


def test_config_and_modeling_import_nothing_above_them():
    graph = import_graph()
    for module, targets in graph.items():
        if module.startswith("resdet.config"):
            assert all(t.startswith(("resdet.config", "resdet.errors")) for t in targets), module
        if module.startswith("resdet.modeling"):
            assert all(t.startswith(("resdet.modeling", "resdet.config", "resdet.errors"))
                       for t in targets), module


def test_config_package_imports_in_one_direction():
    order = ["resdet.config.choices", "resdet.config.detectron2_keys", "resdet.config.merging",
             "resdet.config.node",
             "resdet.config.defaults", "resdet.config.loading"]
    graph = import_graph()
    for i, module in enumerate(order):
        inside = {t for t in graph[module] if t.startswith("resdet.config")}
        assert inside <= set(order[:i]), module
        assert graph[module] - inside <= {"resdet.errors"}, module
