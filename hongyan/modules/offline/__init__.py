"""XEP-0160 offline messages: a chat/normal message for an account with no available resource is
stored (with a XEP-0203 delay stamp) and delivered, in order, at the account's next initial
presence. Stored in the database, so it survives restarts and ``kill -9`` (SQLite WAL commits are
durable across a process crash).

Delivery is at-least-once: rows are deleted only after they were written to the client's
connection, so a crash in the middle of a delivery can repeat a message, never lose one. (Stream
management acknowledgements, when the client uses them, will narrow this further.)
A full per-user quota bounces the message to its sender with ``service-unavailable`` and a text
that says why, as XEP-0160 §5 allows; nothing is dropped silently.

What is kept (:func:`disposition`, also the rule stream management applies to a session's
unacknowledged messages when it ends): every chat/normal message, stored exactly as it came
(receipts, chat markers, corrections, encrypted payloads without a body included), except

* a standalone chat-state notification (XEP-0085 §5.6, XEP-0160): a chat state with nothing
  beside it but a ``<thread/>``, hints or an origin-id, dropped without a word (it means
  nothing later). A ``<store/>`` hint keeps even that;
* one with a XEP-0334 ``<no-store/>`` hint: the sender asked that it not be stored, not even
  for later delivery, so it is not; and since RFC 6121 §8.5.2.2.1 leaves a server that does not
  store a chat/normal message only the error, the sender gets ``service-unavailable`` with a
  text that says why (it is not lost without the sender knowing).

``<no-permanent-store/>`` does not stop offline storage: XEP-0334 allows temporary storage "as a
normal part of delivery"; only the archive leaves it out.
"""

from __future__ import annotations

import asyncio

from hongyan.modules.events import InitialPresence, OfflineStored
from hongyan.modules.offline.options import OfflineOptions
from hongyan.server.hooks import AccountDeleted, MessageUndeliverable
from hongyan.server.module import Module, ModuleAPI, hook
from hongyan.storage.migrations import Migration
from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element
from hongyan.xmpp.errors import StanzaError, StreamError
from hongyan.xmpp.parser import parse_element
from hongyan.xmpp.stamps import xmpp_datetime

CHATSTATES = NS.CHATSTATES
HINTS = "urn:xmpp:hints"
SID = "urn:xmpp:sid:0"

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

NOT_STORED = StanzaError("service-unavailable", "the recipient is offline and the message asked "
                         "not to be stored (XEP-0334 <no-store/>)")
STORE, DROP, REFUSE = 0, 1, 2  # what offline storage does with a message (see disposition)


def disposition(el: Element) -> int:
    """What becomes of a chat/normal message for an unavailable account: ``STORE`` it for later
    delivery, ``DROP`` it (a chat state alone) or ``REFUSE`` it (``<no-store/>``: the sender is
    told). See the module docstring. One pass over the children, no allocation."""
    no_store = store = state = other = False
    for c in el.children:
        if not isinstance(c, Element):
            continue
        ns = c.xmlns
        if ns == HINTS:
            if c.name == "no-store":
                no_store = True
            elif c.name == "store":
                store = True
        elif ns == CHATSTATES:
            state = True
        elif not (ns == SID or (ns == NS.CLIENT and c.name == "thread")):
            other = True
    if state and not (store or other):
        return DROP
    if no_store:
        return REFUSE
    return STORE


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
        #: messages this process stored (``/metrics``)
        self.stored = 0

    async def start(self) -> None:
        self.api.metric("counter", "offline_messages_stored", "messages stored for accounts "
                        "with no available resource", lambda: self.stored)

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
        verdict = disposition(el)
        if verdict == REFUSE:
            self.api.router.bounce(el, NOT_STORED)
            return True
        if verdict == DROP:
            return True
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
                room = max(0, self.api.options(OfflineOptions).quota - int(count or 0))
                keep, refused = stanzas[:room], stanzas[room:]
                now = self.api.now()
                rows = []
                domain = self.api.domain
                for el in keep:
                    stored = Element(el.name, el.xmlns, dict(el.attrs), list(el.children))
                    if not any(c.xmlns == NS.DELAY and c.attrs.get("from") == domain
                               for c in el.elements):  # not stamped by us before
                        stored.add("delay", NS.DELAY,
                                   {"from": domain, "stamp": xmpp_datetime(now)},
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
                self.stored += len(rows)
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
