"""A generic per-user key/value store for small XML payloads (private XML storage XEP-0049,
vCards, last activity).

Values are TEXT (XML is text). ``set`` is an upsert (``INSERT … ON CONFLICT … DO UPDATE SET
value = excluded.value``), which SQLite (3.24+) and PostgreSQL both accept.
"""

from __future__ import annotations

from hongyan.storage.db import Database
from hongyan.storage.migrations import Migration

KV_MIGRATIONS: tuple[Migration, ...] = (
    Migration("kv", 1, (
        """CREATE TABLE kv_store (
            username TEXT NOT NULL,
            ns TEXT NOT NULL,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (username, ns, key)
        )""",
    )),
)


class KeyValueStore:
    """``(username, ns, key) -> str``; ``key`` defaults to "" for one value per namespace."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, username: str, ns: str, key: str = "") -> str | None:
        value = await self._db.fetchval(
            "SELECT value FROM kv_store WHERE username=? AND ns=? AND key=?", username, ns, key)
        return None if value is None else str(value)

    async def set(self, username: str, ns: str, key: str, value: str) -> None:
        await self._db.execute(
            "INSERT INTO kv_store (username, ns, key, value) VALUES (?,?,?,?) "
            "ON CONFLICT (username, ns, key) DO UPDATE SET value = excluded.value",
            username, ns, key, value)

    async def setdefault(self, username: str, ns: str, key: str, value: str) -> str:
        """The value stored under the key, ``value`` stored first when there is none: the
        first writer wins a race (a node's workers starting at once agree on a secret)."""
        await self._db.execute(
            "INSERT INTO kv_store (username, ns, key, value) VALUES (?,?,?,?) "
            "ON CONFLICT (username, ns, key) DO NOTHING", username, ns, key, value)
        stored = await self.get(username, ns, key)
        assert stored is not None
        return stored

    async def delete(self, username: str, ns: str, key: str = "") -> None:
        await self._db.execute("DELETE FROM kv_store WHERE username=? AND ns=? AND key=?",
                               username, ns, key)

    async def delete_user(self, username: str) -> None:
        await self._db.execute("DELETE FROM kv_store WHERE username=?", username)
