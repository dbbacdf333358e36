"""The storage layer on real SQLite and real PostgreSQL (each PostgreSQL test in a fresh
database, dropped afterwards)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hongyan.storage.db import Database, SqliteDatabase, open_database, to_dollar
from hongyan.storage.kv import KV_MIGRATIONS, KeyValueStore
from hongyan.storage.migrations import Migration, migrate, render_ddl
from tests.dbsupport import create_temp_pg_database, drop_pg_database, require_pg


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        d = await open_database(f"sqlite:///{tmp_path / 'sub' / 't.db'}")
        try:
            yield d
        finally:
            await d.close()
        return
    require_pg()
    url = await create_temp_pg_database()
    try:
        d = await open_database(url, pool_size=5)
        try:
            yield d
        finally:
            await d.close()
    finally:
        await drop_pg_database(url)


TABLE = Migration("t", 1, (
    "CREATE TABLE t (id {pk}, name {text}, n {bigint}, f REAL, b {blob}, flag INTEGER)",
))


async def test_roundtrip_every_type(db: Database) -> None:
    await migrate(db, [TABLE])
    assert await db.execute("INSERT INTO t (name, n, f, b, flag) VALUES (?,?,?,?,?)",
                            "héllo ✓", 2**40, 1.5, b"\x00\xff\x00", True) == 1
    await db.execute("INSERT INTO t (name, n, f, b, flag) VALUES (?,?,?,?,?)",
                     None, None, None, None, False)
    await db.execute("INSERT INTO t (name, n, f, b, flag) VALUES (?,?,?,?,?)",
                     "", -7, -0.25, b"", None)
    rows = await db.fetchall("SELECT name, n, f, b, flag FROM t ORDER BY id")
    assert rows == [("héllo ✓", 2**40, 1.5, b"\x00\xff\x00", 1),
                    (None, None, None, None, 0),
                    ("", -7, -0.25, b"", None)]
    assert all(isinstance(r, tuple) for r in rows)
    # booleans are INTEGER 0/1, so a bool parameter compares with them on both engines
    assert await db.fetchval("SELECT COUNT(*) FROM t WHERE flag = ?", True) == 1
    assert await db.fetchone("SELECT name, n FROM t WHERE b = ?", b"\x00\xff\x00") == \
        ("héllo ✓", 2**40)
    assert await db.fetchone("SELECT name FROM t WHERE n=?", 12345) is None
    assert await db.fetchval("SELECT name FROM t WHERE n=?", 12345) is None
    assert await db.fetchval("SELECT COUNT(*) FROM t") == 3
    assert await db.execute("UPDATE t SET flag=? WHERE flag=?", 5, 1) == 1
    assert await db.execute("DELETE FROM t WHERE n < ?", 0) == 1
    assert await db.execute("UPDATE t SET flag=? WHERE 1 = 0", 1) == 0


async def test_executemany(db: Database) -> None:
    await migrate(db, [TABLE])
    await db.executemany("INSERT INTO t (name, n) VALUES (?, ?)",
                         [(f"r{i}", i) for i in range(20)])
    assert await db.fetchval("SELECT SUM(n) FROM t") == sum(range(20))
    async with db.transaction() as tx:
        await tx.executemany("UPDATE t SET n = n * ? WHERE name = ?", [(10, "r1"), (10, "r2")])
    assert await db.fetchall("SELECT n FROM t WHERE name IN (?, ?) ORDER BY n", "r1", "r2") == \
        [(10,), (20,)]


async def test_placeholders_run_on_the_engine(db: Database) -> None:
    # quoted text with doubled quotes, a comment holding a '?', and parameters after them
    sql = ("SELECT 'it''s', ? -- what? not a parameter\n"
           ", ? /* nor this? */")
    assert await db.fetchone(sql, "a", "b") == ("it's", "a", "b")
    if db.dialect == "postgresql":
        with pytest.raises(ValueError, match="quoted literal"):
            await db.fetchval("SELECT 'what?' WHERE 1 = ?", 1)


def test_placeholder_rewriting() -> None:
    assert to_dollar("SELECT a FROM t WHERE a=? AND b=?") == \
        "SELECT a FROM t WHERE a=$1 AND b=$2"
    assert to_dollar("SELECT 'it''s' WHERE a=?") == "SELECT 'it''s' WHERE a=$1"
    assert to_dollar('SELECT "col" FROM t WHERE x IN (?,?,?)') == \
        'SELECT "col" FROM t WHERE x IN ($1,$2,$3)'
    assert to_dollar("SELECT ? -- a?\n, ?") == "SELECT $1 -- a?\n, $2"
    assert to_dollar("SELECT 1") == "SELECT 1"
    for bad in ("SELECT 'what?' WHERE a=?", "SELECT 'it''s?'", 'SELECT "odd?col"',
                "SELECT 'open", "SELECT $1", "SELECT $$x$$", "SELECT 1 /* open"):
        with pytest.raises(ValueError):
            to_dollar(bad)
    # cached: the same string object comes back for the same statement
    assert to_dollar("SELECT ? AS cached") is to_dollar("SELECT ? AS cached")


async def test_transaction_commit_and_rollback(db: Database) -> None:
    await migrate(db, [TABLE])
    async with db.transaction() as tx:
        await tx.execute("INSERT INTO t (name) VALUES (?)", "kept")
        assert await tx.fetchval("SELECT COUNT(*) FROM t") == 1  # sees its own write
    with pytest.raises(RuntimeError, match="boom"):
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO t (name) VALUES (?)", "lost")
            raise RuntimeError("boom")
    assert [r[0] for r in await db.fetchall("SELECT name FROM t")] == ["kept"]
    # a failing statement inside rolls back the earlier ones too
    with pytest.raises(Exception):  # noqa: B017 - the driver's own error type
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO t (name) VALUES (?)", "lost too")
            await tx.execute("INSERT INTO no_such_table (x) VALUES (?)", 1)
    assert await db.fetchval("SELECT COUNT(*) FROM t") == 1
    # and the database is usable afterwards
    async with db.transaction() as tx:
        await tx.execute("INSERT INTO t (name) VALUES (?)", "after")
    assert await db.fetchval("SELECT COUNT(*) FROM t") == 2


async def test_cancelled_transaction_rolls_back(db: Database) -> None:
    await migrate(db, [TABLE])
    entered = asyncio.Event()

    async def stuck() -> None:
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO t (name) VALUES (?)", "cancelled")
            entered.set()
            await asyncio.sleep(3600)

    task = asyncio.create_task(stuck())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await db.fetchval("SELECT COUNT(*) FROM t") == 0
    await db.execute("INSERT INTO t (name) VALUES (?)", "fine")
    assert await db.fetchval("SELECT COUNT(*) FROM t") == 1


async def test_concurrent_atomic_increments_lose_nothing(db: Database) -> None:
    await db.execute("CREATE TABLE c (k TEXT PRIMARY KEY, n INTEGER NOT NULL)")
    await db.execute("INSERT INTO c (k, n) VALUES (?, ?)", "x", 0)

    async def bump() -> None:
        async with db.transaction() as tx:
            await tx.execute("UPDATE c SET n = n + 1 WHERE k=?", "x")
            await asyncio.sleep(0)

    async def bump_plain() -> None:
        await db.execute("UPDATE c SET n = n + 1 WHERE k=?", "x")

    await asyncio.gather(*(bump() for _ in range(50)), *(bump_plain() for _ in range(50)))
    assert await db.fetchval("SELECT n FROM c WHERE k=?", "x") == 100


async def test_concurrent_read_modify_write_lose_nothing(db: Database) -> None:
    """Read, yield to the loop, write: correct on SQLite because transaction() is exclusive
    (BEGIN IMMEDIATE under a lock), on PostgreSQL with SELECT … FOR UPDATE."""
    await db.execute("CREATE TABLE c (k TEXT PRIMARY KEY, n INTEGER NOT NULL)")
    await db.execute("INSERT INTO c (k, n) VALUES (?, ?)", "x", 0)
    lock = " FOR UPDATE" if db.dialect == "postgresql" else ""

    async def bump() -> None:
        async with db.transaction() as tx:
            n = await tx.fetchval("SELECT n FROM c WHERE k=?" + lock, "x")
            await asyncio.sleep(0.001)  # let every other task run in between
            await tx.execute("UPDATE c SET n = ? WHERE k=?", n + 1, "x")

    await asyncio.gather(*(bump() for _ in range(50)))
    assert await db.fetchval("SELECT n FROM c WHERE k=?", "x") == 50


async def test_upsert_returning_counter(db: Database) -> None:
    await db.execute("CREATE TABLE v (k TEXT PRIMARY KEY, version INTEGER NOT NULL)")
    upsert = ("INSERT INTO v (k, version) VALUES (?, 1) ON CONFLICT (k) DO UPDATE "
              "SET version = v.version + 1 RETURNING version")

    async def bump() -> int:
        async with db.transaction() as tx:
            return int(await tx.fetchval(upsert, "u"))

    async def bump_plain() -> int:
        return int(await db.fetchval(upsert, "u"))

    versions = await asyncio.gather(*(bump() for _ in range(30)),
                                    *(bump_plain() for _ in range(30)))
    assert sorted(versions) == list(range(1, 61))
    assert await db.execute(upsert, "u") == 1
    assert await db.fetchval("SELECT version FROM v") == 61


async def test_sqlite_transaction_is_exclusive(tmp_path: Path) -> None:
    db = await open_database(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        await db.execute("CREATE TABLE c (n INTEGER)")
        await db.execute("INSERT INTO c VALUES (0)")
        order: list[str] = []
        inside = asyncio.Event()

        async def holder() -> None:
            async with db.transaction() as tx:
                await tx.execute("UPDATE c SET n = 1")
                inside.set()
                await asyncio.sleep(0.05)
                # readers are not blocked, and see only committed data
                assert await db.fetchval("SELECT n FROM c") == 0
                order.append("tx done")

        async def writer() -> None:
            await inside.wait()
            await db.execute("UPDATE c SET n = n + 10")
            order.append("plain write")

        await asyncio.gather(holder(), writer())
        assert order == ["tx done", "plain write"]
        assert await db.fetchval("SELECT n FROM c") == 11
    finally:
        await db.close()


async def test_sqlite_write_through_fetch_does_not_block_the_loop(tmp_path: Path) -> None:
    """An INSERT … RETURNING through db.fetchval waits for a running transaction (on the
    writer's lock) rather than hitting the file lock synchronously on the reader."""
    db = await open_database(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        await db.execute("CREATE TABLE c (id INTEGER PRIMARY KEY, v TEXT)")
        inside = asyncio.Event()

        async def holder() -> None:
            async with db.transaction() as tx:
                await tx.execute("INSERT INTO c (v) VALUES (?)", "tx")
                inside.set()
                await asyncio.sleep(0.05)

        async def writer() -> float:
            await inside.wait()
            t0 = time.monotonic()
            assert await db.fetchval("INSERT INTO c (v) VALUES (?) RETURNING id", "w") == 2
            return time.monotonic() - t0

        _, took = await asyncio.gather(holder(), writer())
        assert took < 1.0
        assert await db.fetchall("SELECT v FROM c ORDER BY id") == [("tx",), ("w",)]
    finally:
        await db.close()


async def test_sqlite_misuse_inside_transaction_raises_instead_of_hanging(
        tmp_path: Path) -> None:
    db = await open_database(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        await db.execute("CREATE TABLE c (n INTEGER)")
        async with db.transaction():
            with pytest.raises(RuntimeError, match="transaction object"):
                await db.execute("INSERT INTO c VALUES (1)")
            with pytest.raises(RuntimeError, match="transaction object"):
                async with db.transaction():
                    pass
    finally:
        await db.close()


async def test_sqlite_pragmas_and_directory(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    db = await open_database("sqlite:///./data/deep/hongyan.db")
    try:
        assert isinstance(db, SqliteDatabase)
        assert (tmp_path / "data" / "deep" / "hongyan.db").exists()
        assert await db.fetchval("PRAGMA journal_mode") == "wal"
        assert await db.fetchval("PRAGMA synchronous") == 1  # NORMAL
        assert await db.fetchval("PRAGMA foreign_keys") == 1
        assert await db.fetchval("PRAGMA busy_timeout") > 0
    finally:
        await db.close()
    absolute = await open_database(f"sqlite:///{tmp_path / 'abs.db'}")  # -> sqlite:////tmp/…
    await absolute.close()
    assert (tmp_path / "abs.db").exists()


async def test_migrations_apply_once(db: Database) -> None:
    m2 = Migration("t", 2, ("ALTER TABLE t ADD COLUMN extra TEXT",
                            "CREATE INDEX t_extra ON t (extra)"))
    other = Migration("a_first", 1, ("CREATE TABLE a_first (x INTEGER)",))
    assert await migrate(db, [m2, TABLE, other]) == [("a_first", 1), ("t", 1), ("t", 2)]
    assert await migrate(db, [TABLE, m2, other]) == []
    await db.execute("INSERT INTO t (extra) VALUES (?)", "x")
    assert await db.fetchall("SELECT component, version FROM schema_versions "
                             "ORDER BY component, version") == \
        [("a_first", 1), ("t", 1), ("t", 2)]
    m3 = Migration("t", 3, ("ALTER TABLE t ADD COLUMN more INTEGER",))
    assert await migrate(db, [TABLE, m2, m3, other]) == [("t", 3)]


async def test_failed_migration_leaves_nothing(db: Database) -> None:
    broken = Migration("b", 1, ("CREATE TABLE b (x INTEGER)", "THIS IS NOT SQL"))
    with pytest.raises(Exception):  # noqa: B017 - the driver's own error type
        await migrate(db, [broken])
    assert await db.fetchval("SELECT COUNT(*) FROM schema_versions") == 0
    fixed = Migration("b", 1, ("CREATE TABLE b (x INTEGER)",))
    assert await migrate(db, [fixed]) == [("b", 1)]


async def test_concurrent_migrate_on_postgresql() -> None:
    require_pg()
    url = await create_temp_pg_database()
    try:
        dbs = [await open_database(url, pool_size=2) for _ in range(4)]
        try:
            m2 = Migration("t", 2, ("ALTER TABLE t ADD COLUMN extra TEXT",))
            results = await asyncio.gather(
                *(migrate(d, [TABLE, m2, *KV_MIGRATIONS]) for d in dbs))
            applied = sorted(x for r in results for x in r)
            assert applied == [("kv", 1), ("t", 1), ("t", 2)]
            assert await dbs[0].fetchval("SELECT COUNT(*) FROM schema_versions") == 3
        finally:
            for d in dbs:
                await d.close()
    finally:
        await drop_pg_database(url)


async def test_concurrent_migrate_on_sqlite(tmp_path: Path) -> None:
    dbs = [await open_database(f"sqlite:///{tmp_path / 'm.db'}") for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrate(d, [TABLE, *KV_MIGRATIONS]) for d in dbs))
        assert sorted(x for r in results for x in r) == [("kv", 1), ("t", 1)]
    finally:
        for d in dbs:
            await d.close()


def test_render_ddl() -> None:
    ddl = "CREATE TABLE x (id {pk}, b {blob}, n {bigint}, s {text}, j TEXT DEFAULT '{}')"
    assert render_ddl(ddl, "postgresql") == (
        "CREATE TABLE x (id BIGSERIAL PRIMARY KEY, b BYTEA, n BIGINT, s TEXT, "
        "j TEXT DEFAULT '{}')")
    assert render_ddl(ddl, "sqlite") == (
        "CREATE TABLE x (id INTEGER PRIMARY KEY AUTOINCREMENT, b BLOB, n INTEGER, s TEXT, "
        "j TEXT DEFAULT '{}')")
    with pytest.raises(ValueError, match="blb"):
        render_ddl("b {blb}", "sqlite")
    with pytest.raises(ValueError, match="mysql"):
        render_ddl("b {blob}", "mysql")


async def test_key_value_store(db: Database) -> None:
    await migrate(db, KV_MIGRATIONS)
    kv = KeyValueStore(db)
    assert await kv.get("alice", "ns") is None
    await kv.set("alice", "ns", "", "<a/>")
    await kv.set("alice", "ns", "", "<b xmlns='x'>ü</b>")
    await kv.set("alice", "ns", "k2", "<c/>")
    await kv.set("alice", "other", "", "<o/>")
    await kv.set("bob", "ns", "", "<d/>")
    assert await kv.get("alice", "ns") == "<b xmlns='x'>ü</b>"
    assert await kv.get("alice", "ns", "k2") == "<c/>"
    await kv.delete("alice", "ns", "k2")
    assert await kv.get("alice", "ns", "k2") is None
    assert await kv.get("alice", "ns") == "<b xmlns='x'>ü</b>"
    await kv.delete("alice", "missing")  # no error
    await kv.delete_user("alice")
    assert await kv.get("alice", "ns") is None
    assert await kv.get("alice", "other") is None
    assert await kv.get("bob", "ns") == "<d/>"


async def test_memory_database() -> None:
    db = await open_database("sqlite://:memory:")
    try:
        assert db.dialect == "sqlite"
        assert await db.fetchval("SELECT 1 + 1") == 2
        await migrate(db, KV_MIGRATIONS)
        kv = KeyValueStore(db)
        await kv.set("u", "ns", "", "v")
        inside = asyncio.Event()

        async def holder() -> None:
            async with db.transaction() as tx:
                await tx.execute("UPDATE kv_store SET value = ?", "new")
                assert await db.fetchval("SELECT value FROM kv_store") == "new"  # own task
                inside.set()
                await asyncio.sleep(0.02)

        async def reader() -> str | None:
            await inside.wait()
            return await kv.get("u", "ns")  # waits for the transaction, no "table is locked"

        _, seen = await asyncio.gather(holder(), reader())
        assert seen == "new"
    finally:
        await db.close()
    other = await open_database("sqlite://:memory:")  # a separate, empty database
    try:
        assert await other.fetchval(
            "SELECT COUNT(*) FROM sqlite_master WHERE name = 'kv_store'") == 0
    finally:
        await other.close()


@pytest.mark.parametrize("url", ["mysql://x/y", "sqlite://relative.db", "nonsense", ""])
async def test_bad_urls_are_named(url: str) -> None:
    with pytest.raises(ValueError, match="URL") as info:
        await open_database(url)
    assert repr(url) in str(info.value)


async def test_bulk_insert(db: Database) -> None:
    """Archives' appends: committed when the call returns, atomically; a bad batch fails with
    the engine's error and nothing of it is kept; the next batch still goes in."""
    await db.execute("CREATE TABLE log (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    await db.bulk_insert("INSERT INTO log (id, v) VALUES (?,?)", [(i, f"v{i}") for i in range(500)])
    assert await db.fetchval("SELECT COUNT(*) FROM log") == 500
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        await db.bulk_insert("INSERT INTO log (id, v) VALUES (?,?)", [(1000, "x"), (0, "dup")])
    assert await db.fetchval("SELECT COUNT(*) FROM log WHERE id=1000") == 0
    await db.bulk_insert("INSERT INTO log (id, v) VALUES (?,?)", [(1001, "y")])
    assert await db.fetchval("SELECT v FROM log WHERE id=1001") == "y"
    # rows made where they are written, NULLs (on PostgreSQL a plain INSERT is a COPY), and a
    # statement that is not a plain INSERT (run as it is)
    await db.execute("CREATE TABLE pairs (a BIGINT NOT NULL, b TEXT)")
    await db.bulk_insert("INSERT INTO pairs (a, b) VALUES (?, ?)", [1, 2, 3], _pair)
    assert await db.fetchall("SELECT a, b FROM pairs ORDER BY a") == [
        (1, None), (2, "2"), (3, None)]
    await db.bulk_insert("INSERT INTO log (id, v) VALUES (?,?) ON CONFLICT (id) DO NOTHING",
                         [(1001, "again"), (1002, "z")])
    assert await db.fetchall("SELECT v FROM log WHERE id>1000 ORDER BY id") == [("y",), ("z",)]


def _pair(n: int) -> tuple[int, str | None]:
    return (n, str(n) if n % 2 == 0 else None)


async def test_sqlite_bulk_insert_runs_in_a_writer_process(tmp_path: Path) -> None:
    """On an SQLite file the appends are written by a process of their own: concurrent
    batches are grouped, each caller learns of its own commit, the loop's connection stops
    checkpointing, a clean close writes what was sent, and a writer that died is replaced
    (what it had not committed fails loudly, nothing is acknowledged that was not written)."""
    path = tmp_path / "w.db"
    db = await SqliteDatabase.open(str(path))
    try:
        await db.execute("CREATE TABLE log (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
        batches = [[(b * 100 + i, f"b{b}") for i in range(100)] for b in range(20)]
        await asyncio.gather(*(db.bulk_insert("INSERT INTO log (id, v) VALUES (?,?)", rows)
                               for rows in batches))
        assert await db.fetchval("SELECT COUNT(*) FROM log") == 2000
        bulk = db._bulk
        assert bulk is not None and bulk.running
        proc = bulk._proc
        assert proc is not None and proc.pid != os.getpid()
        assert db._wconn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        # the writer dies: the next call starts a new one
        proc.kill()
        await proc.wait()
        await asyncio.sleep(0.05)
        await db.bulk_insert("INSERT INTO log (id, v) VALUES (?,?)", [(5000, "after")])
        assert await db.fetchval("SELECT v FROM log WHERE id=5000") == "after"
        assert bulk._proc is not None and bulk._proc is not proc
        # sent, then closed at once: close waits for the commit
        task = asyncio.ensure_future(
            db.bulk_insert("INSERT INTO log (id, v) VALUES (?,?)", [(6000, "last")]))
        await asyncio.sleep(0.01)
    finally:
        await db.close()
    await task
    db = await SqliteDatabase.open(str(path))
    try:
        assert await db.fetchval("SELECT v FROM log WHERE id=6000") == "last"
    finally:
        await db.close()


async def test_sqlite_writer_failure_is_reported(tmp_path: Path) -> None:
    from hongyan.storage.writer import WriterError

    db = await SqliteDatabase.open(str(tmp_path / "w.db"))
    try:
        with pytest.raises(WriterError, match="no such table"):
            await db.bulk_insert("INSERT INTO missing (id) VALUES (?)", [(1,)])
    finally:
        await db.close()


_SIGNAL_STORM = r"""
import asyncio, os, signal, subprocess, sys
import uvloop
from hongyan.storage.writer import WriterProcess

# a terminal's Ctrl-C, again and again, to this whole process group, from outside it (a thread
# here would wait for the GIL while the loop forks, and never hit the moment that matters)
STORM = "import os, signal, sys, time\n" \
        "while True:\n    os.killpg(int(sys.argv[1]), signal.SIGINT); time.sleep(0.0001)\n"

async def main(path: str, spawns: int) -> None:
    loop = asyncio.get_running_loop()
    seen = []
    loop.add_signal_handler(signal.SIGINT, seen.append, 1)  # as the server handles Ctrl-C
    import sqlite3
    sqlite3.connect(path).execute("CREATE TABLE log (id INTEGER PRIMARY KEY)").connection.close()
    storm = subprocess.Popen([sys.executable, "-c", STORM, str(os.getpgrp())],
                             start_new_session=True)
    try:
        await asyncio.sleep(0.2)
        for i in range(spawns):
            w = WriterProcess(path, 5000)
            await w.run("INSERT INTO log (id) VALUES (?)", [(i,)])
            await w.close()
            assert w._last_code == 0, (i, w._last_code)
    finally:
        storm.kill()
        storm.wait()
    print("ok", len(seen) > 0)

uvloop.run(main(sys.argv[1], int(sys.argv[2])))
"""


def test_writer_process_survives_ctrl_c_while_it_starts(tmp_path: Path) -> None:
    """A Ctrl-C to the server's process group while a writer is being started (between fork
    and its leaving the group) must not kill it: it would lose its first batch. Started under
    uvloop, as the server runs, with SIGINT sent to the group every 0.1 ms."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", _SIGNAL_STORM, str(tmp_path / "s.db"), "40"],
                       capture_output=True, text=True, timeout=120, start_new_session=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["ok", "True"]
