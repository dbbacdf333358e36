"""Numbered schema migrations, declared per component (a module, or the core).

A component declares ``Migration("roster", 1, (ddl, ...))``, ``Migration("roster", 2, ...)``…;
:func:`migrate` applies those not recorded yet in ``schema_versions``. DDL is shared between
the engines except for a few placeholders rendered by :func:`render_ddl`.
"""

from __future__ import annotations

import re
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

from hongyan.storage.db import Database, Executor

_TYPES: dict[str, dict[str, str]] = {
    "sqlite": {"pk": "INTEGER PRIMARY KEY AUTOINCREMENT", "blob": "BLOB", "bigint": "INTEGER",
               "text": "TEXT"},
    "postgresql": {"pk": "BIGSERIAL PRIMARY KEY", "blob": "BYTEA", "bigint": "BIGINT",
                   "text": "TEXT"},
}
_PLACEHOLDER = re.compile(r"\{(\w+)\}")

#: Key of the PostgreSQL advisory lock taken while creating ``schema_versions`` ("Hong").
_LOCK_KEY = 0x486F6E67


@dataclass(frozen=True)
class Migration:
    component: str
    version: int
    statements: tuple[str, ...]


def render_ddl(sql: str, dialect: str) -> str:
    """Render the portable type placeholders for ``dialect`` ("sqlite" | "postgresql"):
    ``{pk}`` INTEGER PRIMARY KEY AUTOINCREMENT / BIGSERIAL PRIMARY KEY, ``{blob}`` BLOB / BYTEA,
    ``{bigint}`` INTEGER / BIGINT, ``{text}`` TEXT. An unknown ``{name}`` is a ValueError."""
    try:
        types = _TYPES[dialect]
    except KeyError:
        raise ValueError(f"unknown SQL dialect {dialect!r}") from None

    def sub(m: re.Match[str]) -> str:
        try:
            return types[m.group(1)]
        except KeyError:
            known = ", ".join("{" + k + "}" for k in types)
            raise ValueError(f"unknown DDL placeholder {m.group(0)} in {sql!r} "
                             f"(known: {known})") from None

    return _PLACEHOLDER.sub(sub, sql)


_TABLE = ("CREATE TABLE IF NOT EXISTS schema_versions (component TEXT NOT NULL, "
          "version INTEGER NOT NULL, applied_at {bigint} NOT NULL, "
          "PRIMARY KEY (component, version))")


async def _applied(ex: Executor, component: str, version: int) -> bool:
    row = await ex.fetchone("SELECT 1 FROM schema_versions WHERE component=? AND version=?",
                            component, version)
    return row is not None


async def migrate(db: Database, migrations: Iterable[Migration]) -> list[tuple[str, int]]:
    """Apply, in (component, version) order, each migration not applied yet, each in its own
    transaction together with its ``schema_versions`` row; return what was applied.

    Safe for several processes at once: on PostgreSQL each transaction takes an advisory
    transaction lock, then checks again whether another process applied it meanwhile (on
    SQLite ``BEGIN IMMEDIATE`` serializes writers, and the check is repeated the same way)."""
    dialect = db.dialect
    pg = dialect == "postgresql"
    async with db.transaction() as tx:
        if pg:
            await tx.execute("SELECT pg_advisory_xact_lock(?)", _LOCK_KEY)
        await tx.execute(render_ddl(_TABLE, dialect))
    done: list[tuple[str, int]] = []
    for m in sorted(migrations, key=lambda m: (m.component, m.version)):
        if await _applied(db, m.component, m.version):
            continue
        async with db.transaction() as tx:
            if pg:
                await tx.execute("SELECT pg_advisory_xact_lock(?)",
                                 zlib.crc32(m.component.encode()))
            if await _applied(tx, m.component, m.version):
                continue
            for stmt in m.statements:
                await tx.execute(render_ddl(stmt, dialect))
            await tx.execute("INSERT INTO schema_versions (component, version, applied_at) "
                             "VALUES (?,?,?)", m.component, m.version, int(time.time()))
        done.append((m.component, m.version))
    return done
