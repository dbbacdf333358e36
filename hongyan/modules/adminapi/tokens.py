"""Bearer tokens of the admin API: made by ``hongyan token create``, kept only as a SHA-256
hash (a token is 256 random bits, so a fast hash is enough: nobody guesses one), scoped,
with an expiry, revocable.

A token reads ``hy_<id>_<secret>``: the id finds the row, the secret's hash is compared in
constant time. A token is never logged, and never shown again after it was made.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hongyan.storage.migrations import Migration

if TYPE_CHECKING:
    from hongyan.storage.db import Database

MIGRATIONS = (
    Migration("adminapi", 1, (
        """CREATE TABLE api_tokens (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            hash TEXT NOT NULL,
            scope TEXT NOT NULL,
            created_at {bigint} NOT NULL,
            expires_at {bigint} NOT NULL,
            revoked INTEGER NOT NULL DEFAULT 0
        )""",
    )),
)

#: ``admin``: every route; ``read``: the GET routes only
SCOPES = ("admin", "read")
_FORMAT = re.compile(r"hy_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")


@dataclass(frozen=True, slots=True)
class Token:
    id: str
    name: str
    scope: str
    created_at: int
    expires_at: int  # 0: never
    revoked: bool

    def state(self, now: float) -> str:
        if self.revoked:
            return "revoked"
        if self.expires_at and now >= self.expires_at:
            return "expired"
        return "active"


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class Tokens:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, scope: str, name: str, lifetime: float, now: float
                     ) -> tuple[Token, str]:
        """A new token (``lifetime`` seconds, 0: no expiry): its row and the token itself,
        which is nowhere else."""
        if scope not in SCOPES:
            raise ValueError(f"the scope is one of {', '.join(SCOPES)}")
        if lifetime < 0:
            raise ValueError("the lifetime is not negative")
        token_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        expires = int(now + lifetime) if lifetime else 0
        await self._db.execute(
            "INSERT INTO api_tokens (id, name, hash, scope, created_at, expires_at, revoked) "
            "VALUES (?,?,?,?,?,?,0)", token_id, name, _hash(secret), scope, int(now), expires)
        return (Token(token_id, name, scope, int(now), expires, False),
                f"hy_{token_id}_{secret}")

    async def list(self) -> list[Token]:
        rows = await self._db.fetchall(
            "SELECT id, name, scope, created_at, expires_at, revoked FROM api_tokens "
            "ORDER BY created_at, id")
        return [Token(r[0], r[1], r[2], int(r[3]), int(r[4]), bool(r[5])) for r in rows]

    async def revoke(self, token_id: str) -> bool:
        return await self._db.execute("UPDATE api_tokens SET revoked=1 WHERE id=?",
                                      token_id) > 0

    async def check(self, token: str, now: float) -> Token | None:
        """The active token ``token`` is, or None (unknown, wrong, revoked, expired)."""
        m = _FORMAT.fullmatch(token)
        if m is None:
            return None
        row = await self._db.fetchone(
            "SELECT id, name, scope, created_at, expires_at, revoked, hash FROM api_tokens "
            "WHERE id=?", m.group(1))
        if row is None or not hmac.compare_digest(str(row[6]), _hash(m.group(2))):
            return None
        found = Token(row[0], row[1], row[2], int(row[3]), int(row[4]), bool(row[5]))
        return found if found.state(now) == "active" else None


__all__ = ["MIGRATIONS", "SCOPES", "Token", "Tokens"]
