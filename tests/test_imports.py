"""The shape of the code, read from its imports: three libraries that import none of each other, an application
split into rooms that meet only at each other's front door, no import cycle, and no long module without a reason.

Imports are read with ``ast`` from the source (every ``import`` statement, also those inside functions and under
``if TYPE_CHECKING:``), so nothing is executed and a lazy or type-only import counts like any other.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LIBRARIES = ("ledger", "p2pnet", "compute")
PACKAGES = (*LIBRARIES, "bootstrap")
# What each library may import besides the standard library and itself (DESIGN.md's "may import" column).
THIRD_PARTY = {
    "ledger": {"msgpack", "nacl"},
    "p2pnet": {"trio", "msgpack", "nacl", "noise"},
    "compute": {"numpy", "sklearn", "torch", "msgpack", "threadpoolctl"},
}
MAX_LINES = 500  # the application's rooms: ~500 lines a module
MAX_LIBRARY_LINES = 600
LONG_MODULE_MARK = "Why this file is long:"


def modules() -> dict[str, Path]:
    """Every module of the four packages by dotted name (a package by its own name, for its ``__init__``)."""
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


MODULES = modules()


def imported(name: str, *, lazy: bool = True) -> Iterator[tuple[str, int]]:
    """The dotted names ``name``'s module imports, with their line numbers; without ``lazy``, only those its
    module body runs on import (none inside a function). ``from pkg import sub`` names the package and, where
    ``sub`` is a submodule, the submodule too (both are loaded)."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if not lazy and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            yield module, node.lineno
            for a in node.names:
                if f"{module}.{a.name}" in MODULES:
                    yield f"{module}.{a.name}", node.lineno
        stack.extend(ast.iter_child_nodes(node))


def top(dotted: str) -> str:
    return dotted.split(".")[0]


def room(dotted: str) -> str | None:
    """The application room a ``bootstrap`` module belongs to (None for the shared top-level modules)."""
    parts = dotted.split(".")
    if parts[0] != "bootstrap" or len(parts) < 2:
        return None
    return parts[1] if f"bootstrap.{parts[1]}" in MODULES and MODULES[f"bootstrap.{parts[1]}"].name == "__init__.py" \
        else None


@pytest.mark.parametrize("library", LIBRARIES)
def test_a_library_imports_only_the_stdlib_its_allowed_packages_and_itself(library: str) -> None:
    allowed = {library, *THIRD_PARTY[library]} | set(sys.stdlib_module_names)
    bad = [f"{name}:{line} imports {dep}" for name in MODULES if top(name) == library
           for dep, line in imported(name) if top(dep) not in allowed]
    assert not bad, "\n".join(bad)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles of ``graph`` (module -> modules it imports): its strongly connected components of two or
    more modules, by Tarjan's algorithm."""
    # Tarjan's strongly connected components: any component of two or more modules is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def graph_of(names: list[str], *, lazy: bool) -> dict[str, set[str]]:
    return {n: {d for d, _ in imported(n, lazy=lazy) if d in names and d != n} for n in names}


def test_no_import_cycle_anywhere_lazy_and_type_only_imports_included() -> None:
    found = cycles(graph_of(list(MODULES), lazy=True))
    assert not found, f"import cycles: {found}"


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_rooms_meet_only_at_each_others_front_door() -> None:
    """A module of one room imports another room only as ``bootstrap.<room>`` (what its ``__init__`` exports),
    never a module inside it; and no room imports the node's wiring (the node imports the rooms, not back)."""
    bad = []
    for name in MODULES:
        mine = room(name)
        if top(name) != "bootstrap":
            continue
        for dep, line in imported(name):
            theirs = room(dep)
            if theirs is None or theirs == mine:
                continue
            if dep != f"bootstrap.{theirs}":
                bad.append(f"{name}:{line} reaches into {dep}")
            if theirs == "node" and mine not in ("cli",):
                bad.append(f"{name}:{line} imports the node's wiring")
    assert not bad, "\n".join(bad)


def test_every_room_says_what_lives_there() -> None:
    rooms = [name for name, path in MODULES.items() if room(name) == name.split(".")[-1] and name.count(".") == 1]
    assert len(rooms) >= 8, rooms
    missing = [r for r in rooms if not ast.get_docstring(ast.parse(MODULES[r].read_text()))]
    assert not missing, f"rooms without a module docstring: {missing}"


def test_no_long_module_without_a_reason_at_its_top() -> None:
    long = []
    for name, path in MODULES.items():
        limit = MAX_LINES * 1.1 if top(name) == "bootstrap" else MAX_LIBRARY_LINES
        text = path.read_text()
        lines = text.count("\n")
        doc = ast.get_docstring(ast.parse(text)) or ""
        if lines > limit and LONG_MODULE_MARK not in doc:
            long.append(f"{name}: {lines} lines")
    assert not long, f"long modules with no '{LONG_MODULE_MARK}' in the docstring: {long}"


def test_the_walker_sees_lazy_imports_and_submodules() -> None:
    """The checks above would pass vacuously if the walker missed imports: it must see a function-level import
    and resolve ``from pkg import submodule`` to the submodule."""
    deps = {dep for dep, _ in imported("bootstrap.node.node")}
    assert "bootstrap.api" in deps  # imported inside Node._start_api
    deps = {dep for dep, _ in imported("bootstrap.api.app")}
    assert {"bootstrap.api.chain", "bootstrap.api.jobs"} <= deps
    deps = {dep for dep, _ in imported("compute.models")}
    assert {"compute.models.kmeans", "compute.models.base"} <= deps  # from compute.models import kmeans, lazily
