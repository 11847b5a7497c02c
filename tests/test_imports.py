"""The import graph of src/crossroads has no circle (TYPE_CHECKING, in-function imports too)."""

from __future__ import annotations

import ast
from collections import deque
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent.parent / "src" / "crossroads"


def module_names(root: Path = PACKAGE_ROOT) -> dict[str, Path]:
    """Every module under the package, a package's `__init__` named after the package."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _resolve(name: str, known: set[str]) -> str | None:
    """The longest known module `name` starts with (`a.b.Thing` -> `a.b`)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in known:
            return candidate
        parts.pop()
    return None


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """The crossroads modules `module` imports anywhere in its body."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package, up level - 1 more
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, base]) if base else ".".join(package)
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            resolved = _resolve(target, known) if target.split(".")[0] == "crossroads" else None
            if resolved and resolved != module:
                found.add(resolved)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = module_names()
    known = set(modules)
    return {name: imports_of(name, path, known) for name, path in modules.items()}


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative; only components that hold a circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph.get(node, ()):
                    components.append(sorted(component))
    return components


def shortest_cycle(graph: dict[str, set[str]], start: str, within: set[str]) -> list[str]:
    """The shortest path start -> ... -> start inside one component (breadth first)."""
    previous: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in sorted(graph[node] & within):
            if child == start:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                return [*reversed(path), start]
            if child not in previous:
                previous[child] = node
                queue.append(child)
    return [start]


def cycles(graph: dict[str, set[str]]) -> list[str]:
    """One readable circle per module caught in one, deduplicated: 'a -> b -> a'."""
    seen: set[tuple[str, ...]] = set()
    lines = []
    for component in strongly_connected(graph):
        for member in component:
            cycle = shortest_cycle(graph, member, set(component))
            body = cycle[:-1]
            turn = body.index(min(body))
            key = tuple(body[turn:] + body[:turn])
            if key not in seen:
                seen.add(key)
                lines.append(" -> ".join([*key, key[0]]))
    return sorted(lines)


def test_cycle_finder_on_a_toy_graph() -> None:
    graph = {
        "a": {"b"},
        "b": {"c"},
        "c": {"a", "d"},
        "d": set(),
        "e": {"e"},
        "f": {"g"},
        "g": {"f"},
    }
    assert sorted(map(tuple, strongly_connected(graph))) == [("a", "b", "c"), ("e",), ("f", "g")]
    assert cycles(graph) == ["a -> b -> c -> a", "e -> e", "f -> g -> f"]


def test_relative_type_checking_and_local_imports_count(tmp_path: Path) -> None:
    root = tmp_path / "crossroads"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "top.py").write_text("def f():\n    import crossroads.sub.leaf\n")
    (root / "sub" / "__init__.py").write_text("from . import leaf\nfrom .leaf import thing\n")
    (root / "sub" / "leaf.py").write_text(
        "from typing import TYPE_CHECKING\nfrom ..top import f\n"
        "if TYPE_CHECKING:\n    from crossroads.sub import x\n"
    )
    modules = module_names(root)
    graph = {name: imports_of(name, path, set(modules)) for name, path in modules.items()}
    assert graph == {
        "crossroads": set(),
        "crossroads.top": {"crossroads.sub.leaf"},
        "crossroads.sub": {"crossroads.sub.leaf"},
        "crossroads.sub.leaf": {"crossroads.top", "crossroads.sub"},
    }
    assert cycles(graph) == [
        "crossroads.sub -> crossroads.sub.leaf -> crossroads.sub",
        "crossroads.sub.leaf -> crossroads.top -> crossroads.sub.leaf",
    ]


def test_graph_resolves_from_imports_to_modules() -> None:
    graph = import_graph()
    assert "crossroads.catalog" in graph  # a package's __init__ is a module
    assert (
        "crossroads.catalog.catalog" in graph["crossroads.catalog"]
    )  # from .catalog import Catalog
    assert "crossroads.routing.candidates" in graph["crossroads.routing.plan"]
    assert (
        "crossroads.errors" in graph["crossroads.routing.plan"]
    )  # from crossroads.errors import GatewayError


def test_no_import_cycles() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles in src/crossroads:\n  " + "\n  ".join(found)
