"""PostgreSQL for the tests: a fresh database per test, dropped afterwards.

A test that runs a server gets its database already migrated: a copy (``CREATE DATABASE …
TEMPLATE``, a file copy, no DDL) of a template database holding every migration a fresh
server applies, built once by the first test process that needs it. The template is named
after a hash of that migration set, so a changed migration makes a new one (and the old ones
are dropped); it accepts no connections, so copying it never meets "source database is being
accessed by other users". Tests of the migrations themselves ask for an empty database.

In CI (``CI`` set) an unreachable PostgreSQL fails the tests — there they must run, never
skip; elsewhere they skip with a message that says how to run them.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import secrets
import socket
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from hongyan.config.schema import ModulesSection
from hongyan.server import accounts as accounts_mod
from hongyan.server.features import load_module_classes
from hongyan.storage import migrations as migrations_mod
from hongyan.storage.db import open_database
from hongyan.storage.kv import KV_MIGRATIONS
from hongyan.storage.migrations import Migration, migrate

_TIMEOUT = 3.0

#: every test database's name starts so (:func:`drop_pg_database` drops nothing else)
TEST_PREFIX = "hongyan_test_"
#: the templates' names: this, then the hash of the migration set
TEMPLATE_PREFIX = "hongyan_tmpl_"
#: Key of the PostgreSQL advisory lock (in the admin database) held while a template is
#: built ("HyTm"; the server's own migration locks live in the test databases).
_TEMPLATE_LOCK = 0x4879546D
#: how long a test process waits for another one that builds the template
_TEMPLATE_WAIT = "120s"
#: templates of other migration sets left in place (other checkouts' suites may use them)
_TEMPLATES_KEPT = 6


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


def _url(name: str) -> str:
    parts = urlsplit(postgres_admin_url())
    return urlunsplit(parts._replace(path="/" + name))


def server_migrations() -> list[Migration]:
    """What a fresh server of the default configuration migrates, as ``Node.open_storage``
    gathers it: the core (accounts, key/value store), then each loaded feature module's.
    (tests/integration/test_pg_template.py checks that a node finds nothing left to do.)"""
    modules = ModulesSection()
    migs: list[Migration] = [*accounts_mod.MIGRATIONS, *KV_MIGRATIONS]
    for cls in load_module_classes(modules.disabled, modules.package):
        migs.extend(cls.migrations)
    return migs


def template_name(migrations: Iterable[Migration]) -> str:
    """``hongyan_tmpl_<hash>``: the hash covers every migration's id and SQL, and the source
    of :mod:`hongyan.storage.migrations` (the ``schema_versions`` table, the DDL rendering)."""
    h = hashlib.sha256(Path(migrations_mod.__file__).read_bytes())
    for m in sorted(migrations, key=lambda m: (m.component, m.version)):
        h.update(repr((m.component, m.version, m.statements)).encode())
    return TEMPLATE_PREFIX + h.hexdigest()[:16]


@functools.cache
def _planned() -> tuple[str, tuple[Migration, ...]]:
    """This process's template: its name and its migrations (read once)."""
    migs = server_migrations()
    return template_name(migs), tuple(migs)


#: the template this process made sure of (each test has an event loop of its own, so only
#: the name is kept, not a connection)
_template_ready: str | None = None


async def _exists(conn: Any, name: str) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))


async def _ensure_template(conn: Any) -> str:
    """The template's name, after building it unless it exists (``conn``: an admin session).

    Several test processes may get here at once: the building happens under an advisory lock,
    in a database of another name that is renamed once complete, so that a template under its
    final name is always whole (a process killed while building leaves only a ``…_b<pid>``,
    which the next build drops)."""
    global _template_ready
    name, migs = _planned()
    if _template_ready == name or await _exists(conn, name):
        _template_ready = name
        return name
    await conn.execute(f"SET lock_timeout = '{_TEMPLATE_WAIT}'")
    await conn.execute("SELECT pg_advisory_lock($1)", _TEMPLATE_LOCK)
    try:
        if not await _exists(conn, name):
            # builds a killed process left behind, and the oldest templates of other
            # migration sets beyond the newest few (other checkouts' suites may be using
            # them right now: worktrees of branches with other migrations run side by side)
            others = await conn.fetch(
                "SELECT datname FROM pg_database WHERE starts_with(datname, $1) "
                "AND datname <> $2 ORDER BY oid DESC", TEMPLATE_PREFIX, name)
            kept = 0
            for row in others:
                other = str(row[0])
                if "_b" not in other.removeprefix(TEMPLATE_PREFIX) and kept < _TEMPLATES_KEPT:
                    kept += 1
                    continue
                if "_b" in other.removeprefix(TEMPLATE_PREFIX) and _building(other):
                    continue
                await conn.execute(f'DROP DATABASE IF EXISTS "{other}" WITH (FORCE)')
            build = f"{name}_b{os.getpid()}"
            await conn.execute(f'CREATE DATABASE "{build}"')
            try:
                await _migrate(_url(build), migs)
                await conn.execute(f'ALTER DATABASE "{build}" WITH ALLOW_CONNECTIONS false')
                await conn.execute(f'ALTER DATABASE "{build}" RENAME TO "{name}"')
            except BaseException:
                await conn.execute(f'DROP DATABASE IF EXISTS "{build}" WITH (FORCE)')
                raise
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _TEMPLATE_LOCK)
        await conn.execute("RESET lock_timeout")
    _template_ready = name
    return name


def _building(build: str) -> bool:
    """Whether the process a ``…_b<pid>`` build is named after still runs (on this host)."""
    try:
        os.kill(int(build.rsplit("_b", 1)[1]), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


async def _migrate(url: str, migs: Iterable[Migration]) -> None:
    db = await open_database(url, pool_size=1)
    try:
        await migrate(db, migs)
    finally:
        await db.close()


async def create_temp_pg_database(*, migrated: bool = False) -> str:
    """Create ``hongyan_test_<random hex>`` and return its URL: empty, or with ``migrated``
    a copy of the template (every migration a fresh server applies, recorded as applied)."""
    import asyncpg

    global _template_ready
    name = TEST_PREFIX + secrets.token_hex(6)
    conn = await asyncpg.connect(postgres_admin_url(), timeout=_TIMEOUT)
    try:
        if not migrated:
            await conn.execute(f'CREATE DATABASE "{name}"')
        else:
            for attempt in (1, 2):
                template = await _ensure_template(conn)
                try:
                    await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
                    break
                except asyncpg.InvalidCatalogNameError:
                    # dropped meanwhile as stale (by a process with other migrations): again
                    _template_ready = None
                    if attempt == 2:
                        raise
    finally:
        await conn.close()
    return _url(name)


async def drop_pg_database(url: str) -> None:
    """Drop a database made by :func:`create_temp_pg_database` (closing its sessions)."""
    import asyncpg

    name = urlsplit(url).path.lstrip("/")
    if not name.startswith(TEST_PREFIX):
        raise ValueError(f"refusing to drop {name!r}: not a test database")
    conn = await asyncpg.connect(postgres_admin_url(), timeout=_TIMEOUT)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
