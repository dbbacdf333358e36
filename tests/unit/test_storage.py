"""The storage layer on real SQLite and real PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hongyan.storage.db import Database, open_database, to_dollar
from hongyan.storage.kv import KV_MIGRATIONS, KeyValueStore
from hongyan.storage.migrations import Migration, migrate, render_ddl
from tests.dbsupport import create_temp_pg_database, drop_pg_database, require_pg


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        d = await open_database(f"sqlite:///{tmp_path / 'sub' / 't.db'}")
        yield d
        await d.close()
        return
    require_pg()
    url = await create_temp_pg_database()
    d = await open_database(url)
    try:
        yield d
    finally:
        await d.close()
        await drop_pg_database(url)


TABLE = Migration("t", 1, (
    "CREATE TABLE t (id {pk}, name TEXT, n {bigint}, f REAL, b {blob}, flag INTEGER)",
))


async def test_roundtrip_every_type(db: Database) -> None:
    await migrate(db, [TABLE])
    await db.execute("INSERT INTO t (name, n, f, b, flag) VALUES (?,?,?,?,?)",
                     "héllo", 2**40, 1.5, b"\x00\xff", 1)
    await db.execute("INSERT INTO t (name, n, f, b, flag) VALUES (?,?,?,?,?)",
                     None, None, None, None, 0)
    rows = await db.fetchall("SELECT name, n, f, b, flag FROM t ORDER BY id")
    assert rows[0] == ("héllo", 2**40, 1.5, b"\x00\xff", 1)
    assert rows[1] == (None, None, None, None, 0)
    assert await db.fetchval("SELECT COUNT(*) FROM t") == 2
    assert await db.fetchone("SELECT name FROM t WHERE n=?", 12345) is None
    assert await db.execute("UPDATE t SET flag=? WHERE flag=?", 5, 1) == 1


async def test_transaction_commit_and_rollback(db: Database) -> None:
    await migrate(db, [TABLE])
    async with db.transaction() as tx:
        await tx.execute("INSERT INTO t (name) VALUES (?)", "kept")
    with pytest.raises(RuntimeError):
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO t (name) VALUES (?)", "lost")
            raise RuntimeError("boom")
    assert [r[0] for r in await db.fetchall("SELECT name FROM t")] == ["kept"]


async def test_concurrent_increments_lose_nothing(db: Database) -> None:
    await db.execute("CREATE TABLE c (k TEXT PRIMARY KEY, n INTEGER NOT NULL)")
    await db.execute("INSERT INTO c (k, n) VALUES (?, ?)", "x", 0)

    async def bump() -> None:
        async with db.transaction() as tx:
            await tx.execute("UPDATE c SET n = n + 1 WHERE k=?", "x")

    await asyncio.gather(*(bump() for _ in range(50)))
    assert await db.fetchval("SELECT n FROM c WHERE k=?", "x") == 50


async def test_upsert_returning_counter(db: Database) -> None:
    await db.execute("CREATE TABLE v (k TEXT PRIMARY KEY, version INTEGER NOT NULL)")

    async def bump() -> int:
        async with db.transaction() as tx:
            return int(await tx.fetchval(
                "INSERT INTO v (k, version) VALUES (?, 1) ON CONFLICT (k) DO UPDATE "
                "SET version = v.version + 1 RETURNING version", "u"))

    versions = await asyncio.gather(*(bump() for _ in range(30)))
    assert sorted(versions) == list(range(1, 31))


async def test_migrations_apply_once(db: Database) -> None:
    m2 = Migration("t", 2, ("ALTER TABLE t ADD COLUMN extra TEXT",))
    assert await migrate(db, [TABLE, m2]) == [("t", 1), ("t", 2)]
    assert await migrate(db, [TABLE, m2]) == []
    await db.execute("INSERT INTO t (extra) VALUES (?)", "x")


async def test_concurrent_migrate_on_postgresql(tmp_path: Path) -> None:
    require_pg()
    url = await create_temp_pg_database()
    dbs = [await open_database(url) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrate(d, [TABLE, *KV_MIGRATIONS]) for d in dbs))
        applied = sorted(x for r in results for x in r)
        assert applied == [("kv", 1), ("t", 1)]
    finally:
        for d in dbs:
            await d.close()
        await drop_pg_database(url)


async def test_key_value_store(db: Database) -> None:
    await migrate(db, KV_MIGRATIONS)
    kv = KeyValueStore(db)
    assert await kv.get("alice", "ns") is None
    await kv.set("alice", "ns", "", "<a/>")
    await kv.set("alice", "ns", "", "<b/>")
    await kv.set("alice", "ns", "k2", "<c/>")
    await kv.set("bob", "ns", "", "<d/>")
    assert await kv.get("alice", "ns") == "<b/>"
    await kv.delete("alice", "ns", "k2")
    assert await kv.get("alice", "ns", "k2") is None
    await kv.delete_user("alice")
    assert await kv.get("alice", "ns") is None
    assert await kv.get("bob", "ns") == "<d/>"


async def test_memory_database() -> None:
    db = await open_database("sqlite://:memory:")
    assert await db.fetchval("SELECT 1 + 1") == 2
    await db.close()


@pytest.mark.parametrize("url", ["mysql://x", "sqlite://relative.db", "nonsense"])
async def test_bad_urls_are_named(url: str) -> None:
    with pytest.raises(ValueError, match="URL"):
        await open_database(url)


def test_placeholders() -> None:
    assert to_dollar("SELECT a FROM t WHERE a=? AND b=?") == \
        "SELECT a FROM t WHERE a=$1 AND b=$2"
    assert to_dollar("SELECT 'it''s' WHERE a=?") == "SELECT 'it''s' WHERE a=$1"
    with pytest.raises(ValueError):
        to_dollar("SELECT 'what?' WHERE a=?")
    assert render_ddl("id {pk}, b {blob}", "postgresql") == "id BIGSERIAL PRIMARY KEY, b BYTEA"
    assert render_ddl("id {pk}", "sqlite") == "id INTEGER PRIMARY KEY AUTOINCREMENT"
