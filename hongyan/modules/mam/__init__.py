"""XEP-0313 Message Archive Management (``urn:xmpp:mam:2``) for user archives, with XEP-0359
stanza ids and XEP-0059 paging.

Every chat/normal message between local users that carries something worth keeping is archived
in the sender's and the recipient's archive. The recipient's archive id is added to the
delivered message as ``<stanza-id by='user@domain' id=.../>``; any stanza-id a client put in
that claims one of our JIDs is removed first (XEP-0359 §5), archived or not.

Routing never waits for the database: the sync ``StanzaInbound`` hook decides, adds the
stanza-id and asks the router for the message's serialization (``StanzaInbound.serialized``):
the router serializes it once, after every hook ran, for the archive and for delivery alike.
One row per message (``mam_log``), whichever archives hold it: ``sender`` and ``recipient``
name the archives (usernames; NULL for a side that does not archive it, or is not local), and
the stanza is stored once. The event loop queues as little as it can per message (id,
archives, the two full JIDs, the stanza: :data:`Queued`); the table's columns (bare JIDs,
resources, conversation key) are made of that by :func:`expand` in the process that writes the
rows. The queue is handed to ``Database.bulk_insert`` (on SQLite, a writer process) as one
batch every ``mam.flush_interval`` seconds or every ``mam.flush_rows`` messages. A query (and
shutdown) flushes the queue first, so it sees every message routed before it.

Why one row (version 2 of the schema; version 1 had a row per archive, keyed (owner, id), with
a second index on (owner, peer, id)): with 100 users chatting, SQLite spent 31-42 µs of CPU per
message on version 1 and 24-31 µs on version 2 (``bench/archive_layout.py``, 500 messages a
commit). Queries read the view ``mam_messages`` (owner, id, peer, peer_res, conv, stanza): the
union of the sender's and the recipient's side, which SQLite and PostgreSQL merge in id order on
the ``(sender, id)`` and ``(recipient, id)`` indexes. ``with`` uses the conversation index
``(conv, id, sender, recipient)`` (~10 µs of the writer's time per message, for pages of ~1 ms
instead of a walk through the owner's whole history). Version 1's rows (``mam_legacy``) are
converted at start.

Ids are integers: microseconds since the epoch, made strictly increasing per node
(``max(now_us, last + 1)``), so an id is also the archive time: ``start``/``end`` become an id
range on the owner indexes, and no clock column is needed. Both sides' archives use
the same id. The stanza-id is the integer in decimal.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from hongyan.modules import archive_query as query
from hongyan.modules.archive_query import MAM, MAM_EXTENDED, ArchiveOptions
from hongyan.modules.roster import Roster
from hongyan.server.hooks import (
    AccountDeleted,
    Bind2Prepare,
    StanzaInbound,
    StanzaOutbound,
    anywhere,
)
from hongyan.server.module import Iq, Module, ModuleAPI, Timer, hook, iq_handler, retrieved
from hongyan.storage.batch import HandOver
from hongyan.storage.migrations import Migration
from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element, Rendered, escape_attr
from hongyan.xmpp.errors import StanzaError
from hongyan.xmpp.jid import JID, JIDError

if TYPE_CHECKING:
    from hongyan.server.cluster import Cluster

log = logging.getLogger(__name__)
SID = "urn:xmpp:sid:0"
_WITH_NS = "<message xmlns='" + NS.CLIENT + "'"
_SID_XML_HEAD = "<stanza-id xmlns='" + SID + "' by='{}' id='"  # + id + "'/>"
HINTS = "urn:xmpp:hints"
CHATSTATES = "http://jabber.org/protocol/chatstates"

#: payloads that make a message without a body worth archiving (XEP-0313 §5.1.1: "messages
#: that contain ... other payloads the server deems archivable"): encryption, receipts and
#: markers (clients sync read state through the archive), corrections, retractions,
#: reactions, out-of-band data.
ARCHIVABLE_NS = frozenset({
    "eu.siacs.conversations.axolotl", "urn:xmpp:omemo:2", "urn:xmpp:openpgp:0",
    "jabber:x:encrypted", "urn:xmpp:receipts", "urn:xmpp:chat-markers:0",
    "urn:xmpp:message-correct:0", "urn:xmpp:message-retract:1", "urn:xmpp:message-retract:0",
    "urn:xmpp:reactions:0", "jabber:x:oob", "urn:xmpp:jingle-message:0",
})

MIGRATIONS = (
    Migration("mam", 1, (
        """CREATE TABLE mam_messages (
            owner TEXT NOT NULL,
            id {bigint} NOT NULL,
            peer TEXT NOT NULL,
            peer_res TEXT NOT NULL,
            stanza TEXT NOT NULL,
            PRIMARY KEY (owner, id)
        )""",
        "CREATE INDEX mam_messages_peer ON mam_messages (owner, peer, id)",
        """CREATE TABLE mam_prefs (
            username TEXT PRIMARY KEY,
            default_mode TEXT NOT NULL,
            always_json TEXT NOT NULL,
            never_json TEXT NOT NULL
        )""",
    )),
    # One row per message instead of one per archive (see the module docstring); version 1's
    # rows are converted when the module starts (it knows the domain their keys need).
    Migration("mam", 2, (
        "ALTER TABLE mam_messages RENAME TO mam_legacy",
        """CREATE TABLE mam_log (
            id {bigint} PRIMARY KEY,
            sender TEXT,
            recipient TEXT,
            from_jid TEXT NOT NULL,
            from_res TEXT NOT NULL,
            to_jid TEXT NOT NULL,
            to_res TEXT NOT NULL,
            conv TEXT NOT NULL,
            stanza TEXT NOT NULL
        )""",
        "CREATE INDEX mam_log_sender ON mam_log (sender, id)",
        "CREATE INDEX mam_log_recipient ON mam_log (recipient, id)",
        "CREATE INDEX mam_log_conv ON mam_log (conv, id, sender, recipient)",
        """CREATE VIEW mam_messages AS
            SELECT sender AS owner, id, to_jid AS peer, to_res AS peer_res, conv, stanza
              FROM mam_log WHERE sender IS NOT NULL
            UNION ALL
            SELECT recipient AS owner, id, from_jid AS peer, from_res AS peer_res, conv, stanza
              FROM mam_log WHERE recipient IS NOT NULL""",
    )),
)

#: A message as queued on the event loop: [id, sender's archive, recipient's archive, from (full
#: JID), to (full JID), stanza]; an archive is a username, or None when that side does not
#: archive it; the stanza is None until the router has serialized the message (and stays None
#: if a later hook stopped it). :func:`expand` makes the table's row of it where the rows are
#: written (the SQLite writer process), not on the event loop.
Queued = list[Any]
#: (id, sender, recipient, from_jid, from_res, to_jid, to_res, conv, stanza): a mam_log row
Row = tuple[int, str | None, str | None, str, str, str, str, str, str]
INSERT = ("INSERT INTO mam_log (id, sender, recipient, from_jid, from_res, to_jid, to_res, "
          "conv, stanza) VALUES (?,?,?,?,?,?,?,?,?)")
#: per recipient JID: its stanza-id's ``by`` and the stanza-id's text up to the id (bounded)
_SID_CACHE = 4096
YES, NO, ROSTER = "yes", "no", "roster"
_MODES = {"always": YES, "never": NO, "roster": ROSTER}


@dataclass(slots=True)
class Prefs:
    default: str
    always: set[str] = field(default_factory=set)
    never: set[str] = field(default_factory=set)

    @classmethod
    def stored(cls, mode: str, always_json: str, never_json: str) -> Prefs:
        """From a ``mam_prefs`` row."""
        return cls(mode, set(json.loads(always_json)), set(json.loads(never_json)))


def conversation(a: str, b: str) -> str:
    """The key of the conversation between bare JIDs ``a`` and ``b`` (the same both ways)."""
    return f"{a} {b}" if a < b else f"{b} {a}"


def expand(q: Queued) -> Row:
    """The ``mam_log`` row of a queued message (run by the process that writes the rows)."""
    mid, sender, recipient, frm, to, stanza = q
    a, _, a_res = frm.partition("/")  # a bare JID holds no '/'
    b, _, b_res = to.partition("/")
    return (mid, sender, recipient, a, a_res, b, b_res, conversation(a, b), stanza)


def _with_peer(owner: str, peer: JID) -> list[tuple[str, object]]:
    """``with`` on ``owner``'s archive: a bare JID is every resource, a full JID only that one
    (the conversation's index finds the rows; the owner's side of it is the other JID)."""
    conds: list[tuple[str, object]] = [("conv=?", conversation(owner, peer.bare_str))]
    if peer.resource:
        conds.append(("peer_res=?", peer.resource))
    return conds


def _matches(jids: set[str], peer: JID) -> bool:
    return bool(jids) and (peer.bare_str in jids or str(peer) in jids or peer.domain in jids)


class Mam(Module):
    name = "mam"
    xeps = {"0313": "1.1.1", "0359": "0.7.0", "0059": "1.0.0"}
    features = frozenset()
    account_features = frozenset({MAM, MAM_EXTENDED, SID})
    depends = ("roster",)
    migrations = MIGRATIONS

    def __init__(self, api: ModuleAPI) -> None:
        super().__init__(api)
        cfg = self.options = api.options(ArchiveOptions)
        self._default: str = cfg.default
        self._default_mode = _MODES[cfg.default]
        self._flush_interval = cfg.flush_interval
        self._flush_rows = cfg.flush_rows
        self._max_queued = cfg.max_queued
        self._handover = HandOver()  # senders waiting for the queue
        self._max_page = cfg.max_page
        self._last_id = 0
        #: with several workers, worker k of n writes ids ≡ k (mod n): no two collide
        self._id_step = 1
        self._id_residue = 0
        self._queue: list[Queued] = []
        self._clock = api.clock
        self._sid_heads: dict[JID, tuple[str, str]] = {}
        self._domain = api.domain
        self._roster_check: set[tuple[str, int]] = set()
        self._timer: Timer | None = None
        self._flush_lock = asyncio.Lock()
        self._flushing: asyncio.Task[None] | None = None
        #: done once the queued rows are committed (made when someone asks), and the rows
        #: being written now
        self._queued_done: asyncio.Future[None] | None = None
        self._writing: asyncio.Future[None] | None = None
        self._known: set[str] = set()
        self.prefs: dict[str, Prefs] = {}

    async def start(self) -> None:
        self.api.durable(self.committed)
        self.api.on_notice("mam-prefs", self._peer_prefs)
        self.api.on_notice("mam-flush", self._peer_flush)
        self.api.metric("gauge", "archive_queue", "messages queued for the user archives, not "
                        "yet handed to the database", lambda: len(self._queue))
        await self._convert_legacy()
        last = await self.api.db.fetchval("SELECT MAX(id) FROM mam_log")
        self._last_id = int(last or 0)
        for user, mode, always, never in await self.api.db.fetchall(
                "SELECT username, default_mode, always_json, never_json FROM mam_prefs"):
            self.prefs[user] = Prefs.stored(mode, always, never)
        if self.options.retention_days > 0:
            self.api.spawn(self._retention_loop())

    async def stop(self) -> None:
        await self.flush()

    async def _convert_legacy(self) -> None:
        """Move version 1's rows (one per archive, in ``mam_legacy``) into ``mam_log``, in one
        transaction. The two copies of a message share an id: they become one row with both
        archives; a row alone becomes a row of one archive, its owner as the recipient (the
        direction does not matter to queries: each side reads its own peer columns)."""
        db = self.api.db
        if await db.fetchone("SELECT 1 FROM mam_legacy LIMIT 1") is None:
            return
        c = ' COLLATE "C"' if db.dialect == "postgresql" else ""  # code point order, as Python
        me = "owner || '@' || ?"
        async with db.transaction() as tx:
            await tx.execute(
                "INSERT INTO mam_log (id, sender, recipient, from_jid, from_res, to_jid, to_res, "
                "conv, stanza) SELECT a.id, a.owner, b.owner, b.peer, b.peer_res, a.peer, "
                f"a.peer_res, CASE WHEN a.peer{c} < b.peer{c} THEN a.peer || ' ' || b.peer "
                "ELSE b.peer || ' ' || a.peer END, a.stanza "
                "FROM mam_legacy a JOIN mam_legacy b ON b.id = a.id AND b.owner > a.owner")
            await tx.execute(
                "INSERT INTO mam_log (id, sender, recipient, from_jid, from_res, to_jid, to_res, "
                f"conv, stanza) SELECT id, NULL, owner, peer, peer_res, {me}, '', "
                f"CASE WHEN peer{c} < ({me}){c} THEN peer || ' ' || {me} "
                f"ELSE {me} || ' ' || peer END, stanza FROM mam_legacy l WHERE NOT EXISTS "
                "(SELECT 1 FROM mam_legacy m WHERE m.id = l.id AND m.owner <> l.owner)",
                *[self._domain] * 4)
            n = await tx.execute("DELETE FROM mam_legacy")
        log.info("mam: converted %d archived messages of schema version 1", n)

    # -- archiving (hot path) -------------------------------------------------------------------
    def _decide(self, owner: str, peer: JID) -> str:
        """YES, NO or ROSTER (decided at flush, off the message path)."""
        p = self.prefs.get(owner)
        if p is None:
            mode = self._default
        else:
            if _matches(p.never, peer):
                return NO
            if _matches(p.always, peer):
                return YES
            mode = p.default
        return _MODES[mode]

    def _archivable(self, el: Element) -> bool:
        """One pass over a message's children: stanza-ids claiming our JIDs out (XEP-0359
        §5), and whether it is worth archiving."""
        keep = no_store = False
        forged = None
        for c in el.children:
            if c.__class__ is str:
                continue
            ns = c.xmlns  # type: ignore[union-attr]
            if ns == NS.CLIENT:
                if c.name == "body":  # type: ignore[union-attr]
                    keep = True
            elif ns == SID:
                if c.name == "stanza-id" and self._ours(c.attrs.get("by", "")):  # type: ignore[union-attr]
                    forged = [c] if forged is None else [*forged, c]
            elif ns == HINTS:
                name = c.name  # type: ignore[union-attr]
                if name == "no-store" or name == "no-permanent-store":
                    no_store = True  # no break: a forged stanza-id may follow the hint
                elif name == "store":
                    keep = True
            elif ns in ARCHIVABLE_NS:
                keep = True
        if forged is not None:
            for c in forged:
                el.children.remove(c)
        return keep and not no_store and el.attrs.get("type", "normal") in ("chat", "normal")

    @hook(StanzaOutbound, priority=-90)  # after blocking stopped what it stops
    def on_outbound(self, ev: StanzaOutbound) -> None:
        """A message a local user sends to another server: only the sender's archive keeps
        it here (the recipient's server archives its side); messages between local users
        are archived on their way in (:meth:`on_inbound`), both sides at once."""
        el, to = ev.stanza, ev.to
        remote = self.api.router.remote
        if el.name != "message" or to is None or to.domain == self._domain or \
                remote is None or self.api.router.serves(to.domain) or \
                not remote.federates(to.domain) or not self._archivable(el):
            return
        sender = ev.sender
        theirs = self._decide(sender.local, to) if self.prefs else self._default_mode
        if theirs is NO:
            return
        mid = self._next_id()
        self._queue.append([mid, sender.local, None, sender.text, to.text,
                            el.to_str(NS.CLIENT)])
        if theirs is ROSTER:
            self._roster_check.add((sender.local, mid))
        self._queued()

    def _next_id(self) -> int:
        """A new archive id: now in µs, strictly increasing, ≡ this worker's residue."""
        mid = int(self._clock() * 1_000_000)
        if mid <= self._last_id:
            mid = self._last_id + 1
        if self._id_step > 1:
            mid += (self._id_residue - mid) % self._id_step
        self._last_id = mid
        return mid

    def _queued(self) -> bool:
        """Flush soon after a message was queued; True: the sender must wait for the
        hand-over (the writes fall behind)."""
        queue = self._queue
        if len(queue) >= self._flush_rows:
            self._start_flush()
            return len(queue) >= self._max_queued
        if self._timer is None:
            self._timer = self.api.call_later(self._flush_interval, self._start_flush)
        return False

    @anywhere  # every worker holds every archive preference
    @hook(StanzaInbound, priority=-90)  # after blocking, before carbons copy it
    def on_inbound(self, ev: StanzaInbound) -> None:
        el = ev.stanza
        if el.name != "message" or not self._archivable(el):
            return
        to, sender = ev.to, ev.sender
        local_sender = sender.domain == self._domain and bool(sender.local) \
            and sender.local != to.local  # a message to oneself: one copy in one archive
        if self.prefs:
            mine = self._decide(to.local, sender)
            theirs = self._decide(sender.local, to) if local_sender else NO
            if mine is NO and theirs is NO:
                return
        else:
            mine = self._default_mode
            if mine is NO:
                return
            theirs = mine if local_sender else NO
        # One id for both sides: one row, keyed by the id (unique per node): now in µs,
        # strictly increasing (written here, not in a method: this runs per message).
        mid = int(self._clock() * 1_000_000)
        if mid <= self._last_id:
            mid = self._last_id + 1
        if self._id_step > 1:  # several workers: each takes the ids ≡ its index
            mid += (self._id_residue - mid) % self._id_step
        self._last_id = mid
        if mine is not NO:
            sid = str(mid)
            cached = self._sid_heads.get(to)
            if cached is None:
                cached = self._sid_head(to)
            el.children.append(Rendered("stanza-id", SID, {"by": cached[0], "id": sid},
                                        cached[1] + sid + "'/>"))
        queue = self._queue
        queue.append([mid, None if theirs is NO else sender.local,
                      None if mine is NO else to.local, sender.text, to.text, None])
        if mine is ROSTER:
            self._roster_check.add((to.local, mid))
        if theirs is ROSTER:
            self._roster_check.add((sender.local, mid))
        if len(queue) >= self._flush_rows:
            self._start_flush()
            if len(queue) >= self._max_queued:
                # writes fall behind: the sender waits until this queue is handed over
                ev.wait = self._handover.wait()
        elif self._timer is None:
            self._timer = self.api.call_later(self._flush_interval, self._start_flush)
        # The router serializes the message once, after every hook ran (carbons may still
        # remove <private/>), and hands the text here and the bytes to the recipient.
        ev.serialized = self._serialized

    def _serialized(self, xml: str) -> None:
        """The message just queued, as delivered (the router calls this before routing
        anything else, so it is the last queued)."""
        queue = self._queue
        if queue:
            queue[-1][5] = xml

    def _sid_head(self, to: JID) -> tuple[str, str]:
        heads = self._sid_heads
        if len(heads) >= _SID_CACHE:
            heads.clear()
        by = to.bare_str  # (a localpart may hold ' and &)
        head = heads[to] = (by, _SID_XML_HEAD.format(escape_attr(by)))
        return head

    def _ours(self, by: str) -> bool:
        domain = self._domain
        return by == domain or by.endswith("@" + domain) or by.startswith(domain + "/")

    def _start_flush(self) -> None:
        self._timer = None
        if self._flushing is None or self._flushing.done():
            self._flushing = self.api.spawn(self.flush())

    def committed(self) -> asyncio.Future[None] | None:
        """Done once every message queued so far is committed (failed if its write failed);
        None when nothing is queued or being written. Stream management acks wait for it
        (``ModuleAPI.durable``): an acknowledged message is in the archive even if the
        server is killed right after. It does not hurry the write (``flush_interval``)."""
        if self._queue:
            fut = self._queued_done
            if fut is None:
                fut = self._queued_done = asyncio.get_running_loop().create_future()
                fut.add_done_callback(retrieved)
            return fut
        writing = self._writing
        return writing if writing is not None and not writing.done() else None

    async def flush(self) -> None:
        """Write every queued row (one transaction); returns when they are committed."""
        async with self._flush_lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            while self._queue:
                queued, self._queue = self._queue, []
                check, self._roster_check = self._roster_check, set()
                done, self._queued_done = self._queued_done, None
                if done is None:
                    done = asyncio.get_running_loop().create_future()
                    done.add_done_callback(retrieved)
                self._writing = done
                self._handover.release()
                try:
                    rows = await self._filter(queued, check)
                    if rows:
                        await self.api.db.bulk_insert(INSERT, rows, expand)
                except BaseException as exc:
                    if not done.done():
                        done.set_exception(exc if isinstance(exc, Exception)
                                           else RuntimeError("archive write cancelled"))
                    raise
                if not done.done():
                    done.set_result(None)

    async def _filter(self, queued: list[Queued], check: set[tuple[str, int]]
                      ) -> list[Queued]:
        """The queued messages to write: without a stanza (stopped after the archive's hook),
        without the archives of accounts that do not exist (a message to a nonexistent user is
        bounced after the hook ran) and of owners who archive only roster contacts when the
        peer is not one; none left with no archive."""
        out: list[Queued] = []
        known = self._known
        for q in queued:
            if q[5] is None:
                continue
            s_owner, r_owner = q[1], q[2]
            if not check and (s_owner is None or s_owner in known) \
                    and (r_owner is None or r_owner in known):
                out.append(q)  # the common case: both archives are known accounts'
                continue
            mid, frm, to = q[0], q[3], q[4]
            s_keep = s_owner is None or (s_owner in known and (s_owner, mid) not in check)
            r_keep = r_owner is None or (r_owner in known and (r_owner, mid) not in check)
            if not s_keep:
                s_owner = await self._keeps(s_owner, mid, to, check)
            if not r_keep:
                r_owner = await self._keeps(r_owner, mid, frm, check)
            if s_owner is None and r_owner is None:
                continue
            out.append([mid, s_owner, r_owner, frm, to, q[5]])
        return out

    async def _keeps(self, owner: str, mid: int, peer: str,
                     check: set[tuple[str, int]]) -> str | None:
        """``owner`` if its archive keeps message ``mid`` with ``peer`` (a JID, full or
        bare), else None."""
        if owner not in self._known:
            if not await self.api.accounts.exists(owner):
                return None
            self._known.add(owner)
        if (owner, mid) in check and peer.partition("/")[0] not in \
                await self.api.module(Roster).items(owner):
            return None
        return owner

    # -- retention ------------------------------------------------------------------------------
    async def _retention_loop(self) -> None:
        interval = self.options.cleanup_interval
        while True:
            await self.cleanup()
            await self.api.sleep(interval)

    async def cleanup(self) -> int:
        """Remove messages older than ``mam.retention_days``; return how many."""
        days = self.options.retention_days
        if days <= 0:
            return 0
        await self.flush()
        cutoff = int((self.api.now() - days * 86400) * 1_000_000)
        return await self.api.db.execute("DELETE FROM mam_log WHERE id<?", cutoff)

    # -- queries (parsing, paging and results: :mod:`.query`, shared with room archives) -------
    @iq_handler(MAM, "query", "get", scope=("self", "bare"))
    def on_form(self, iq: Iq) -> Element:
        self._own(iq)
        return iq.result(query.form_element())

    @staticmethod
    def _own(iq: Iq) -> None:
        if iq.to.local != iq.sender.local:
            raise StanzaError("forbidden", "you may only query your own archive")

    @iq_handler(MAM, "query", "set", scope=("self", "bare"))
    async def on_query(self, iq: Iq) -> Element:
        self._own(iq)
        owner = iq.sender.local
        q = iq.payload
        form = query.parse_form(q)
        max_n, after, before = query.parse_rsm(q, self._max_page)
        await self.flush_everywhere()
        rows, complete, count = await self.page(owner, form, max_n, after, before)
        flip = q.find("flip-page", MAM) is not None
        # Stored as written on the client stream; inside <forwarded/> it needs its namespace.
        rows = [(mid, xml if xml.startswith("<message xmlns=")
                 else _WITH_NS + xml[len("<message"):]) for mid, xml in rows]
        query.send_results(iq.session, q, rows, flip)
        return iq.result(query.fin_element(rows, complete, count, flip))

    @hook(Bind2Prepare)
    async def on_bind2(self, ev: Bind2Prepare) -> None:
        """Bind2 (XEP-0386): the catch-up hint, the archive's first and last message, in
        ``<bound/>``, so a reconnecting client knows whether to query at all. What this
        process still queues is written first; with workers, messages another process queued
        in the last ``mam.flush_interval`` may be missing from it."""
        await self.flush()
        ev.bound.append(query.metadata_element(
            await query.bounds(self.api.db, "mam_messages", "owner", ev.username)))

    @iq_handler(MAM, "metadata", "get", scope=("self", "bare"))
    async def on_metadata(self, iq: Iq) -> Element:
        self._own(iq)
        await self.flush_everywhere()
        return iq.result(query.metadata_element(
            await query.bounds(self.api.db, "mam_messages", "owner", iq.sender.local)))

    async def page(self, owner: str, form: dict[str, list[str]], max_n: int,
                   after: str | None = None, before: str | None = None) -> query.Page:
        """One page of ``owner``'s archive (see :func:`.query.page`)."""
        return await query.page(self.api.db, "mam_messages", "owner", owner,
                                partial(_with_peer, f"{owner}@{self._domain}"), form,
                                max_n, after, before)

    # -- preferences ----------------------------------------------------------------------------
    def _prefs_element(self, username: str) -> Element:
        p = self.prefs.get(username) or Prefs(self._default)
        el = Element("prefs", MAM, {"default": p.default})
        for name, jids in (("always", p.always), ("never", p.never)):
            lst = el.add(name, MAM)
            for j in sorted(jids):
                lst.add("jid", MAM, text=j)
        return el

    @iq_handler(MAM, "prefs", "get", scope=("self", "bare"))
    def on_prefs_get(self, iq: Iq) -> Element:
        self._own(iq)
        return iq.result(self._prefs_element(iq.sender.local))

    @iq_handler(MAM, "prefs", "set", scope=("self", "bare"))
    async def on_prefs_set(self, iq: Iq) -> Element:
        self._own(iq)
        el = iq.payload
        mode = el.attrs.get("default", "")
        if mode not in ("always", "never", "roster"):
            raise StanzaError("bad-request", "default must be always, never or roster")
        lists: dict[str, set[str]] = {"always": set(), "never": set()}
        for name, jids in lists.items():
            lst = el.find(name, MAM)
            for j in lst.find_all("jid", MAM) if lst is not None else ():
                try:
                    jids.add(str(JID.parse(j.text.strip())))
                except JIDError:
                    raise StanzaError("jid-malformed", f"not a JID: {j.text!r}") from None
        username = iq.sender.local
        await self.api.db.execute("DELETE FROM mam_prefs WHERE username=?", username)
        await self.api.db.execute(
            "INSERT INTO mam_prefs (username, default_mode, always_json, never_json) "
            "VALUES (?,?,?,?)", username, mode,
            json.dumps(sorted(lists["always"])), json.dumps(sorted(lists["never"])))
        self.prefs[username] = Prefs(mode, lists["always"], lists["never"])
        await self._prefs_changed(username)
        return iq.result(self._prefs_element(username))

    # -- several workers ----------------------------------------------------------------------
    def cluster_ready(self, cluster: Cluster) -> None:
        self._id_step, self._id_residue = cluster.count, cluster.index

    async def _prefs_changed(self, username: str) -> None:
        """A message's two sides are decided on the sender's worker: every worker keeps every
        account's preferences. Returns once every worker has the new ones."""
        await self.api.broadcast("mam-prefs", username.encode())

    async def _peer_prefs(self, body: bytes) -> None:
        username = body.decode()
        self._known.discard(username)
        row = await self.api.db.fetchone(
            "SELECT default_mode, always_json, never_json FROM mam_prefs WHERE username=?",
            username)
        if row is None:
            self.prefs.pop(username, None)
        else:
            self.prefs[username] = Prefs.stored(row[0], row[1], row[2])

    async def flush_everywhere(self) -> None:
        """Write what this worker's queue holds and, with several workers, what theirs hold:
        a query then sees every message archived before it (an account's archive is
        written by the workers of the people it talks with)."""
        if self.api.cluster is None:
            await self.flush()
            return
        await asyncio.gather(self.flush(), self.api.broadcast("mam-flush"))

    async def _peer_flush(self, _body: bytes) -> None:
        await self.flush()

    @hook(AccountDeleted)
    async def on_deleted(self, ev: AccountDeleted) -> None:
        await self.flush()
        self._known.discard(ev.username)
        self.prefs.pop(ev.username, None)
        await self._prefs_changed(ev.username)
        user = ev.username
        async with self.api.db.transaction() as tx:
            # A message stays while the other side's archive holds it.
            await tx.execute("DELETE FROM mam_log WHERE sender=? AND recipient IS NULL", user)
            await tx.execute("DELETE FROM mam_log WHERE recipient=? AND sender IS NULL", user)
            await tx.execute("UPDATE mam_log SET sender=NULL WHERE sender=?", user)
            await tx.execute("UPDATE mam_log SET recipient=NULL WHERE recipient=?", user)
            await tx.execute("DELETE FROM mam_prefs WHERE username=?", user)


MODULE = Mam
