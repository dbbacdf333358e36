"""The layers, read from the source: ``xmpp/`` is sans-I/O (no event loop, socket, database,
clock or server code); ``server/`` imports no feature module; no feature module imports
``cluster/``. Should a crossing ever be accepted for a while, it is listed here, and the list
may only shrink: a new crossing fails, and so does an entry that no longer crosses."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "hongyan"

#: what sans-I/O code may not reach: I/O, concurrency, clocks, storage, the layers above it
NOT_IN_XMPP = ("asyncio", "socket", "ssl", "selectors", "select", "threading",
               "multiprocessing", "subprocess", "sqlite3", "asyncpg", "psycopg", "redis",
               "time", "hongyan.server", "hongyan.modules", "hongyan.storage",
               "hongyan.cluster", "hongyan.transport", "hongyan.config", "hongyan.cli")

#: crossings left to remove: (importing file under hongyan/, imported module)
SERVER_IMPORTS_MODULES: set[tuple[str, str]] = set()  # features are found by name
MODULES_IMPORT_CLUSTER: set[tuple[str, str]] = set()  # they use ModuleAPI's cluster calls


def imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth (``if TYPE_CHECKING:`` included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def crossings(layer: str, forbidden: str) -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    for path in sorted((ROOT / layer).rglob("*.py")):
        for name in imports(path):
            if name == forbidden or name.startswith(forbidden + "."):
                out.add((path.relative_to(ROOT).as_posix(), name))
    return out


def test_xmpp_is_sans_io() -> None:
    bad = {(f, n) for prefix in NOT_IN_XMPP for f, n in crossings("xmpp", prefix)}
    assert bad == set()


def test_irc_is_sans_io() -> None:
    bad = {(f, n) for prefix in NOT_IN_XMPP for f, n in crossings("irc", prefix)}
    assert bad == set()


def test_server_imports_no_feature_module_beyond_the_known_list() -> None:
    assert crossings("server", "hongyan.modules") == SERVER_IMPORTS_MODULES


def test_no_feature_module_imports_cluster_beyond_the_known_list() -> None:
    assert crossings("modules", "hongyan.cluster") == MODULES_IMPORT_CLUSTER


def module_imports(path: Path, known: set[str]) -> set[str]:
    """The hongyan modules a file imports, type-only imports (``if TYPE_CHECKING:``) and imports
    inside functions included: what any import-graph tool sees. ``from pkg import sub`` counts
    as importing ``pkg.sub``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = {f"{node.module}.{a.name}" for a in node.names} & known
            found.update(subs or ({node.module} & known))
    return found


def test_the_import_graph_has_no_cycle() -> None:
    """Not at run time, and not for the type checker either: each layer names only what is
    below it, and what it needs of what is above it is a Protocol of its own."""
    files = {".".join(p.relative_to(ROOT.parent).with_suffix("").parts).removesuffix(
        ".__init__"): p for p in ROOT.rglob("*.py")}
    known = set(files)
    graph = {m: module_imports(p, known) - {m} for m, p in files.items()}
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycle = [*path[path.index(n):], n]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n, [*path, n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
