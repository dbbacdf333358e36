"""The :class:`Database` interface and its SQLite and PostgreSQL backends.

SQL is written once with ``?`` placeholders; the PostgreSQL backend rewrites them to ``$n``
(once per distinct statement, cached), and refuses a ``?`` inside a quoted literal or
identifier rather than guess.

Values: ``str``, ``int``, ``float``, ``bytes`` (BLOB on SQLite, BYTEA on PostgreSQL), ``None``
and ``bool``. Booleans are stored as INTEGER 0/1 on both engines, so the queries are identical:
declare the column INTEGER, pass ``True``/``False`` (or 1/0) and read back 1/0.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import functools
import re
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

from hongyan.storage.writer import WriterProcess

Row = tuple[Any, ...]


class Executor(abc.ABC):
    """What both a database and a transaction can do."""

    @abc.abstractmethod
    async def execute(self, sql: str, *args: Any) -> int:
        """Run one statement; return the number of rows it changed (or returned)."""

    @abc.abstractmethod
    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement once per parameter row (atomically, outside a transaction)."""

    @abc.abstractmethod
    async def fetchall(self, sql: str, *args: Any) -> list[Row]: ...

    async def fetchone(self, sql: str, *args: Any) -> Row | None:
        rows = await self.fetchall(sql, *args)
        return rows[0] if rows else None

    async def fetchval(self, sql: str, *args: Any) -> Any:
        """The first column of the first row, or None when there is no row."""
        row = await self.fetchone(sql, *args)
        return None if row is None else row[0]


#: What ``Database.transaction()`` yields.
Connection = Executor


class Database(Executor):
    """A database: statements outside :meth:`transaction` autocommit one by one."""

    dialect: str  # "sqlite" | "postgresql"

    async def bulk_insert(self, sql: str, rows: Sequence[Sequence[Any]],
                          expand: Callable[[Any], Sequence[Any]] | None = None) -> None:
        """``executemany`` for appends that nothing on the event loop waits for but their
        owner (archives): atomically, like :meth:`executemany`. An SQLite file runs them in a
        writer process (:mod:`hongyan.storage.writer`) so that the loop never does that I/O;
        elsewhere they are an ``executemany``. ``expand`` (a module-level function: it is
        pickled by name) makes each statement's parameters of a row where the rows are
        written, so that the event loop queues only what it must."""
        await self.executemany(sql, rows if expand is None else [expand(r) for r in rows])

    @abc.abstractmethod
    def transaction(self) -> contextlib.AbstractAsyncContextManager[Executor]:
        """``async with db.transaction() as tx:`` — commit on success, roll back on any
        exception (cancellation included). Use ``tx``, not ``db``, inside the block."""

    @abc.abstractmethod
    async def close(self) -> None: ...


# ---- SQLite -----------------------------------------------------------------------------------

_WRITE_WORD = re.compile(
    r"\b(INSERT|UPDATE|DELETE|REPLACE|RETURNING|CREATE|DROP|ALTER|PRAGMA|VACUUM|ATTACH|"
    r"DETACH|REINDEX|ANALYZE|BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE)\b", re.IGNORECASE)


@functools.lru_cache(maxsize=4096)
def _is_read_only(sql: str) -> bool:
    """Whether a statement surely only reads (may run on the reader connection). When in
    doubt, no: a write sent to the reader would wait for the writer's lock synchronously, on
    the event loop, while the writer's transaction waits for the loop."""
    head = sql.lstrip().split(None, 1)
    if not head or head[0].upper() not in ("SELECT", "WITH", "VALUES", "EXPLAIN"):
        return False
    return _WRITE_WORD.search(sql) is None


