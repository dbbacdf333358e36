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
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def execute(self, sql: str, *args: Any) -> int:
        cur = await self._conn.execute(sql, args)
        try:
            if cur.description is not None:
                await cur.fetchall()
            return int(cur.rowcount)
        finally:
            await cur.close()

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self._conn.executemany(sql, rows)

    async def fetchall(self, sql: str, *args: Any) -> list[Row]:
        cur = await self._conn.execute(sql, args)
        try:
            return [tuple(r) for r in await cur.fetchall()]
        finally:
            await cur.close()


class SqliteDatabase(Database):
    """One aiosqlite connection; WAL with ``synchronous=NORMAL`` (a committed transaction
    survives a process crash such as ``kill -9``; only an OS crash may lose the last ones).
    Statements outside a transaction autocommit; ``transaction()`` is exclusive
    (``BEGIN IMMEDIATE``) and serialized by a lock."""

    dialect = "sqlite"

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self._lock = asyncio.Lock()
        self._exec = _SqliteExec(conn)

    @classmethod
    async def open(cls, path: str) -> SqliteDatabase:
        import aiosqlite

        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(path, isolation_level=None)
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON",
                       "busy_timeout=10000"):
            await conn.execute(f"PRAGMA {pragma}")
        return cls(conn)

    async def execute(self, sql: str, *args: Any) -> int:
        async with self._lock:
            return await self._exec.execute(sql, *args)

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        async with self._lock:
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                await self._exec.executemany(sql, rows)
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise
            await self._conn.execute("COMMIT")

    async def fetchall(self, sql: str, *args: Any) -> list[Row]:
        async with self._lock:
            return await self._exec.fetchall(sql, *args)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Executor]:
        async with self._lock:
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._exec
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise
            await self._conn.execute("COMMIT")

    async def close(self) -> None:
        await self._conn.close()


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
