"""XEP-0313 Message Archive Management (``urn:xmpp:mam:2``) for user archives, with XEP-0359
stanza ids and XEP-0059 paging.

Every chat/normal message between local users that carries something worth keeping is archived
in the sender's and the recipient's archive. The recipient's archive id is added to the
delivered message as ``<stanza-id by='user@domain' id=.../>``; any stanza-id a client put in
that claims one of our JIDs is removed first (XEP-0359 §5), archived or not.

Routing never waits for the database: the sync ``StanzaInbound`` hook decides, adds the
stanza-id and asks the router for the message's serialization (``StanzaInbound.serialized``):
the router serializes it once, after every hook ran, for the archive and for delivery alike.
The rows (one per archive, both with the same id) go to an in-memory queue, which is written
with one ``executemany`` in one transaction every ``mam.flush_interval`` seconds or every
``mam.flush_rows`` rows. A query (and shutdown) flushes the queue first, so it sees every
message routed before it.

Ids are integers: microseconds since the epoch, made strictly increasing per node
(``max(now_us, last + 1)``), so an id is also the archive time: ``start``/``end`` become an id
range on the ``(owner, id)`` index, and no clock column or second index is needed. The
stanza-id is the integer in decimal.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from functools import partial

from hongyan.modules.roster import Roster
from hongyan.server.hooks import AccountDeleted, StanzaInbound
from hongyan.server.module import Iq, Module, ModuleAPI, hook, iq_handler
from hongyan.storage.migrations import Migration
from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element, escape_attr
from hongyan.xmpp.errors import StanzaError
from hongyan.xmpp.jid import JID, JIDError
from hongyan.xmpp.stamps import parse_xmpp_datetime, xmpp_datetime

MAM = "urn:xmpp:mam:2"
MAM_EXTENDED = "urn:xmpp:mam:2#extended"
SID = "urn:xmpp:sid:0"
RSM = "http://jabber.org/protocol/rsm"
XDATA = "jabber:x:data"
FORWARD = "urn:xmpp:forward:0"
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
FIELDS = frozenset({"FORM_TYPE", "with", "start", "end", "before-id", "after-id", "ids"})
MAX_IDS = 250
COUNT_LIMIT = 1_000

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
)

Row = tuple[str, int, str, str, str]
YES, NO, ROSTER = "yes", "no", "roster"
_MODES = {"always": YES, "never": NO, "roster": ROSTER}


@dataclass(slots=True)
class Prefs:
    default: str
    always: set[str] = field(default_factory=set)
    never: set[str] = field(default_factory=set)


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
        cfg = api.config.mam
        self._default: str = cfg.default
        self._default_mode = _MODES[cfg.default]
        self._flush_interval = cfg.flush_interval
        self._flush_rows = cfg.flush_rows
        self._max_page = cfg.max_page
        self._last_id = 0
        self._queue: list[Row] = []
        self._domain = api.domain
        self._roster_check: set[tuple[str, int]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._flush_lock = asyncio.Lock()
        self._flushing: asyncio.Task[None] | None = None
        self._known: set[str] = set()
        self.prefs: dict[str, Prefs] = {}

    async def start(self) -> None:
        last = await self.api.db.fetchval("SELECT MAX(id) FROM mam_messages")
        self._last_id = int(last or 0)
        for user, mode, always, never in await self.api.db.fetchall(
                "SELECT username, default_mode, always_json, never_json FROM mam_prefs"):
            self.prefs[user] = Prefs(mode, set(json.loads(always)), set(json.loads(never)))
        if self.api.config.mam.retention_days > 0:
            self.api.spawn(self._retention_loop())

    async def stop(self) -> None:
        await self.flush()

    # -- archiving (hot path) -------------------------------------------------------------------
    def next_id(self) -> int:
        nid = int(self.api.now() * 1_000_000)
        if nid <= self._last_id:
            nid = self._last_id + 1
        self._last_id = nid
        return nid

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

    @hook(StanzaInbound, priority=-90)  # after blocking, before carbons copy it
    def on_inbound(self, ev: StanzaInbound) -> None:
        el = ev.stanza
        if el.name != "message":
            return
        # One pass over the children: forged stanza-ids out, archivable or not.
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
        if not keep or no_store or el.attrs.get("type", "normal") not in ("chat", "normal"):
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
        # One id for both copies: ids are unique per node, rows are keyed by (owner, id).
        mid = self.next_id()
        if mine is not NO:
            el.children.append(Element("stanza-id", SID, {"by": to.bare_str, "id": str(mid)}))
        # The router serializes the message once, after every hook ran (carbons may still
        # remove <private/>), and hands the text here and the bytes to the recipient.
        ev.serialized = partial(self._queue_rows, mid, mine, theirs, to, sender)

    def _queue_rows(self, mid: int, mine: str, theirs: str, to: JID, sender: JID,
                    xml: str) -> None:
        queue = self._queue
        if mine is not NO:
            queue.append((to.local, mid, sender.bare_str, sender.resource, xml))
            if mine is ROSTER:
                self._roster_check.add((to.local, mid))
        if theirs is not NO:
            queue.append((sender.local, mid, to.bare_str, to.resource, xml))
            if theirs is ROSTER:
                self._roster_check.add((sender.local, mid))
        if len(queue) >= self._flush_rows:
            self._start_flush()
        elif self._timer is None:
            self._timer = self.api.call_later(self._flush_interval, self._start_flush)

    def _ours(self, by: str) -> bool:
        domain = self._domain
        return by == domain or by.endswith("@" + domain) or by.startswith(domain + "/")

    def _start_flush(self) -> None:
        self._timer = None
        if self._flushing is None or self._flushing.done():
            self._flushing = self.api.spawn(self.flush())

    async def flush(self) -> None:
        """Write every queued row (one transaction); returns when they are committed."""
        async with self._flush_lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            while self._queue:
                queued, self._queue = self._queue, []
                check, self._roster_check = self._roster_check, set()
                rows = await self._filter(queued, check)
                if rows:
                    await self.api.db.executemany(
                        "INSERT INTO mam_messages (owner, id, peer, peer_res, stanza) "
                        "VALUES (?,?,?,?,?)", rows)

    async def _filter(self, rows: list[Row], check: set[tuple[str, int]]) -> list[Row]:
        """Drop rows of accounts that do not exist (a message to a nonexistent user is bounced
        after the hook ran) and rows whose owner archives only roster contacts."""
        out: list[Row] = []
        accounts = self.api.accounts
        missing: set[str] = set()
        for row in rows:
            owner, mid, peer = row[0], row[1], row[2]
            if owner not in self._known:
                if owner in missing or not await accounts.exists(owner):
                    missing.add(owner)
                    continue
                self._known.add(owner)
            if (owner, mid) in check:
                items = await self.api.module(Roster).items(owner)
                if peer not in items:
                    continue
            out.append(row)
        return out

    # -- retention ------------------------------------------------------------------------------
    async def _retention_loop(self) -> None:
        interval = self.api.config.mam.cleanup_interval
        while True:
            await self.cleanup()
            await asyncio.sleep(interval)

    async def cleanup(self) -> int:
        """Remove messages older than ``mam.retention_days``; return how many."""
        days = self.api.config.mam.retention_days
        if days <= 0:
            return 0
        await self.flush()
        cutoff = int((self.api.now() - days * 86400) * 1_000_000)
        # Per account, on the (owner, id) key: no index on id alone to keep up on every write.
        removed = 0
        for username in await self.api.accounts.list():
            removed += await self.api.db.execute(
                "DELETE FROM mam_messages WHERE owner=? AND id<?", username, cutoff)
        return removed

    # -- queries --------------------------------------------------------------------------------
    @iq_handler(MAM, "query", "get", scope=("self", "bare"))
    def on_form(self, iq: Iq) -> Element:
        self._own(iq)
        q = Element("query", MAM)
        x = q.add("x", XDATA, {"type": "form"})
        x.add("field", XDATA, {"var": "FORM_TYPE", "type": "hidden"}).add("value", text=MAM)
        x.add("field", XDATA, {"var": "with", "type": "jid-single"})
        x.add("field", XDATA, {"var": "start", "type": "text-single"})
        x.add("field", XDATA, {"var": "end", "type": "text-single"})
        x.add("field", XDATA, {"var": "before-id", "type": "text-single"})
        x.add("field", XDATA, {"var": "after-id", "type": "text-single"})
        x.add("field", XDATA, {"var": "ids", "type": "text-multi"})
        return iq.result(q)

    @staticmethod
    def _own(iq: Iq) -> None:
        if iq.to.local != iq.sender.local:
            raise StanzaError("forbidden", "you may only query your own archive")

    @staticmethod
    def _form(query: Element) -> dict[str, list[str]]:
        x = query.find("x", XDATA)
        if x is None:
            return {}
        if x.attrs.get("type", "submit") != "submit":
            raise StanzaError("bad-request", "the form must be of type submit")
        out: dict[str, list[str]] = {}
        for f in x.find_all("field", XDATA):
            var = f.attrs.get("var", "")
            if var not in FIELDS:
                raise StanzaError("bad-request", f"unknown field {var!r}")
            out[var] = [v.text for v in f.find_all("value", XDATA)]
        ftype = out.pop("FORM_TYPE", [MAM])
        if ftype != [MAM]:
            raise StanzaError("bad-request", "FORM_TYPE must be urn:xmpp:mam:2")
        for var, values in out.items():
            if var != "ids" and len(values) != 1:
                raise StanzaError("bad-request", f"field {var!r} needs exactly one value")
        return out

    @staticmethod
    def _int_id(text: str) -> int:
        t = text.strip()
        if not t.isdigit() or len(t) > 18:
            raise StanzaError("item-not-found", f"no archived message {text!r}")
        return int(t)

    async def _exists(self, owner: str, text: str) -> int:
        mid = self._int_id(text)
        if await self.api.db.fetchone(
                "SELECT 1 FROM mam_messages WHERE owner=? AND id=?", owner, mid) is None:
            raise StanzaError("item-not-found", f"no archived message {text!r}")
        return mid

    @iq_handler(MAM, "query", "set", scope=("self", "bare"))
    async def on_query(self, iq: Iq) -> Element:
        self._own(iq)
        owner = iq.sender.local
        query = iq.payload
        form = self._form(query)
        rsm = query.find("set", RSM)
        max_n = self._max_page
        after = before = None
        if rsm is not None:
            text = rsm.find_text("max", RSM)
            if text is not None:
                if not text.strip().isdigit():
                    raise StanzaError("bad-request", "RSM max must be a number")
                max_n = min(int(text), self._max_page)
            after = rsm.find_text("after", RSM)
            before = rsm.find_text("before", RSM)
            if after is not None and before is not None:
                raise StanzaError("bad-request", "RSM after and before together")
        await self.flush()
        rows, complete, count = await self.page(owner, form, max_n, after, before)
        flip = query.find("flip-page", MAM) is not None
        session = iq.session
        if session is not None and session.jid is not None:
            head = (f"<message xmlns='jabber:client' to='{escape_attr(str(session.jid))}'>"
                    f"<result xmlns='{MAM}' id='")
            qid = query.attrs.get("queryid")
            qattr = f" queryid='{escape_attr(qid)}'" if qid is not None else ""
            for mid, xml in (reversed(rows) if flip else rows):
                stamp = xmpp_datetime(mid / 1_000_000)
                session.send_bytes(
                    f"{head}{mid}'{qattr}><forwarded xmlns='{FORWARD}'>"
                    f"<delay xmlns='urn:xmpp:delay' stamp='{stamp}'/>{xml}"
                    f"</forwarded></result></message>".encode())
        fin = Element("fin", MAM)
        if complete:
            fin.attrs["complete"] = "true"
        s = fin.add("set", RSM)
        if rows:
            first, last = (rows[-1][0], rows[0][0]) if flip else (rows[0][0], rows[-1][0])
            s.add("first", RSM, text=str(first))
            s.add("last", RSM, text=str(last))
        if count is not None:
            s.add("count", RSM, text=str(count))
        return iq.result(fin)

    async def page(self, owner: str, form: dict[str, list[str]], max_n: int,
                   after: str | None = None, before: str | None = None
                   ) -> tuple[list[tuple[int, str]], bool, int | None]:
        """One page of ``owner``'s archive: (rows (id, stanza) oldest first, whether it is the
        last page in the query's direction, how many messages match the filter, None when more
        than COUNT_LIMIT). ``before``
        (RSM, possibly empty = from the end) pages backward."""
        conds = ["owner=?"]
        args: list[object] = [owner]
        if "with" in form:
            try:
                peer = JID.parse(form["with"][0])
            except JIDError:
                raise StanzaError("bad-request", "'with' is not a JID") from None
            conds.append("peer=?")
            args.append(peer.bare_str)
            if peer.resource:
                conds.append("peer_res=?")
                args.append(peer.resource)
        for var, op in (("start", ">="), ("end", "<=")):
            if var in form:
                try:
                    ts = parse_xmpp_datetime(form[var][0])
                except ValueError:
                    raise StanzaError("bad-request", f"{var!r} is not a XEP-0082 DateTime"
                                      ) from None
                conds.append(f"id{op}?")
                args.append(int(ts * 1_000_000))
        for var, op in (("after-id", ">"), ("before-id", "<")):
            if var in form:
                conds.append(f"id{op}?")
                args.append(await self._exists(owner, form[var][0]))
        if "ids" in form:
            ids = [self._int_id(v) for v in form["ids"]]
            if not ids or len(ids) > MAX_IDS:
                raise StanzaError("bad-request", f"give 1 to {MAX_IDS} ids")
            conds.append("id IN (" + ",".join("?" * len(ids)) + ")")
            args.extend(ids)
        where = " AND ".join(conds)
        page_conds: list[str] = []
        page_args: list[object] = []
        backward = before is not None
        if after:
            page_conds.append("id>?")
            page_args.append(await self._exists(owner, after))
        elif before:
            page_conds.append("id<?")
            page_args.append(await self._exists(owner, before))
        pwhere = " AND ".join([where, *page_conds])
        order = "DESC" if backward else "ASC"
        rows = await self.api.db.fetchall(
            f"SELECT id, stanza FROM mam_messages WHERE {pwhere} ORDER BY id {order} LIMIT ?",
            *args, *page_args, max_n + 1)
        complete = len(rows) <= max_n
        rows = rows[:max_n]
        if backward:
            rows.reverse()
        # Counting a whole archive of a million rows costs a scan of its index (~150 ms on
        # SQLite), more than the page: count up to COUNT_LIMIT and leave <count/> out beyond
        # (XEP-0059 makes it optional).
        count = await self.api.db.fetchval(
            f"SELECT COUNT(*) FROM (SELECT 1 FROM mam_messages WHERE {where} LIMIT ?) AS c",
            *args, COUNT_LIMIT + 1)
        n = int(count or 0)
        return [(int(i), str(x)) for i, x in rows], complete, (n if n <= COUNT_LIMIT else None)

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
        return iq.result(self._prefs_element(username))

    @hook(AccountDeleted)
    async def on_deleted(self, ev: AccountDeleted) -> None:
        await self.flush()
        self._known.discard(ev.username)
        self.prefs.pop(ev.username, None)
        await self.api.db.execute("DELETE FROM mam_messages WHERE owner=?", ev.username)
        await self.api.db.execute("DELETE FROM mam_prefs WHERE username=?", ev.username)


MODULE = Mam