class _SqliteExec(Executor):
    """Statements on one ``sqlite3`` connection, run directly on the event loop's thread."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, *args: Any) -> int:
        cur = self._conn.execute(sql, args)
        if cur.description is not None:
            cur.fetchall()  # run a RETURNING statement to completion
        return max(cur.rowcount, 0)

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._conn.executemany(sql, rows)

    async def fetchall(self, sql: str, *args: Any) -> list[Row]:
        return self._conn.execute(sql, args).fetchall()

    async def fetchone(self, sql: str, *args: Any) -> Row | None:
        cur = self._conn.execute(sql, args)
        try:
            row: Row | None = cur.fetchone()
            if row is not None and cur.description is not None and not _is_read_only(sql):
                cur.fetchall()  # finish a RETURNING statement so that it takes effect
            return row
        finally:
            cur.close()


class SqliteDatabase(Database):
    """The embedded default. Two ``sqlite3`` connections in WAL mode, called directly on the
    event loop's thread: one for reads, which see committed data and never wait for the
    writer, and one for writes, whose use is serialized by an asyncio lock — a transaction
    (``BEGIN IMMEDIATE``) may span awaits, and nothing else may slip into it; a plain
    ``execute`` outside a transaction waits for it, then autocommits.

    Why not a thread (aiosqlite, the starting design): a primary-key read costs SQLite a few
    microseconds, a hop to a worker thread and back costs far more, and every query queued
    behind one thread. Measured on SCRAM logins (2,000 clients, a few small queries each):
    270 logins/s through aiosqlite, 1,514 logins/s with direct calls (docs/performance.md).
    The price: a long query blocks the loop while it runs, and so does another *process*
    holding the file's write lock (up to ``busy_timeout``) — keep queries indexed and short.

    ``synchronous=NORMAL`` in WAL mode: a committed transaction survives a process crash
    (``kill -9``), which is what we need; only an OS crash or power loss may lose the last
    ones (never corrupt the file).

    ``:memory:`` (tests): one connection, reads wait for a running transaction like writes
    (a second connection to a shared-cache memory database would get "table is locked")."""

    dialect = "sqlite"

    def __init__(self, writer: sqlite3.Connection, reader: sqlite3.Connection | None,
                 bulk: WriterProcess | None = None) -> None:
        self._wconn = writer
        self._rconn = reader
        self._writer = _SqliteExec(writer)
        self._reader = _SqliteExec(reader) if reader is not None else None
        self._lock = asyncio.Lock()
        self._owner: asyncio.Task[Any] | None = None
        self._bulk = bulk

    @classmethod
    async def open(cls, path: str, *, busy_timeout_ms: int = 5000) -> SqliteDatabase:
        pragmas = (f"busy_timeout={busy_timeout_ms}", "foreign_keys=ON")
        if path == ":memory:":
            conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
            for pragma in pragmas:
                conn.execute(f"PRAGMA {pragma}")
            return cls(conn, None)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            for pragma in (*pragmas, "journal_mode=WAL", "synchronous=NORMAL"):
                writer.execute(f"PRAGMA {pragma}")
            reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except BaseException:
            writer.close()
            raise
        for pragma in pragmas:
            reader.execute(f"PRAGMA {pragma}")
        return cls(writer, reader, WriterProcess(path, busy_timeout_ms))

    @contextlib.asynccontextmanager
    async def _exclusive(self) -> AsyncIterator[None]:
        task = asyncio.current_task()
        if task is not None and task is self._owner:
            raise RuntimeError("this task is inside db.transaction(): run statements on the "
                               "transaction object it yielded, not on the database "
                               "(that would wait for the transaction forever)")
        async with self._lock:
            self._owner = task
            try:
                yield
            finally:
                self._owner = None

    async def execute(self, sql: str, *args: Any) -> int:
        async with self._exclusive():
            return await self._writer.execute(sql, *args)

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        async with self.transaction() as tx:
            await tx.executemany(sql, rows)

    async def bulk_insert(self, sql: str, rows: Sequence[Sequence[Any]],
                          expand: Callable[[Any], Sequence[Any]] | None = None) -> None:
        bulk = self._bulk
        if bulk is None:  # :memory: is private to this connection
            await super().bulk_insert(sql, rows, expand)
            return
        if not bulk.running:
            # The writer process checkpoints the WAL from now on: a checkpoint (copying pages
            # back and an fdatasync) is I/O the loop should not wait for either.
            async with self._exclusive():
                self._wconn.execute("PRAGMA wal_autocheckpoint=0")
        await bulk.run(sql, rows, expand)

    async def fetchall(self, sql: str, *args: Any) -> list[Row]:
        if self._reader is not None and _is_read_only(sql):
            return await self._reader.fetchall(sql, *args)
        if self._reader is None and self._owner is not None \
                and self._owner is asyncio.current_task() and _is_read_only(sql):
            return await self._writer.fetchall(sql, *args)  # :memory:, own transaction
        async with self._exclusive():
            return await self._writer.fetchall(sql, *args)

    async def fetchone(self, sql: str, *args: Any) -> Row | None:
        if self._reader is not None and _is_read_only(sql):
            return await self._reader.fetchone(sql, *args)
        rows = await self.fetchall(sql, *args)
        return rows[0] if rows else None

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Executor]:
        async with self._exclusive():
            conn = self._wconn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._writer
            except BaseException:
                if conn.in_transaction:  # SQLite may have rolled back already (e.g. disk full)
                    conn.execute("ROLLBACK")
                raise
            try:
                conn.execute("COMMIT")
            except BaseException:
                # e.g. a deferred foreign key violated: the transaction is still open
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    async def close(self) -> None:
        if self._bulk is not None:
            await self._bulk.close()
        async with self._lock:
            if self._rconn is not None:
                self._rconn.close()
            self._wconn.close()


# ---- PostgreSQL -------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def to_dollar(sql: str) -> str:
    """Rewrite ``?`` placeholders to ``$1, $2…`` (cached per statement).

    A ``?`` inside a quoted literal (``'…'``) or quoted identifier (``"…"``) is refused with
    ValueError rather than rewritten or silently kept; one inside a comment is left alone (both
    engines ignore it). ``$n`` placeholders and dollar-quoting are refused too: write ``?``."""
    out: list[str] = []
    n = 0
    i = 0
    size = len(sql)
    while i < size:
        ch = sql[i]
        if ch in "'\"":
            end = i + 1
            while True:
                end = sql.find(ch, end)
                if end < 0:
                    raise ValueError(f"unterminated {ch} quote in SQL: {sql!r}")
                if end + 1 < size and sql[end + 1] == ch:  # doubled quote: an escaped one
                    end += 2
                    continue
                break
            quoted = sql[i:end + 1]
            if "?" in quoted:
                raise ValueError(f"a '?' inside a quoted literal is ambiguous (pass the value "
                                 f"as a parameter instead): {sql!r}")
            out.append(quoted)
            i = end + 1
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            end = size if end < 0 else end
            out.append(sql[i:end])
            i = end
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            if end < 0:
                raise ValueError(f"unterminated /* comment in SQL: {sql!r}")
            out.append(sql[i:end + 2])
            i = end + 2
        elif ch == "?":
            n += 1
            out.append(f"${n}")
            i += 1
        elif ch == "$" and i + 1 < size and (sql[i + 1].isdigit() or sql[i + 1] == "$"):
            raise ValueError(f"write '?' placeholders, not $n (nor $$ quoting): {sql!r}")
        else:
            out.append(ch)
            i += 1
    return "".join(out)


#: what PostgresDatabase.bulk_insert turns into a COPY: the table and the column list
_PLAIN_INSERT = re.compile(r"\s*INSERT INTO (\w+) \(([\w\s,]+)\) VALUES \(\?(?:\s*,\s*\?)*\)\s*$",
                           re.IGNORECASE)


def _status_count(status: str) -> int:
    """The row count in a command tag such as ``INSERT 0 3`` or ``UPDATE 2`` (0 for DDL)."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


