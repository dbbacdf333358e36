"""Invitations as stored: each one a row found by its token's SHA-256 hash (a token is 143
random bits, so a fast hash is enough), with who invites, the username it keeps for the
newcomer, how many uses it has and has had, when it expires, and whether it was revoked.

A token is shown once, when it is made, and never stored, logged or shown again."""

from __future__ import annotations

import hashlib
import secrets
import string
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hongyan.storage.migrations import Migration

if TYPE_CHECKING:
    from hongyan.storage.db import Database

MIGRATIONS = (
    Migration("invites", 1, (
        """CREATE TABLE invites (
            id TEXT PRIMARY KEY,
            hash TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL,
            inviter TEXT NOT NULL,
            username TEXT NOT NULL,
            max_uses INTEGER NOT NULL,
            used INTEGER NOT NULL DEFAULT 0,
            created_at {bigint} NOT NULL,
            expires_at {bigint} NOT NULL,
            revoked INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX invites_username ON invites (username)",
    )),
)

KINDS = ("account", "contact")
_ALPHABET = string.ascii_letters + string.digits
TOKEN_LENGTH = 24
_COLUMNS = "id, kind, inviter, username, max_uses, used, created_at, expires_at, revoked"


def new_token() -> str:
    """XEP-0401: "a securely generated random alpha-numeric string"."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(TOKEN_LENGTH))


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def plausible(token: str) -> bool:
    return len(token) == TOKEN_LENGTH and all(c in _ALPHABET for c in token)


@dataclass(frozen=True, slots=True)
class Invite:
    id: str
    #: "account": made by an administrator to make an account (XEP-0401 §3.4); "contact": a
    #: user's invitation to be its contact, which also makes an account (§3.1, ``ibr=y``)
    kind: str
    #: the local user the newcomer becomes a contact of, both ways ("": nobody)
    inviter: str
    #: the username kept for the newcomer ("": the newcomer chooses)
    username: str
    max_uses: int
    used: int
    created_at: int
    expires_at: int
    revoked: bool

    def state(self, now: float) -> str:
        if self.revoked:
            return "revoked"
        if self.used >= self.max_uses:
            return "used"
        if now >= self.expires_at:
            return "expired"
        return "active"

    def usable(self, now: float | None = None) -> bool:
        """Revoked or used up: never; expired: only when ``now`` is given (XEP-0445 checks
        the expiry once, when the token is presented, not at the registration after it)."""
        if self.revoked or self.used >= self.max_uses:
            return False
        return now is None or now < self.expires_at

    def json(self, now: float) -> dict[str, object]:
        return {"id": self.id, "kind": self.kind, "inviter": self.inviter,
                "username": self.username,
                "uses": self.max_uses, "used": self.used, "created_at": self.created_at,
                "expires_at": self.expires_at, "state": self.state(now)}


def _row(r: tuple[object, ...] | list[object]) -> Invite:
    return Invite(str(r[0]), str(r[1]), str(r[2]), str(r[3]), int(str(r[4])), int(str(r[5])),
                  int(str(r[6])), int(str(r[7])), bool(r[8]))


class InviteStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, kind: str, inviter: str, username: str, uses: int, ttl: float,
                     now: float) -> tuple[Invite, str]:
        """A new invitation: its row and its token (which is nowhere else)."""
        if kind not in KINDS:
            raise ValueError(f"the kind is one of {', '.join(KINDS)}")
        invite_id = secrets.token_hex(6)
        token = new_token()
        invite = Invite(invite_id, kind, inviter, username, uses, 0, int(now), int(now + ttl),
                        False)
        await self._db.execute(
            f"INSERT INTO invites ({_COLUMNS}, hash) VALUES (?,?,?,?,?,0,?,?,0,?)",
            invite_id, kind, inviter, username, uses, invite.created_at, invite.expires_at,
            token_hash(token))
        return invite, token

    async def find(self, token: str) -> Invite | None:
        if not plausible(token):
            return None
        row = await self._db.fetchone(f"SELECT {_COLUMNS} FROM invites WHERE hash=?",
                                      token_hash(token))
        return None if row is None else _row(row)

    async def get(self, invite_id: str) -> Invite | None:
        row = await self._db.fetchone(f"SELECT {_COLUMNS} FROM invites WHERE id=?", invite_id)
        return None if row is None else _row(row)

    async def list(self) -> list[Invite]:
        rows = await self._db.fetchall(f"SELECT {_COLUMNS} FROM invites "
                                       "ORDER BY created_at, id")
        return [_row(r) for r in rows]

    async def revoke(self, invite_id: str) -> bool:
        return await self._db.execute("UPDATE invites SET revoked=1 WHERE id=?",
                                      invite_id) > 0

    async def take(self, invite_id: str) -> bool:
        """Count one use, if one is left and the invitation was not revoked (atomically: two
        newcomers racing for the last use do not both get it)."""
        return await self._db.execute(
            "UPDATE invites SET used=used+1 WHERE id=? AND revoked=0 AND used<max_uses",
            invite_id) > 0

    async def give_back(self, invite_id: str) -> None:
        """A use taken for a registration that then failed."""
        await self._db.execute("UPDATE invites SET used=used-1 WHERE id=? AND used>0",
                               invite_id)

    async def active_of(self, inviter: str, now: float) -> int:
        """How many active invitations ``inviter`` made."""
        row = await self._db.fetchone(
            "SELECT COUNT(*) FROM invites WHERE inviter=? AND kind='contact' AND revoked=0 "
            "AND used<max_uses AND expires_at>?", inviter, int(now))
        return 0 if row is None else int(str(row[0]))

    async def reserved(self, username: str, now: float) -> bool:
        """An active invitation keeps ``username`` for its newcomer (XEP-0401 §5.2)."""
        row = await self._db.fetchone(
            "SELECT COUNT(*) FROM invites WHERE username=? AND revoked=0 AND used<max_uses "
            "AND expires_at>?", username, int(now))
        return row is not None and int(str(row[0])) > 0


__all__ = ["KINDS", "MIGRATIONS", "TOKEN_LENGTH", "Invite", "InviteStore", "plausible",
           "token_hash"]
