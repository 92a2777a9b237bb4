"""The package's layers: every import, at module level or inside a function, points to the same
layer or one below, and no set of modules imports itself round a circle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "dahash"

# Bottom to top. A module belongs to the longest package or module listed that holds it; the CLI
# and the package's front door (``dahash`` itself, its __init__) sit on top.
LAYERS: list[tuple[str, ...]] = [
    ("dahash.errors", "dahash.io", "dahash.isolation", "dahash.validation", "dahash.codes", "dahash.cores",
     "dahash.selection_grids", "dahash.executors", "dahash.locks"),
    ("dahash.data",),
    ("dahash.images",),
    ("dahash.losses", "dahash.models", "dahash.metrics", "dahash.index", "dahash.shallow", "dahash.hashing"),
    ("dahash.training",),
    ("dahash.runs",),
    ("dahash.experiments", "dahash.retrieval"),
    ("dahash.cli", "dahash.__main__", "dahash"),
]


def layer_of(module: str) -> int:
    """The layer of ``module``: that of the longest listed name that is it or a package holding it."""
    best, level = -1, -1
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            holds = module.startswith(prefix + ".") and prefix != "dahash"
            if (module == prefix or holds) and len(prefix) > best:
                best, level = len(prefix), i
    if level < 0:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS")
    return level


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, root: Path = PACKAGE) -> set[str]:
    """The package modules ``path`` imports, anywhere in it (``from a.b import c`` counts as
    ``a.b.c`` when c is a module, else as ``a.b``)."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == root.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != root.name:
                continue
            for alias in node.names:
                sub = root.parent / (target + "." + alias.name).replace(".", "/")
                found.add(target + "." + alias.name if sub.with_suffix(".py").is_file() or sub.is_dir()
                          else target)
    found.discard(name)
    return found


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    return {module_name(p, root): imports_of(p, root) for p in sorted(root.rglob("*.py"))}


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """``a -> b`` for every import of a higher layer. ``from dahash import DAH`` imports the front door
    (``dahash`` itself, top layer), which hands out names from every layer: below it, that is an
    upward import too."""
    return sorted(f"{a} (layer {layer_of(a)}) -> {b} (layer {layer_of(b)})"
                  for a, deps in graph.items() for b in deps
                  if layer_of(b) > layer_of(a))


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected sets of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_module_has_a_layer() -> None:
    for module in import_graph():
        layer_of(module)


def test_no_import_climbs_a_layer() -> None:
    assert upward_imports(import_graph()) == []


def test_no_circle() -> None:
    # Package __init__ files re-export their modules, so they are left out of the circle search.
    graph = {m: {d for d in deps if not (PACKAGE.parent / d.replace(".", "/")).is_dir()}
             for m, deps in import_graph().items() if not (PACKAGE.parent / m.replace(".", "/")).is_dir()}
    assert circles(graph) == []


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_checks_catch_an_upward_import_and_a_circle(tmp_path: Path) -> None:
    """The checks fail on a package where training imports a run module, inside a function as well
    as at the top, or a name from the package's front door, and two modules import each other."""
    root = tmp_path / "dahash"
    _write(root, {"__init__.py": "", "training/__init__.py": "", "runs/__init__.py": "",
                  "training/trainer.py": "def f():\n    from dahash.runs.run import go\n",
                  "training/optim.py": "from ..runs import run\n",
                  "training/methods.py": "def g():\n    from dahash import DAH\n",
                  "runs/run.py": "from dahash.training.trainer import f\ndef go(): pass\n",
                  "errors.py": "from dahash.io import x\n", "io.py": "from .errors import y\n"})
    graph = import_graph(root)
    assert upward_imports(graph) == [
        "dahash.training.methods (layer 4) -> dahash (layer 7)",
        "dahash.training.optim (layer 4) -> dahash.runs.run (layer 5)",
        "dahash.training.trainer (layer 4) -> dahash.runs.run (layer 5)",
    ]
    assert circles(graph) == [["dahash.errors", "dahash.io"], ["dahash.runs.run", "dahash.training.trainer"]]
    with pytest.raises(AssertionError, match="dahash.nowhere is in no layer"):
        layer_of("dahash.nowhere")


def test_no_module_imports_another_modules_private_names() -> None:
    """``from dahash.a import _helper`` couples a module to another's internals: make it public."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("dahash")):
                found += [f"{module_name(path)}: {node.module}.{a.name}" for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__")]
    assert found == []
