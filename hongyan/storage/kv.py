"""A generic per-user key/value store for small XML blobs (vCards, private XML, last activity)."""

from __future__ import annotations

from hongyan.storage.db import Database
from hongyan.storage.migrations import Migration

KV_MIGRATIONS = (
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

    async def delete(self, username: str, ns: str, key: str = "") -> None:
        await self._db.execute("DELETE FROM kv_store WHERE username=? AND ns=? AND key=?",
                               username, ns, key)

    async def delete_user(self, username: str) -> None:
        await self._db.execute("DELETE FROM kv_store WHERE username=?", username)
