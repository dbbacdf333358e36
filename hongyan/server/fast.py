"""FAST tokens (XEP-0484): what lets a client that logged in once log in again in one round trip
with a Hashed Token mechanism (HT-SHA-256-NONE, -ENDP, -EXPR) instead of its password.

A token belongs to one account and one user agent (the SASL2 ``<user-agent id>``), and to the
mechanism it was requested for. Each (account, agent) has two slots, as XEP-0484 §6 suggests:
``new`` (the last token issued) and ``cur`` (the last one the client proved it holds). A login
checks ``new`` first; when that matches, it becomes ``cur`` and the previous ``cur`` is gone.
Issuing a token (on request, or when the token used is in the second half of its lifetime)
overwrites ``new``, so an unused token is invalidated by the next one, while the token in
``cur`` keeps working until the new one is used: a client that lost the ``<success/>`` carrying
the new token still gets in.

Storage: the token is never stored. A row holds a random nonce and the SHA-256 of the token;
the token itself is HMAC-SHA-256(server secret, "fast" ‖ account ‖ agent ‖ nonce), rebuilt
when the client presents its proof (the HT mechanisms key an HMAC with the token, so the server
must be able to compute it: a hash alone cannot check the proof). A copy of the token table
alone yields no token; the SHA-256 makes a tampered nonce fail. A password change and the
account's deletion drop every row of the account (:meth:`forget`); ``<fast invalidate/>``
drops the agent's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hongyan.storage.migrations import Migration
from hongyan.xmpp.sasl import HT_MECHANISMS, ht_initiator

if TYPE_CHECKING:
    from hongyan.storage.db import Database

MIGRATIONS = (
    Migration("fast", 1, (
        """CREATE TABLE fast_tokens (
            username TEXT NOT NULL,
            agent TEXT NOT NULL,
            slot TEXT NOT NULL,
            mechanism TEXT NOT NULL,
            nonce {blob} NOT NULL,
            digest {blob} NOT NULL,
            expires_at {bigint} NOT NULL,
            PRIMARY KEY (username, agent, slot)
        )""",
    )),
)

NEW = "new"
CURRENT = "cur"
MAX_AGENT = 256  # characters of a user-agent id we keep


@dataclass(frozen=True, slots=True)
class Issued:
    token: str
    expires_at: int  # seconds since the epoch


@dataclass(frozen=True, slots=True)
class Used:
    """A token that authenticated a login: its secret and its expiry."""

    token: bytes
    expires_at: int
    slot: str


class FastTokens:
    """The FAST tokens of a node's accounts, in its database."""

    def __init__(self, db: Database, secret: Callable[[], bytes], lifetime: float,
                 clock: Callable[[], float]) -> None:
        self._db = db
        self._secret = secret
        self.lifetime = lifetime
        self._clock = clock

    def _token(self, username: str, agent: str, nonce: bytes) -> bytes:
        key = hmac.new(self._secret(), b"fast", "sha256").digest()
        mac = hmac.new(key, b"\0".join((username.encode(), agent.encode(), nonce)),
                       "sha256").digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=")

    async def issue(self, username: str, agent: str, mechanism: str) -> Issued:
        """A new token for ``mechanism`` in the agent's ``new`` slot (replacing one unused)."""
        assert mechanism in HT_MECHANISMS
        nonce = os.urandom(16)
        token = self._token(username, agent, nonce)
        expires = int(self._clock() + self.lifetime)
        async with self._db.transaction() as tx:
            await tx.execute("DELETE FROM fast_tokens WHERE username=? AND agent=? AND slot=?",
                             username, agent, NEW)
            await tx.execute(
                "INSERT INTO fast_tokens (username, agent, slot, mechanism, nonce, digest, "
                "expires_at) VALUES (?,?,?,?,?,?,?)", username, agent, NEW, mechanism, nonce,
                hashlib.sha256(token).digest(), expires)
        return Issued(token.decode(), expires)

    async def check(self, username: str, agent: str, mechanism: str, proof: bytes,
                    cb_data: bytes) -> Used | None:
        """The token whose HT proof ``proof`` is (``new`` first), or None. A match in ``new``
        moves it to ``cur``, dropping the older token."""
        rows = await self._db.fetchall(
            "SELECT slot, mechanism, nonce, digest, expires_at FROM fast_tokens "
            "WHERE username=? AND agent=?", username, agent)
        now = self._clock()
        found: Used | None = None
        for slot, mech, nonce, digest, expires in sorted(rows, key=lambda r: r[0] != NEW):
            if mech != mechanism or int(expires) <= now:
                continue
            token = self._token(username, agent, bytes(nonce))
            if not hmac.compare_digest(hashlib.sha256(token).digest(), bytes(digest)):
                continue
            if hmac.compare_digest(ht_initiator(token, cb_data), proof):
                found = Used(token, int(expires), str(slot))
                break
        if found is not None and found.slot == NEW:
            async with self._db.transaction() as tx:
                await tx.execute("DELETE FROM fast_tokens WHERE username=? AND agent=? "
                                 "AND slot=?", username, agent, CURRENT)
                await tx.execute("UPDATE fast_tokens SET slot=? WHERE username=? AND agent=? "
                                 "AND slot=?", CURRENT, username, agent, NEW)
        return found

    def due(self, used: Used) -> bool:
        """The token used is in the second half of its lifetime: time to send a new one."""
        return used.expires_at - self._clock() < self.lifetime / 2

    async def invalidate(self, username: str, agent: str) -> None:
        await self._db.execute("DELETE FROM fast_tokens WHERE username=? AND agent=?",
                               username, agent)

    async def count(self, username: str) -> int:
        row = await self._db.fetchone("SELECT COUNT(*) FROM fast_tokens WHERE username=?",
                                      username)
        return 0 if row is None else int(row[0])


async def forget(db: Database, username: str) -> None:
    """Drop every token of ``username`` (its password changed, or it was deleted)."""
    await db.execute("DELETE FROM fast_tokens WHERE username=?", username)
