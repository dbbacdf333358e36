"""XEP-0160 offline messages: a chat/normal message for an account with no available resource is
stored (with a XEP-0203 delay stamp) and delivered, in order, at the account's next initial
presence. Stored in the database, so it survives restarts and ``kill -9`` (SQLite WAL commits are
durable across a process crash).

Delivery is at-least-once: rows are deleted only after they were written to the client's
connection, so a crash in the middle of a delivery can repeat a message, never lose one. (Stream
management acknowledgements, when the client uses them, will narrow this further.)
A full per-user quota bounces the message to its sender with ``service-unavailable`` and a text
that says why, as XEP-0160 §5 allows; nothing is dropped silently.
"""

from __future__ import annotations

import asyncio

from hongyan.server.hooks import (
    AccountDeleted,
    InitialPresence,
    MessageUndeliverable,
    OfflineStored,
)
from hongyan.server.module import Module, ModuleAPI, hook
from hongyan.storage.migrations import Migration
from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element
from hongyan.xmpp.errors import StanzaError, StreamError
from hongyan.xmpp.parser import parse_element
from hongyan.xmpp.stamps import xmpp_datetime

CHATSTATES = "http://jabber.org/protocol/chatstates"
HINTS = "urn:xmpp:hints"

MIGRATIONS = (
    Migration("offline", 1, (
        """CREATE TABLE offline_messages (
            id {pk},
            username TEXT NOT NULL,
            created_at {bigint} NOT NULL,
            stanza TEXT NOT NULL
        )""",
        "CREATE INDEX offline_messages_user ON offline_messages (username, id)",
    )),
)

class Offline(Module):
    name = "offline"
    xeps = {"0160": "1.0.1", "0203": "2.0"}
    features = frozenset({NS.OFFLINE})
    migrations = MIGRATIONS

    def __init__(self, api: ModuleAPI) -> None:
        super().__init__(api)
        # per-user lock and how many tasks hold or wait for it; dropped when none does (a
        # lock that merely looks unlocked may already be promised to a waiter)
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    def _enter(self, username: str) -> asyncio.Lock:
        lock, users = self._locks.get(username) or (asyncio.Lock(), 0)
        self._locks[username] = (lock, users + 1)
        return lock

    def _leave(self, username: str) -> None:
        lock, users = self._locks[username]
        if users > 1:
            self._locks[username] = (lock, users - 1)
        else:
            del self._locks[username]

    @hook(MessageUndeliverable)
    async def on_undeliverable(self, ev: MessageUndeliverable) -> bool:
        el = ev.stanza
        children = list(el.elements)
        if any(c.xmlns == HINTS and c.name == "no-store" for c in children):
            return True
        if children and all(c.xmlns == CHATSTATES for c in children):
            return True  # chat states alone are not worth keeping (XEP-0085 §5.6)
        if await self.store(ev.to.local, [el]):
            self.api.router.bounce(el, StanzaError(
                "service-unavailable", f"the offline storage of {ev.to} is full", type="wait"))
        elif self.api.hooks.has(OfflineStored):
            await self.api.hooks.fire(OfflineStored(ev.to.local, el))
        return True

    async def store(self, username: str, stanzas: list[Element]) -> list[Element]:
        """Store ``stanzas`` for ``username``, in order, with a delay stamp; return those the
        quota refused. Holds the user's lock, so that a batch (stream management handing over
        a session's unacknowledged messages) is not interleaved with messages arriving now."""
        lock = self._enter(username)
        try:
            async with lock:
                count = await self.api.db.fetchval(
                    "SELECT COUNT(*) FROM offline_messages WHERE username=?", username)
                room = max(0, self.api.config.offline.quota - int(count or 0))
                keep, refused = stanzas[:room], stanzas[room:]
                now = self.api.now()
                rows = []
                for el in keep:
                    stored = Element(el.name, el.xmlns, dict(el.attrs), list(el.children))
                    stored.add("delay", NS.DELAY,
                               {"from": self.api.domain, "stamp": xmpp_datetime(now)},
                               "Offline Storage")
                    rows.append((username, int(now), stored.to_str("")))
                if len(rows) == 1:
                    await self.api.db.execute(
                        "INSERT INTO offline_messages (username, created_at, stanza) "
                        "VALUES (?,?,?)", *rows[0])
                elif rows:
                    await self.api.db.executemany(
                        "INSERT INTO offline_messages (username, created_at, stanza) "
                        "VALUES (?,?,?)", rows)
                return refused
        finally:
            self._leave(username)

    @hook(InitialPresence)
    async def on_initial(self, ev: InitialPresence) -> None:
        session = ev.session
        if session.jid is None:
            return
        username = session.jid.local
        lock = self._enter(username)
        try:
            async with lock:
                rows = await self.api.db.fetchall(
                    "SELECT id, stanza FROM offline_messages WHERE username=? ORDER BY id",
                    username)
                if not rows:
                    return
                for _id, xml in rows:
                    try:
                        stanza = parse_element(xml)
                    except StreamError:
                        self.log.error("unreadable offline message %s of %s", _id, username)
                        continue
                    stanza.attrs["to"] = str(session.jid)
                    session.send(stanza)
                await self.api.db.execute(
                    "DELETE FROM offline_messages WHERE username=? AND id<=?",
                    username, rows[-1][0])
        finally:
            self._leave(username)

    @hook(AccountDeleted)
    async def on_deleted(self, ev: AccountDeleted) -> None:
        await self.api.db.execute("DELETE FROM offline_messages WHERE username=?", ev.username)


MODULE = Offline
