"""The layers, read from the source: ``xmpp/`` is sans-I/O (no event loop, socket, database,
clock or server code); ``server/`` imports no feature module; no feature module imports
``cluster/``. The last two do not hold yet (the "Seams" issue): the imports that still cross
are listed here, and the list may only shrink: a new crossing fails, and so does an entry
that no longer crosses, so the list stays exactly what is left to do."""

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
SERVER_IMPORTS_MODULES = {
    ("server/node.py", "hongyan.modules"),  # DEFAULT_MODULES: the composition belongs above
}
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


def test_server_imports_no_feature_module_beyond_the_known_list() -> None:
    assert crossings("server", "hongyan.modules") == SERVER_IMPORTS_MODULES


def test_no_feature_module_imports_cluster_beyond_the_known_list() -> None:
    assert crossings("modules", "hongyan.cluster") == MODULES_IMPORT_CLUSTER
