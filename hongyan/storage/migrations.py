"""Numbered schema migrations, declared per component (a module, or the core)."""

from __future__ import annotations

import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

from hongyan.storage.db import Database, Executor

_TYPES = {
    "sqlite": {"pk": "INTEGER PRIMARY KEY AUTOINCREMENT", "blob": "BLOB", "bigint": "INTEGER",
               "text": "TEXT"},
    "postgresql": {"pk": "BIGSERIAL PRIMARY KEY", "blob": "BYTEA", "bigint": "BIGINT",
                   "text": "TEXT"},
}


@dataclass(frozen=True)
class Migration:
    component: str
    version: int
    statements: tuple[str, ...]


def render_ddl(sql: str, dialect: str) -> str:
    out = sql
    for key, value in _TYPES[dialect].items():
        out = out.replace("{" + key + "}", value)
    return out


_TABLE = ("CREATE TABLE IF NOT EXISTS schema_versions (component TEXT NOT NULL, "
          "version INTEGER NOT NULL, applied_at {bigint} NOT NULL, "
          "PRIMARY KEY (component, version))")


async def _applied(ex: Executor, component: str, version: int) -> bool:
    row = await ex.fetchone("SELECT 1 FROM schema_versions WHERE component=? AND version=?",
                            component, version)
    return row is not None


async def migrate(db: Database, migrations: Iterable[Migration]) -> list[tuple[str, int]]:
    """Apply, in (component, version) order, each migration not applied yet; each in its own
    transaction with its version row. Safe for several processes at once on PostgreSQL."""
    dialect = db.dialect
    pg = dialect == "postgresql"
    async with db.transaction() as tx:
        if pg:
            await tx.execute("SELECT pg_advisory_xact_lock(?)", 0x486F6E67)
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
