"""The package's layout by role: no import circle, every package says what it may import, no
module grows past the size a reader can hold."""

from __future__ import annotations

import ast

from multisource.common.paths import PACKAGE_DIR
from multisource.common.provenance import _imported_modules

MAX_MODULE_LINES = 650


def _modules() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in PACKAGE_DIR.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        name = ".".join(parts)
        graph[name] = {m for m in _imported_modules(name, path) if m != name}
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph.get(node, ()):
            if other not in graph:
                continue
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_itself_back() -> None:
    assert _circles(_modules()) == []


def test_the_circle_finder_finds_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _circles(graph) == [["a", "b", "c"]]


def test_every_package_says_what_it_may_import() -> None:
    for init in PACKAGE_DIR.rglob("__init__.py"):
        if init.parent == PACKAGE_DIR:
            continue
        doc = " ".join((ast.get_docstring(ast.parse(init.read_text())) or "").split())
        assert "may import" in doc.lower() or "imports nothing" in doc.lower(), \
            f"{init.relative_to(PACKAGE_DIR)}: its docstring does not say what it may import"


def test_no_module_is_too_long_to_read() -> None:
    long = {str(p.relative_to(PACKAGE_DIR)): n for p in PACKAGE_DIR.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long == {}
