"""XEP-0313 Message Archive Management for user archives, with XEP-0359 stanza ids.

Every archivable 1:1 message is kept twice: in the sender's archive (when a local session sends
it) and in the recipient's (when it is routed to a local account), each copy with its own id.
The recipient's copy carries ``<stanza-id by='user@domain' id=.../>`` as delivered; any incoming
stanza-id claiming that ``by`` is removed first (XEP-0359 §4).

The message path never awaits the database: an archived row is appended to an in-memory queue
that a background flush writes with one ``executemany`` in one transaction, a few milliseconds
later or as soon as ``FLUSH_ROWS`` rows are waiting. A query flushes first, so it sees every
message routed before it; stopping the module flushes too.

Ids are integers: ``max(previous + 1, now in microseconds)``. They are unique, increase with
time, survive restarts (the clock moves on) and double as the archive time, so ``start``/``end``
filters are ranges over the same (owner, id) index that paging uses. The stanza-id is the
integer in decimal.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hongyan.server.hooks import AccountDeleted, StanzaInbound, StanzaOutbound
from hongyan.server.module import Iq, Module, ModuleAPI, hook, iq_handler
from hongyan.storage.migrations import Migration
from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element
from hongyan.xmpp.errors import StanzaError, StreamError
from hongyan.xmpp.jid import JID, JIDError
from hongyan.xmpp.parser import parse_element
from hongyan.xmpp.stamps import parse_xmpp_datetime, xmpp_datetime

MAM = "urn:xmpp:mam:2"
MAM_EXTENDED = "urn:xmpp:mam:2#extended"
SID = "urn:xmpp:sid:0"
RSM = "http://jabber.org/protocol/rsm"
FORWARD = "urn:xmpp:forward:0"
HINTS = "urn:xmpp:hints"
#: payloads worth archiving without a body (encrypted messages: OMEMO, OX, OTR-free E2E)
ARCHIVABLE_NS = frozenset({
    "eu.siacs.conversations.axolotl", "urn:xmpp:omemo:2", "urn:xmpp:openpgp:0",
    "jabber:x:encrypted",
})
FORM_FIELDS = ("with", "start", "end", "before-id", "after-id", "ids")
FLUSH_DELAY = 0.005
FLUSH_ROWS = 500
DEFAULT_MAX = 50
MAX_MAX = 250

MIGRATIONS = (
    Migration("mam", 1, (
        """CREATE TABLE mam_messages (
            owner TEXT NOT NULL,
            id {bigint} NOT NULL,
            with_jid TEXT NOT NULL,
            stanza TEXT NOT NULL,
            PRIMARY KEY (owner, id)
        )""",
        "CREATE INDEX mam_messages_with ON mam_messages (owner, with_jid, id)",
    )),
)

INSERT = ("INSERT INTO mam_messages (owner, id, with_jid, stanza) "
          "SELECT ?, CAST(? AS BIGINT), ?, ? "
          "WHERE EXISTS (SELECT 1 FROM accounts WHERE username=?)")


def archivable(el: Element) -> bool:
    """XEP-0313 §5.1.1: messages with a body or an encrypted payload, of type chat or normal,
    unless a XEP-0334 hint forbids storing them."""
    if el.attrs.get("type", "normal") not in ("chat", "normal"):
        return False
    keep = False
    for c in el.children:
        if isinstance(c, str):
            continue
        if c.xmlns == HINTS and c.name in ("no-store", "no-permanent-store"):
            return False
        if (c.name == "body" and c.xmlns == NS.CLIENT) or c.xmlns in ARCHIVABLE_NS:
            keep = True
    return keep


class Mam(Module):
    name = "mam"
    xeps = {"0313": "1.1.1", "0359": "0.7.0", "0059": "1.0.0"}
    account_features = frozenset({MAM, MAM_EXTENDED, SID})
    migrations = MIGRATIONS

    def __init__(self, api: ModuleAPI) -> None:
        super().__init__(api)
        self._last_id = 0
        self._queue: list[tuple[str, int, str, str, str]] = []
        self._flush_task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        # the sender's archive text of the message being routed, reused for the recipient's
        # (one serialization instead of two): (stanza, its child count, text)
        self._memo: tuple[Element, int, str] | None = None

    async def start(self) -> None:
        last = await self.api.db.fetchval("SELECT MAX(id) FROM mam_messages")
        self._last_id = int(last or 0)

    async def stop(self) -> None:
        await self.flush()

    # -- archiving (hot path: no await) -------------------------------------------------------
    def _next_id(self) -> int:
        nid = int(self.api.now() * 1_000_000)
        if nid <= self._last_id:
            nid = self._last_id + 1
        self._last_id = nid
        return nid

    def _enqueue(self, nid: int, owner: str, with_jid: str, xml: str) -> None:
        self._queue.append((owner, nid, with_jid, xml, owner))
        if len(self._queue) >= FLUSH_ROWS:
            self._start_flush()
        elif self._timer is None and self._flush_task is None:
            self._timer = asyncio.get_running_loop().call_later(FLUSH_DELAY, self._start_flush)

    def _start_flush(self) -> None:
        self._timer = None
        if self._flush_task is None and self._queue:
            self._flush_task = self.api.spawn(self._flush_loop())

    async def _flush_loop(self) -> None:
        try:
            while self._queue:
                rows, self._queue = self._queue, []
                try:
                    async with self.api.db.transaction() as tx:
                        await tx.executemany(INSERT, rows)
                except Exception:
                    self.log.exception("could not archive %d messages", len(rows))
        finally:
            self._flush_task = None

    async def flush(self) -> None:
        """Write every queued row (a query calls this first, so it sees what was routed)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._flush_task is not None or self._queue:
            task = self._flush_task
            if task is None:
                self._start_flush()
                task = self._flush_task
            if task is not None:
                await asyncio.shield(task)

    @hook(StanzaOutbound)
    def on_outbound(self, ev: StanzaOutbound) -> None:
        el = ev.stanza
        if el.name != "message" or not archivable(el):
            return
        to = ev.to if ev.to is not None else ev.sender.bare
        xml = el.to_str("")
        self._memo = (el, len(el.children), xml)
        self._enqueue(self._next_id(), ev.sender.local, str(to.bare), xml)

    @hook(StanzaInbound)
    def on_inbound(self, ev: StanzaInbound) -> None:
        el = ev.stanza
        if el.name != "message":
            return
        owner_jid = str(ev.to.bare)
        for c in list(el.children):
            if (not isinstance(c, str) and c.name == "stanza-id" and c.xmlns == SID
                    and c.attrs.get("by") == owner_jid):
                el.children.remove(c)
        if not archivable(el):
            return
        nid = self._next_id()
        sid = Element("stanza-id", SID, {"by": owner_jid, "id": str(nid)})
        memo, self._memo = self._memo, None
        if (memo is not None and memo[0] is el and memo[1] == len(el.children)
                and memo[2].endswith("</message>")):
            # the same stanza, unchanged since the sender's copy was serialized: append the
            # stanza-id to that text
            xml = memo[2][:-10] + sid.to_str(NS.CLIENT) + "</message>"
        else:
            xml = ""
        el.children.append(sid)
        self._enqueue(nid, ev.to.local, str(ev.sender.bare), xml or el.to_str(""))

    # -- queries --------------------------------------------------------------------------------
    @iq_handler(MAM, "query", "get", scope=("self", "bare"))
    def on_form(self, iq: Iq) -> Element:
        self._own(iq)
        q = Element("query", MAM)
        x = q.add("x", NS.DATA_FORMS, {"type": "form"})
        f = x.add("field", None, {"var": "FORM_TYPE", "type": "hidden"})
        f.add("value", None, None, MAM)
        for var, ftype in (("with", "jid-single"), ("start", "text-single"),
                           ("end", "text-single"), ("before-id", "text-single"),
                           ("after-id", "text-single"), ("ids", "text-multi")):
            x.add("field", None, {"var": var, "type": ftype})
        return iq.result(q)

    @iq_handler(MAM, "query", "set", scope=("self", "bare"))
    async def on_query(self, iq: Iq) -> Element:
        self._own(iq)
        owner = iq.sender.local
        where, args, refs = self._filters(owner, iq.payload)
        rsm = iq.payload.find("set", RSM)
        limit = DEFAULT_MAX
        after: int | None = None
        before: int | None = None
        backward = False
        if rsm is not None:
            text = rsm.find_text("max", RSM)
            if text is not None:
                try:
                    limit = int(text)
                except ValueError:
                    raise StanzaError("bad-request", "max must be an integer") from None
                if limit < 0:
                    raise StanzaError("bad-request", "max must not be negative")
                limit = min(limit, MAX_MAX)
            a = rsm.find_text("after", RSM)
            if a is not None:
                after = self._parse_id(a)
            b = rsm.find("before", RSM)
            if b is not None:
                backward = True
                if b.text.strip():
                    before = self._parse_id(b.text)
        await self.flush()
        db = self.api.db
        for ref in (after, before, *refs):
            if ref is not None and await db.fetchval(
                    "SELECT 1 FROM mam_messages WHERE owner=? AND id=?", owner, ref) is None:
                raise StanzaError("item-not-found", f"no message {ref} in the archive")
        page_where, page_args = list(where), list(args)
        if after is not None:
            page_where.append("id > ?")
            page_args.append(after)
        if before is not None:
            page_where.append("id < ?")
            page_args.append(before)
        order = "DESC" if backward else "ASC"
        rows = await db.fetchall(
            f"SELECT id, stanza FROM mam_messages WHERE {' AND '.join(page_where)} "
            f"ORDER BY id {order} LIMIT ?", *page_args, limit + 1)
        more = len(rows) > limit
        rows = list(rows[:limit])
        if backward:
            rows.reverse()
        queryid = iq.payload.attrs.get("queryid")
        session = iq.session
        if session is not None:
            for nid, xml in rows:
                session.send(self._result(iq, int(nid), str(xml), queryid))
        fin = Element("fin", MAM)
        if not more:
            fin.attrs["complete"] = "true"
        s = fin.add("set", RSM)
        if rows:
            s.add("first", RSM, None, str(rows[0][0]))
            s.add("last", RSM, None, str(rows[-1][0]))
        if not more and after is None and before is None:
            # The whole result set is this page. Elsewhere the count (optional in XEP-0059)
            # is left out: COUNT(*) over a large archive costs far more than the page.
            s.add("count", RSM, None, str(len(rows)))
        return iq.result(fin)

    def _own(self, iq: Iq) -> None:
        if iq.to.bare != iq.sender.bare:
            raise StanzaError("forbidden", "only the owner may read an archive")

    @staticmethod
    def _parse_id(text: str) -> int:
        try:
            return int(text.strip())
        except ValueError:
            raise StanzaError("item-not-found", f"no message {text!r} in the archive") from None

    def _filters(self, owner: str, query: Element
                 ) -> tuple[list[str], list[Any], list[int]]:
        """SQL conditions from the query's form, and the ids it refers to (which must exist)."""
        where: list[str] = ["owner = ?"]
        args: list[Any] = [owner]
        refs: list[int] = []
        form = query.find("x", NS.DATA_FORMS)
        if form is None:
            return where, args, refs
        if form.attrs.get("type", "submit") != "submit":
            raise StanzaError("bad-request", "the query form must be of type submit")
        for field in form.find_all("field", NS.DATA_FORMS):
            var = field.attrs.get("var", "")
            values = [v.text for v in field.find_all("value", NS.DATA_FORMS)]
            if var == "FORM_TYPE":
                if values != [MAM]:
                    raise StanzaError("bad-request", f"FORM_TYPE must be {MAM}")
                continue
            if var not in FORM_FIELDS:
                raise StanzaError("bad-request", f"unknown field {var!r}")
            if var == "ids":
                ids = [self._form_id(v) for v in values]
                if not ids:
                    raise StanzaError("bad-request", "ids needs at least one value")
                where.append(f"id IN ({','.join('?' * len(ids))})")
                args.extend(ids)
                continue
            if len(values) != 1:
                raise StanzaError("bad-request", f"field {var!r} takes one value")
            value = values[0].strip()
            if var == "with":
                try:
                    jid = JID.parse(value)
                except JIDError:
                    raise StanzaError("bad-request", f"'with' is not a JID: {value!r}") from None
                where.append("with_jid = ?")
                args.append(str(jid.bare))
            elif var in ("start", "end"):
                try:
                    ts = parse_xmpp_datetime(value)
                except ValueError:
                    raise StanzaError("bad-request", f"{var!r} is not a DateTime") from None
                where.append("id >= ?" if var == "start" else "id <= ?")
                args.append(int(ts * 1_000_000) if var == "start"
                            else int(ts * 1_000_000) + 999)
            else:
                ref = self._form_id(value)
                where.append("id > ?" if var == "after-id" else "id < ?")
                args.append(ref)
                refs.append(ref)
        return where, args, refs

    @staticmethod
    def _form_id(text: str) -> int:
        try:
            return int(text.strip())
        except ValueError:
            raise StanzaError("item-not-found", f"no message {text!r} in the archive") from None

    def _result(self, iq: Iq, nid: int, xml: str, queryid: str | None) -> Element:
        msg = Element("message", NS.CLIENT, {"to": str(iq.sender), "from": str(iq.sender.bare)})
        attrs = {"id": str(nid)}
        if queryid is not None:
            attrs["queryid"] = queryid
        result = msg.add("result", MAM, attrs)
        fwd = result.add("forwarded", FORWARD)
        fwd.add("delay", NS.DELAY, {"stamp": xmpp_datetime(nid / 1_000_000)})
        try:
            fwd.append(parse_element(xml))
        except StreamError:
            self.log.error("unreadable archived message %s of %s", nid, iq.sender.bare)
        return msg

    @hook(AccountDeleted)
    async def on_deleted(self, ev: AccountDeleted) -> None:
        await self.flush()
        await self.api.db.execute("DELETE FROM mam_messages WHERE owner=?", ev.username)


MODULE = Mam
