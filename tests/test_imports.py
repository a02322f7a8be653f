"""The house's import rules, read from the source (no import runs): no cycles, harma_core <- server <- tools, and
inside server the rooms point down: API -> search / indexing -> store -> harma_core."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _graph() -> dict[str, set[str]]:
    """module -> project modules it imports anywhere in its file (lazy imports inside functions included)."""
    mods = {}
    for pkg in ("harma_core", "server"):
        for p in (ROOT / pkg).rglob("*.py"):
            name = ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            mods[name] = p
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                subs = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in mods]
                names = subs if len(subs) == len(node.names) else [node.module, *subs]  # `from pkg import mod`
            else:
                continue
            graph[m] |= {n for n in names if n in mods and n != m}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while (w := stack.pop()) != v:
                comp.append(w)
            if comp:
                found.append(sorted([v, *comp]))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles_and_layers_point_one_way() -> None:
    graph = _graph()
    assert _cycles(graph) == []
    assert [(m, n) for m, deps in graph.items() for n in deps
            if m.startswith("harma_core") and n.startswith("server")] == []


ROOMS = ("server.store", "server.indexing", "server.search")


def _room(module: str) -> str:
    """The room a module lives in: harma_core, server.errors (shared), one of ROOMS, or server (the API)."""
    if module.startswith("harma_core") or module == "server.errors":
        return module.split(".")[0] if module.startswith("harma_core") else module
    return next((r for r in ROOMS if module == r or module.startswith(r + ".")), "server")


# room -> rooms it may import besides itself
ALLOWED = {
    "harma_core": set(),
    "server.errors": {"harma_core"},
    "server.store": {"harma_core", "server.errors"},
    "server.indexing": {"harma_core", "server.errors", "server.store"},
    "server.search": {"harma_core", "server.errors", "server.store"},
    "server": {"harma_core", "server.errors", *ROOMS},
}


def _against_the_flow(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    return sorted((m, n) for m, deps in graph.items() for n in deps
                  if _room(n) != _room(m) and _room(n) not in ALLOWED[_room(m)])


def test_server_rooms_import_downwards_only() -> None:
    assert _against_the_flow(_graph()) == []


def test_an_import_against_the_flow_is_caught() -> None:
    """The rule itself: a store module reaching up into tiling, or search into indexing, is reported."""
    graph = {"server.store.collection": {"server.indexing.tiling", "server.errors"},
             "server.search.search": {"server.indexing.pipeline", "server.store.store"},
             "server.indexing.pipeline": {"server.store.store"}, "server.api": {"server.search.search"}}
    assert _against_the_flow(graph) == [("server.search.search", "server.indexing.pipeline"),
                                        ("server.store.collection", "server.indexing.tiling")]


def test_every_room_says_what_it_holds() -> None:
    for room in ROOMS:
        doc = ast.get_docstring(ast.parse((ROOT / room.replace(".", "/") / "__init__.py").read_text()))
        assert doc and "Imports" in doc, room
