"""The migrated template behind the PostgreSQL tests (tests/dbsupport.py): a copy of it is
what a fresh server creates, and the server finds nothing left to migrate there."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from hongyan.config.loader import load_config
from hongyan.server.node import Node
from hongyan.storage.db import Database, open_database
from hongyan.storage.migrations import Migration
from tests.dbsupport import (
    TEMPLATE_PREFIX,
    create_temp_pg_database,
    drop_pg_database,
    require_pg,
    server_migrations,
    template_name,
)
from tests.integration.conftest import write_config

#: the schema, read from the catalogs: tables and columns, constraints, indexes, views,
#: sequences, and how many rows each table holds (migrations may insert some)
SCHEMA = {
    "columns": "SELECT table_name, column_name, ordinal_position, data_type, is_nullable, "
               "column_default FROM information_schema.columns WHERE table_schema = 'public'",
    "constraints": "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(c.oid) "
                   "FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace "
                   "WHERE n.nspname = 'public'",
    "indexes": "SELECT tablename, indexname, indexdef FROM pg_indexes "
               "WHERE schemaname = 'public'",
    "views": "SELECT viewname, definition FROM pg_views WHERE schemaname = 'public'",
    "sequences": "SELECT sequence_name, data_type, start_value, increment "
                 "FROM information_schema.sequences WHERE sequence_schema = 'public'",
    "migrations": "SELECT component, version FROM schema_versions",
}


async def schema(db: Database) -> dict[str, Any]:
    out: dict[str, Any] = {k: sorted(await db.fetchall(q)) for k, q in SCHEMA.items()}
    tables = await db.fetchall("SELECT table_name FROM information_schema.tables "
                               "WHERE table_schema = 'public' AND table_type = 'BASE TABLE' "
                               "AND table_name <> 'schema_versions'")
    out["rows"] = sorted([(t, await db.fetchval(f'SELECT COUNT(*) FROM "{t}"'))
                          for (t,) in tables])
    return out


async def storage_of_a_fresh_node(tmp_path: Path, url: str,
                                  caplog: pytest.LogCaptureFixture) -> tuple[Node, bool]:
    """A node of the default configuration with its storage open (migrated), and whether it
    applied any migration."""
    tmp_path.mkdir()
    node = Node(load_config(write_config(tmp_path, url)))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="hongyan.node"):
        await node.open_storage()
    applied = any(r.getMessage().startswith("applied migrations") for r in caplog.records)
    return node, applied


async def versions(url: str) -> list[Any]:
    db = await open_database(url, pool_size=1)
    try:
        return sorted(await db.fetchall(
            "SELECT component, version, applied_at FROM schema_versions"))
    finally:
        await db.close()


async def test_a_copy_of_the_template_is_what_a_fresh_server_creates(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    require_pg()
    empty = await create_temp_pg_database()
    copy = await create_temp_pg_database(migrated=True)
    try:
        fresh, applied = await storage_of_a_fresh_node(tmp_path / "fresh", empty, caplog)
        try:
            expected = await schema(fresh.db)
        finally:
            await fresh.db.close()
        assert applied and expected["migrations"]
        before = await versions(copy)
        assert [(c, v) for c, v, _ in before] == expected["migrations"]
        node, applied = await storage_of_a_fresh_node(tmp_path / "copy", copy, caplog)
        try:
            assert await schema(node.db) == expected
        finally:
            await node.db.close()
        # the node found nothing to do: it applied nothing, and the rows are the template's
        assert not applied
        assert await versions(copy) == before
    finally:
        await drop_pg_database(empty)
        await drop_pg_database(copy)


def test_the_template_name_follows_every_migration() -> None:
    migs = server_migrations()
    name = template_name(migs)
    assert name.startswith(TEMPLATE_PREFIX) and len(name) < 50
    assert template_name(reversed(migs)) == name  # the order they are declared in is not
    first = migs[0]
    changed = Migration(first.component, first.version, (*first.statements, "SELECT 1"))
    renumbered = Migration(first.component, first.version + 100, first.statements)
    extra = Migration("zz_test", 1, ("CREATE TABLE zz_test (x INTEGER)",))
    names = {name, template_name([changed, *migs[1:]]), template_name([renumbered, *migs[1:]]),
             template_name([*migs, extra]), template_name(migs[1:])}
    assert len(names) == 5
