"""Accounts: usernames and their SCRAM salted keys. No password is ever stored."""

from __future__ import annotations

import asyncio
import builtins
from typing import TYPE_CHECKING

from hongyan.server import fast
from hongyan.storage.migrations import Migration
from hongyan.xmpp.jid import JIDError, prepare_localpart
from hongyan.xmpp.sasl import (
    SaslFailure,
    ScramCredentials,
    derive_scram,
    prepare_password,
    verify_password,
)

if TYPE_CHECKING:
    from hongyan.storage.db import Database

MIGRATIONS: tuple[Migration, ...] = (
    Migration("accounts", 1, (
        """CREATE TABLE accounts (
            username TEXT PRIMARY KEY,
            created_at {bigint} NOT NULL,
            sha1_salt {blob} NOT NULL, sha1_iterations INTEGER NOT NULL,
            sha1_stored_key {blob} NOT NULL, sha1_server_key {blob} NOT NULL,
            sha256_salt {blob} NOT NULL, sha256_iterations INTEGER NOT NULL,
            sha256_stored_key {blob} NOT NULL, sha256_server_key {blob} NOT NULL
        )""",
    )),
    # an administrator can disable an account (XEP-0133, the admin API): it cannot log in
    Migration("accounts", 2, (
        "ALTER TABLE accounts ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0",
    )),
)

MIGRATIONS += fast.MIGRATIONS  # FAST tokens go with the account (dropped with its password)

HASHES = ("sha1", "sha256")


class AccountError(Exception):
    """A user-facing account problem (exists, unknown, bad name or password)."""


class Accounts:
    def __init__(self, db: Database, iterations: int = 4096) -> None:
        self._db = db
        self._iterations = iterations
        self._known: set[str] = set()

    @staticmethod
    def prepare(username: str) -> str:
        try:
            return prepare_localpart(username)
        except JIDError as exc:
            raise AccountError(f"invalid username {username!r}: {exc}") from None

    async def _derive(self, password: str) -> list[ScramCredentials]:
        try:
            prepare_password(password)
        except SaslFailure as exc:
            raise AccountError(exc.text) from None
        return [
            await asyncio.to_thread(derive_scram, password, h, None, self._iterations)
            for h in HASHES
        ]

    async def create(self, username: str, password: str, now: float) -> str:
        user = self.prepare(username)
        if not password:
            raise AccountError("the password is empty")
        c1, c256 = await self._derive(password)
        sql = ("INSERT INTO accounts (username, created_at, sha1_salt, sha1_iterations, "
               "sha1_stored_key, sha1_server_key, sha256_salt, sha256_iterations, "
               "sha256_stored_key, sha256_server_key) VALUES (?,?,?,?,?,?,?,?,?,?) "
               "ON CONFLICT (username) DO NOTHING")
        n = await self._db.execute(sql, user, int(now), c1.salt, c1.iterations, c1.stored_key,
                                   c1.server_key, c256.salt, c256.iterations, c256.stored_key,
                                   c256.server_key)
        if n == 0:
            raise AccountError(f"the account {user!r} already exists")
        self._known.add(user)
        return user

    async def set_password(self, username: str, password: str) -> None:
        user = self.prepare(username)
        if not password:
            raise AccountError("the password is empty")
        c1, c256 = await self._derive(password)
        n = await self._db.execute(
            "UPDATE accounts SET sha1_salt=?, sha1_iterations=?, sha1_stored_key=?, "
            "sha1_server_key=?, sha256_salt=?, sha256_iterations=?, sha256_stored_key=?, "
            "sha256_server_key=? WHERE username=?",
            c1.salt, c1.iterations, c1.stored_key, c1.server_key, c256.salt, c256.iterations,
            c256.stored_key, c256.server_key, user)
        if n == 0:
            raise AccountError(f"no account {user!r}")
        await fast.forget(self._db, user)  # XEP-0484: a new password ends every token

    async def delete(self, username: str) -> bool:
        user = self.prepare(username)
        self._known.discard(user)
        await fast.forget(self._db, user)
        return await self._db.execute("DELETE FROM accounts WHERE username=?", user) > 0

    async def exists(self, username: str) -> bool:
        if username in self._known:
            return True
        row = await self._db.fetchone("SELECT 1 FROM accounts WHERE username=?", username)
        if row is not None:
            self._known.add(username)
            return True
        return False

    def forget(self, username: str) -> None:
        """Drop the cached existence of ``username`` (deleted elsewhere)."""
        self._known.discard(username)

    async def list(self) -> list[str]:
        return [r[0] for r in await self._db.fetchall(
            "SELECT username FROM accounts ORDER BY username")]

    async def page(self, offset: int, limit: int) -> builtins.list[str]:
        """Usernames in order, ``limit`` of them from ``offset``."""
        return [r[0] for r in await self._db.fetchall(
            "SELECT username FROM accounts ORDER BY username LIMIT ? OFFSET ?", limit, offset)]

    async def count(self) -> int:
        return int(await self._db.fetchval("SELECT COUNT(*) FROM accounts") or 0)

    async def created(self, username: str) -> int | None:
        """When the account was created (seconds since the epoch), None: no such account."""
        value = await self._db.fetchval("SELECT created_at FROM accounts WHERE username=?",
                                        username)
        return None if value is None else int(value)

    async def set_disabled(self, username: str, disabled: bool) -> None:
        """Disable an account (it cannot log in) or enable it again."""
        user = self.prepare(username)
        n = await self._db.execute("UPDATE accounts SET disabled=? WHERE username=?",
                                   int(disabled), user)
        if n == 0:
            raise AccountError(f"no account {user!r}")

    async def is_disabled(self, username: str) -> bool:
        return bool(await self._db.fetchval("SELECT disabled FROM accounts WHERE username=?",
                                            username))

    async def scram(self, username: str, hash_name: str) -> ScramCredentials | None:
        assert hash_name in HASHES
        row = await self._db.fetchone(
            f"SELECT {hash_name}_salt, {hash_name}_iterations, {hash_name}_stored_key, "
            f"{hash_name}_server_key FROM accounts WHERE username=?", username)
        if row is None:
            return None
        self._known.add(username)
        return ScramCredentials(hash_name, bytes(row[0]), int(row[1]), bytes(row[2]),
                                bytes(row[3]))

    async def check_password(self, username: str, password: str) -> bool:
        creds = await self.scram(username, "sha256")
        if creds is None:
            return False
        return await asyncio.to_thread(verify_password, creds, password)
