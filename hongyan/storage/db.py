"""The :class:`Database` interface and its SQLite and PostgreSQL backends.

SQL is written once with ``?`` placeholders; the PostgreSQL backend rewrites them to ``$n``
(cached per statement). Booleans are stored as INTEGER 0/1 on both engines so that queries are
identical.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

Row = tuple[Any, ...]


class Executor(abc.ABC):
    """What both a database and a transaction can do."""

    @abc.abstractmethod
    async def execute(self, sql: str, *args: Any) -> int: ...

    @abc.abstractmethod
    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    @abc.abstractmethod
    async def fetchall(self, sql: str, *args: Any) -> list[Row]: ...

    async def fetchone(self, sql: str, *args: Any) -> Row | None:
        rows = await self.fetchall(sql, *args)
        return rows[0] if rows else None

    async def fetchval(self, sql: str, *args: Any) -> Any:
        row = await self.fetchone(sql, *args)
        return None if row is None else row[0]


class Database(Executor):
    dialect: str

    @abc.abstractmethod
    def transaction(self) -> contextlib.AbstractAsyncContextManager[Executor]: ...

    @abc.abstractmethod
    async def close(self) -> None: ...


# ---- SQLite -----------------------------------------------------------------------------------


class _SqliteExec(Executor):
    """Statements on one ``sqlite3`` connection, run directly on the event loop's thread."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, *args: Any) -> int:
        cur = self._conn.execute(sql, args)
        if cur.description is not None:
            cur.fetchall()
        return cur.rowcount

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._conn.executemany(sql, rows)

    async def fetchall(self, sql: str, *args: Any) -> list[Row]:
        return self._conn.execute(sql, args).fetchall()


class SqliteDatabase(Database):
    """The embedded default. Two ``sqlite3`` connections in WAL mode, called directly on the
    event loop's thread: one for reads, which see committed data and never wait for the
    writer, and one for writes, whose transactions are serialized by an asyncio lock (a
    transaction may span awaits, and nothing else may slip into it).

    Why not a thread (aiosqlite, the starting design): a primary-key read costs SQLite a few
    microseconds, a hop to a worker thread and back costs far more, and every query queued
    behind one thread. Measured on SCRAM logins (2,000 clients, a few small queries each):
    270 logins/s through aiosqlite, 1,514 logins/s with direct calls (docs/performance.md).

    ``synchronous=NORMAL`` in WAL mode: a committed transaction survives a process crash
    (``kill -9``); only an OS crash or power loss may lose the last ones."""

    dialect = "sqlite"

    def __init__(self, reader: sqlite3.Connection, writer: sqlite3.Connection) -> None:
        self._reader = _SqliteExec(reader)
        self._writer = _SqliteExec(writer)
        self._rconn = reader
        self._wconn = writer
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: str) -> SqliteDatabase:
        if path == ":memory:":
            # One shared in-memory database for both connections.
            path = f"file:hongyan-mem-{id(cls)}-{time.monotonic_ns()}?mode=memory&cache=shared"
        else:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        uri = path.startswith("file:")
        writer = sqlite3.connect(path, isolation_level=None, uri=uri, check_same_thread=False)
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON",
                       "busy_timeout=5000"):
            writer.execute(f"PRAGMA {pragma}")
        reader = sqlite3.connect(path, isolation_level=None, uri=uri, check_same_thread=False)
        for pragma in ("foreign_keys=ON", "busy_timeout=5000"):
            reader.execute(f"PRAGMA {pragma}")
        return cls(reader, writer)

    async def execute(self, sql: str, *args: Any) -> int:
        async with self._lock:
            return await self._writer.execute(sql, *args)

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        async with self.transaction() as tx:
            await tx.executemany(sql, rows)

    async def fetchall(self, sql: str, *args: Any) -> list[Row]:
        return await self._reader.fetchall(sql, *args)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Executor]:
        async with self._lock:
            self._wconn.execute("BEGIN IMMEDIATE")
            try:
                yield self._writer
            except BaseException:
                self._wconn.execute("ROLLBACK")
                raise
            self._wconn.execute("COMMIT")

    async def close(self) -> None:
        async with self._lock:
            self._rconn.close()
            self._wconn.close()


# ---- PostgreSQL -------------------------------------------------------------------------------

_QUOTED = re.compile(r"'(?:[^']|'')*'")


def to_dollar(sql: str) -> str:
    """Rewrite ``?`` placeholders to ``$1, $2…``; refuse a ``?`` inside a quoted literal."""
    for lit in _QUOTED.findall(sql):
        if "?" in lit:
            raise ValueError(f"a '?' inside a string literal is ambiguous: {sql!r}")
    out = []
    n = 0
    for ch in sql:
        if ch == "?":
            n += 1
            out.append(f"${n}")
        else:
            out.append(ch)
    return "".join(out)


class _PgExec(Executor):
    def __init__(self, conn: Any, cache: dict[str, str]) -> None:
        self._conn = conn
        self._cache = cache

    def _sql(self, sql: str) -> str:
        out = self._cache.get(sql)
        if out is None:
            out = self._cache[sql] = to_dollar(sql)
        return out

    async def execute(self, sql: str, *args: Any) -> int:
        q = self._sql(sql)
        if "RETURNING" in sql.upper():
            return len(await self._conn.fetch(q, *args))
        status = await self._conn.execute(q, *args)
        try:
            return int(str(status).rsplit(" ", 1)[-1])
        except ValueError:
            return 0

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self._conn.executemany(self._sql(sql), rows)

    async def fetchall(self, sql: str, *args: Any) -> list[Row]:
        return [tuple(r) for r in await self._conn.fetch(self._sql(sql), *args)]


class PostgresDatabase(Database):
    dialect = "postgresql"

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self._cache: dict[str, str] = {}

    @classmethod
    async def open(cls, url: str, pool_size: int) -> PostgresDatabase:
        import asyncpg

        pool = await asyncpg.create_pool(url, min_size=1, max_size=pool_size)
        return cls(pool)

    async def execute(self, sql: str, *args: Any) -> int:
        async with self._pool.acquire() as conn:
            return await _PgExec(conn, self._cache).execute(sql, *args)

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await _PgExec(conn, self._cache).executemany(sql, rows)

    async def fetchall(self, sql: str, *args: Any) -> list[Row]:
        async with self._pool.acquire() as conn:
            return await _PgExec(conn, self._cache).fetchall(sql, *args)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Executor]:
        async with self._pool.acquire() as conn, conn.transaction():
            yield _PgExec(conn, self._cache)

    async def close(self) -> None:
        await self._pool.close()


async def open_database(url: str, *, pool_size: int = 10) -> Database:
    """``sqlite:///path`` (relative or absolute), ``sqlite://:memory:``,
    ``postgresql://user@host:port/db`` (or ``postgres://``)."""
    if url.startswith("sqlite://"):
        rest = url[len("sqlite://"):]
        if rest == ":memory:":
            return await SqliteDatabase.open(":memory:")
        if not rest.startswith("/") or len(rest) < 2:
            raise ValueError(f"bad SQLite URL {url!r}: use sqlite:///relative/path.db or "
                             "sqlite:////absolute/path.db")
        return await SqliteDatabase.open(rest[1:])
    if url.startswith(("postgresql://", "postgres://")):
        return await PostgresDatabase.open(url, pool_size)
    raise ValueError(f"unknown database URL {url!r}: it must start with sqlite:// or "
                     "postgresql://")
