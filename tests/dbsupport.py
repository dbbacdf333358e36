"""PostgreSQL for the tests: a fresh database per test, dropped afterwards.

In CI (``CI`` set) an unreachable PostgreSQL fails the tests — there they must run, never
skip; elsewhere they skip with a message that says how to run them.
"""

from __future__ import annotations

import asyncio
import functools
import os
import secrets
import socket
import threading
from urllib.parse import urlsplit, urlunsplit

import pytest

_TIMEOUT = 3.0


def postgres_admin_url() -> str:
    """Where to create and drop the test databases (env ``HONGYAN_TEST_PG``)."""
    return os.environ.get("HONGYAN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@functools.cache
def _probe() -> str | None:
    """None if we can log in to the admin URL, else why not. A TCP check first (fast when
    nothing listens), then a real asyncpg login in a thread of its own, so that this works
    from sync code and from inside a running event loop alike."""
    url = postgres_admin_url()
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432),
                                      _TIMEOUT):
            pass
    except OSError as exc:
        return f"connection failed: {exc}"
    reason: list[str] = []

    async def login() -> None:
        import asyncpg

        conn = await asyncpg.connect(url, timeout=_TIMEOUT)
        await conn.close()

    def run() -> None:
        try:
            asyncio.run(login())
        except Exception as exc:
            reason.append(f"login failed: {exc!r}")

    thread = threading.Thread(target=run, name="pg-probe", daemon=True)
    thread.start()
    thread.join(_TIMEOUT * 2)
    if thread.is_alive():
        return "login timed out"
    return reason[0] if reason else None


def pg_available() -> bool:
    """Whether PostgreSQL accepts a login at :func:`postgres_admin_url` (checked once)."""
    return _probe() is None


def require_pg() -> None:
    """Skip the calling test without PostgreSQL — or fail it, in CI."""
    why = _probe()
    if why is None:
        return
    where = postgres_admin_url()
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL not reachable at {where} ({why}); in CI these tests must run")
    pytest.skip(f"PostgreSQL not reachable at {where} ({why}); start it (e.g. pg_ctlcluster 15 "
                "main start) or set HONGYAN_TEST_PG=postgresql://user@host:port/db to run "
                "these tests")


async def create_temp_pg_database() -> str:
    """Create ``hongyan_test_<random hex>`` and return its URL."""
    import asyncpg

    name = "hongyan_test_" + secrets.token_hex(6)
    conn = await asyncpg.connect(postgres_admin_url(), timeout=_TIMEOUT)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    parts = urlsplit(postgres_admin_url())
    return urlunsplit(parts._replace(path="/" + name))


async def drop_pg_database(url: str) -> None:
    """Drop a database made by :func:`create_temp_pg_database` (closing its sessions)."""
    import asyncpg

    name = urlsplit(url).path.lstrip("/")
    if not name.startswith("hongyan_test_"):
        raise ValueError(f"refusing to drop {name!r}: not a test database")
    conn = await asyncpg.connect(postgres_admin_url(), timeout=_TIMEOUT)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
