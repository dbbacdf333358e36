"""PostgreSQL for the tests: a fresh database per test, dropped afterwards.

In CI (``CI`` set) an unreachable PostgreSQL fails the tests; elsewhere they skip with a message
that says how to run them.
"""

from __future__ import annotations

import functools
import os
import secrets
import socket
from urllib.parse import urlsplit, urlunsplit

import pytest


def postgres_admin_url() -> str:
    return os.environ.get("HONGYAN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@functools.cache
def pg_available() -> bool:
    parts = urlsplit(postgres_admin_url())
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432), 2):
            return True
    except OSError:
        return False


def require_pg() -> None:
    if pg_available():
        return
    where = postgres_admin_url()
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL is not reachable at {where}, and CI must run these tests")
    pytest.skip(f"PostgreSQL not reachable at {where}; start it (e.g. pg_ctlcluster 15 main "
                "start) or set HONGYAN_TEST_PG=postgresql://user@host:port/db to run these tests")


async def create_temp_pg_database() -> str:
    import asyncpg

    name = "hongyan_test_" + secrets.token_hex(6)
    conn = await asyncpg.connect(postgres_admin_url())
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    parts = urlsplit(postgres_admin_url())
    return urlunsplit(parts._replace(path="/" + name))


async def drop_pg_database(url: str) -> None:
    import asyncpg

    name = urlsplit(url).path.lstrip("/")
    conn = await asyncpg.connect(postgres_admin_url())
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