class _PgExec(Executor):
    """Statements on one asyncpg connection (a transaction's)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def execute(self, sql: str, *args: Any) -> int:
        q = to_dollar(sql)
        if "RETURNING" in sql.upper():
            return len(await self._conn.fetch(q, *args))
        return _status_count(str(await self._conn.execute(q, *args)))

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self._conn.executemany(to_dollar(sql), rows)

    async def fetchall(self, sql: str, *args: Any) -> list[Row]:
        return [tuple(r) for r in await self._conn.fetch(to_dollar(sql), *args)]

    async def fetchone(self, sql: str, *args: Any) -> Row | None:
        row = await self._conn.fetchrow(to_dollar(sql), *args)
        return None if row is None else tuple(row)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self._conn.fetchval(to_dollar(sql), *args)


class PostgresDatabase(Database):
    """PostgreSQL through an asyncpg pool; a transaction holds one pooled connection."""

    dialect = "postgresql"

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, url: str, pool_size: int = 10) -> PostgresDatabase:
        import asyncpg

        if pool_size < 1:
            raise ValueError(f"pool_size must be at least 1, not {pool_size}")
        pool = await asyncpg.create_pool(url, min_size=1, max_size=pool_size)
        return cls(pool)

    async def execute(self, sql: str, *args: Any) -> int:
        async with self._pool.acquire() as conn:
            return await _PgExec(conn).execute(sql, *args)

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await _PgExec(conn).executemany(sql, rows)

    async def bulk_insert(self, sql: str, rows: Sequence[Sequence[Any]],
                          expand: Callable[[Any], Sequence[Any]] | None = None) -> None:
        """A plain ``INSERT INTO t (columns) VALUES (?, ...)`` goes in as one binary ``COPY``:
        PostgreSQL then parses, plans and executes no statement per row (with the archive,
        its per-row work was what bound the throughput). Other statements: ``executemany``."""
        m = _PLAIN_INSERT.match(sql)
        if m is None:
            await super().bulk_insert(sql, rows, expand)
            return
        columns = [c.strip() for c in m.group(2).split(",")]
        records = rows if expand is None else [expand(r) for r in rows]
        async with self._pool.acquire() as conn:
            await conn.copy_records_to_table(m.group(1), records=records, columns=columns)

    async def fetchall(self, sql: str, *args: Any) -> list[Row]:
        async with self._pool.acquire() as conn:
            return await _PgExec(conn).fetchall(sql, *args)

    async def fetchone(self, sql: str, *args: Any) -> Row | None:
        async with self._pool.acquire() as conn:
            return await _PgExec(conn).fetchone(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        async with self._pool.acquire() as conn:
            return await _PgExec(conn).fetchval(sql, *args)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Executor]:
        async with self._pool.acquire() as conn, conn.transaction():
            yield _PgExec(conn)

    async def close(self) -> None:
        await self._pool.close()


async def open_database(url: str, *, pool_size: int = 10) -> Database:
    """Open a database by URL.

    * ``sqlite:///path/as/written.db`` — three slashes, then the path as written:
      ``sqlite:///./data/hongyan.db`` (relative), ``sqlite:////var/lib/hongyan/x.db``
      (absolute); the parent directory is created if missing;
    * ``sqlite://:memory:`` — a private in-memory database (tests);
    * ``postgresql://user@host:port/dbname`` (or ``postgres://``), with a pool of at most
      ``pool_size`` connections."""
    if url.startswith("sqlite://"):
        rest = url[len("sqlite://"):]
        if rest in (":memory:", "/:memory:"):
            return await SqliteDatabase.open(":memory:")
        if not rest.startswith("/") or len(rest) < 2:
            raise ValueError(f"bad SQLite URL {url!r}: use sqlite:///relative/path.db, "
                             "sqlite:////absolute/path.db or sqlite://:memory:")
        return await SqliteDatabase.open(rest[1:])
    if url.startswith(("postgresql://", "postgres://")):
        return await PostgresDatabase.open(url, pool_size)
    raise ValueError(f"unknown database URL {url!r}: it must start with sqlite:// "
                     "(sqlite:///path.db) or postgresql:// (postgresql://user@host:port/db)")
