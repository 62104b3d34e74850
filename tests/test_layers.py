"""The import graph of the package: dependencies point down (front ends -> inverter -> models -> ops), no circle.

Module-level imports are read from the source (``ast``), resolved to modules of the package (an import of
``pkg.mod`` also runs ``pkg/__init__``); imports inside functions (deferred on purpose, e.g. the command line's
lazy loading) and under ``TYPE_CHECKING`` are not edges at import time and are left out.
"""

from __future__ import annotations

import ast
from pathlib import Path

import hyperinverter

ROOT = Path(hyperinverter.__file__).parent
PACKAGE = "hyperinverter"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _top_level_imports(tree: ast.Module, deferred: bool = False):
    """Import nodes executed when the module is imported (module body, also inside try/if, not in defs);
    ``deferred``: every import statement, those inside functions too (still not ``TYPE_CHECKING`` ones)."""
    if deferred:
        checking = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and _is_type_checking(node)
                    for child in node.body for n in ast.walk(child)}
        yield from (n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) and id(n) not in checking)
        return
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and not _is_type_checking(node):
            stack += node.body + node.orelse
        elif isinstance(node, ast.Try):
            stack += node.body + node.orelse + node.finalbody + [n for h in node.handlers for n in h.body]


def import_graph(deferred: bool = False) -> dict[str, set[str]]:
    """``{module: modules it imports}``; ``deferred`` adds the imports inside functions."""
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}

    def add(src: str, target: str) -> None:
        # importing a.b.c runs a/__init__, a/b/__init__ and a/b/c; a module's own parent packages are always
        # imported before it, so they are not edges
        parts = target.split(".")
        for i in range(2, len(parts) + 1):
            name = ".".join(parts[:i])
            if name in modules and name != src and not src.startswith(name + "."):
                graph[src].add(name)

    for name, path in modules.items():
        is_pkg = path.name == "__init__.py"
        tree = ast.parse(path.read_text())
        for node in _top_level_imports(tree, deferred):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith(PACKAGE + "."):
                        add(name, alias.name)
                continue
            if node.level:
                base = name.split(".")
                base = base if is_pkg else base[:-1]
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.startswith(PACKAGE):
                target = node.module
            else:
                continue
            add(name, target)
            for alias in node.names:  # "from pkg import module"
                if f"{target}.{alias.name}" in modules:
                    add(name, f"{target}.{alias.name}")
    return graph


def find_cycle(graph: dict[str, set[str]]):
    """One cycle as a list of modules, or None."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str):
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_import_graph_has_no_circle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_no_circle_through_deferred_imports():
    """Imports inside functions are dependencies too: no module may reach back to one that imports it."""
    cycle = find_cycle(import_graph(deferred=True))
    assert cycle is None, "import circle (deferred imports included): " + " -> ".join(cycle)


def test_the_checker_finds_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_models_do_not_import_front_ends():
    """The layers below the inverter never import the command line, the web page, training or evaluation."""
    graph = import_graph()
    low = ("hyperinverter.ops", "hyperinverter.stylegan2", "hyperinverter.encoders", "hyperinverter.hypernet",
           "hyperinverter.checkpoints", "hyperinverter.inverter")
    high = ("hyperinverter.cli", "hyperinverter.serve", "hyperinverter.train", "hyperinverter.evaluation",
            "hyperinverter.demo", "hyperinverter.convert", "hyperinverter.video")
    bad = sorted((m, t) for m, targets in graph.items() if m.startswith(low)
                 for t in targets if t.startswith(high))
    assert not bad, bad
