"""IRCv3 ``CHATHISTORY`` (draft/chathistory) of an IRC session as XEP-0313 queries.

``CHATHISTORY LATEST|BEFORE|AFTER|AROUND|BETWEEN <target> <ref...> <limit>``: a ``#channel``
is read from its room's archive (the query goes to the room, which decides who may read it),
a nick from the user's own archive filtered ``with`` that account. A reference is ``*``,
``msgid=<archive id>`` (the ``msgid`` tag of the messages shown: their XEP-0359 stanza-id,
which is their archive id) or ``timestamp=<ISO 8601>``; references are exclusive, as the
spec asks. A ``msgid`` ref is an RSM ``after``/``before`` id (or the ``#extended`` fields
``after-id``/``before-id`` when the page runs the other way), a ``timestamp`` the form's
``start``/``end``. Archive ids here are microseconds since the epoch, which orders refs of
both kinds against each other (BETWEEN picks its direction so). The answer is a
``chathistory`` batch (with the ``batch`` capability), oldest first; failures are standard
replies ``FAIL CHATHISTORY <code> ...`` (they need no capability).
"""

from __future__ import annotations

import asyncio
import datetime
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from hongyan.irc.connection import valid_nick
from hongyan.irc.message import Message
from hongyan.server.irc_text import irc_time, lines_of
from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element
from hongyan.xmpp.jid import JID, JIDError
from hongyan.xmpp.stamps import parse_xmpp_datetime

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from hongyan.config.schema import IRCSection
    from hongyan.irc.connection import IrcConnection


class _Targets(Protocol):
    """What the history asks of the session's commands (``irc_commands.Commands``)."""

    def room_jid(self, name: str) -> JID | None: ...
    def user_jid(self, nick: str) -> JID | None: ...


class IrcHost(Protocol):
    """What the history uses of its session (``IrcSession``; a Protocol of its own, so that
    this module names nothing of the commands, which name it)."""

    cfg: IRCSection
    irc: IrcConnection
    service: str
    jid: JID | None

    @property
    def commands(self) -> _Targets: ...
    def route(self, el: Element) -> Awaitable[object] | None: ...

MAM = "urn:xmpp:mam:2"
RSM = "http://jabber.org/protocol/rsm"
XDATA = "jabber:x:data"
FORWARD = "urn:xmpp:forward:0"
#: seconds an archive query may take before the command fails
QUERY_TIMEOUT = 10.0
SUBCOMMANDS = ("LATEST", "BEFORE", "AFTER", "AROUND", "BETWEEN")
#: XMPP errors of an archive query meaning "you may not read that"
_DENIED = frozenset({"forbidden", "registration-required", "not-authorized",
                     "service-unavailable", "remote-server-not-found", "not-allowed"})


@dataclass(frozen=True)
class Ref:
    """A message reference: ``*``, ``msgid=...`` or ``timestamp=...``."""

    kind: str
    value: str = ""
    #: microseconds since the epoch (a timestamp, or a msgid, which is one here)
    micros: int = 0


def parse_ref(text: str) -> Ref | None:
    if text == "*":
        return Ref("*")
    kind, sep, value = text.partition("=")
    if not sep or not value:
        return None
    if kind == "msgid":
        micros = int(value) if value.isdigit() and len(value) <= 18 else -1
        return Ref("msgid", value, micros)
    if kind == "timestamp":
        try:
            seconds = parse_xmpp_datetime(value)
        except ValueError:
            return None
        return Ref("timestamp", value, round(seconds * 1_000_000))
    return None


def stamp(micros: int) -> str:
    """A XEP-0082 DateTime with microseconds."""
    when = datetime.datetime.fromtimestamp(micros / 1_000_000, datetime.UTC)
    when = when.replace(microsecond=micros % 1_000_000)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Query:
    """One archive page: form fields, RSM ``after``/``before`` (``""``: from the end)."""

    max: int
    form: dict[str, str] = field(default_factory=dict)
    after: str | None = None
    before: str | None = None


def _lower(q: Query, ref: Ref) -> None:
    """Messages after ``ref`` only (exclusive)."""
    if ref.kind == "msgid":
        if q.before is None and q.after is None:
            q.after = ref.value
        else:
            q.form["after-id"] = ref.value
    elif ref.kind == "timestamp":
        # IRC times have milliseconds: what was shown at that millisecond is not after it
        q.form["start"] = stamp((ref.micros // 1000 + 1) * 1000)


def _upper(q: Query, ref: Ref) -> None:
    """Messages before ``ref`` only (exclusive)."""
    if ref.kind == "msgid":
        if q.before == "" and not q.form.get("after-id") and q.after is None:
            q.before = ref.value
        else:
            q.form["before-id"] = ref.value
    elif ref.kind == "timestamp":
        q.form["end"] = stamp(ref.micros - 1)


def plan(sub: str, refs: list[Ref], limit: int) -> Query | None:
    """The (first) archive query of a subcommand; None: its references do not fit it.
    AROUND's second half depends on the first's answer (:meth:`History.run`)."""
    if sub == "LATEST":
        q = Query(limit, before="")
        if refs[0].kind != "*":
            _lower(q, refs[0])
        return q
    if refs[0].kind == "*":
        return None
    if sub == "BEFORE":
        q = Query(limit, before="")
        _upper(q, refs[0])
        return q
    if sub == "AFTER":
        q = Query(limit)
        _lower(q, refs[0])
        return q
    if sub == "AROUND":
        if limit < 2:
            return None  # half of it is before the ref, half from it on
        q = Query(limit // 2, before="")
        _upper(q, refs[0])
        return q
    a, b = refs
    if b.kind == "*" or a.micros < 0 or b.micros < 0:
        return None
    if a.micros <= b.micros:  # forward from a, up to b
        q = Query(limit)
        _lower(q, a)
        _upper(q, b)
    else:  # the latest before a, down to b
        q = Query(limit, before="")
        _upper(q, a)
        _lower(q, b)
    return q


def query_element(q: Query, qid: str, to: str | None) -> Element:
    iq = Element("iq", attrs={"type": "set", "id": qid})
    if to is not None:
        iq.attrs["to"] = to
    query = iq.add("query", MAM, {"queryid": qid})
    if q.form:
        x = query.add("x", XDATA, {"type": "submit"})
        ft = x.add("field", XDATA, {"var": "FORM_TYPE", "type": "hidden"})
        ft.add("value", XDATA, text=MAM)
        for var, value in q.form.items():
            x.add("field", XDATA, {"var": var}).add("value", XDATA, text=value)
    rsm = query.add("set", RSM)
    rsm.add("max", RSM, text=str(q.max))
    if q.after is not None:
        rsm.add("after", RSM, text=q.after)
    if q.before is not None:
        rsm.add("before", RSM, text=q.before or None)
    return iq


class QueryFailed(Exception):
    def __init__(self, condition: str) -> None:
        super().__init__(condition)
        self.condition = condition


class History:
    """The CHATHISTORY commands of one session and the archive answers they wait for."""

    __slots__ = ("results", "s", "waits")

    def __init__(self, session: IrcHost) -> None:
        self.s = session
        #: query id -> the <result/> elements received for it
        self.results: dict[str, list[Element]] = {}
        self.waits: dict[str, asyncio.Future[Element]] = {}

    # -- what the stanzas hand over -------------------------------------------------------------
    def collect(self, result: Element) -> bool:
        """A ``<result/>`` of one of our queries (True: taken)."""
        got = self.results.get(result.attrs.get("queryid", ""))
        if got is None:
            return False
        if len(got) <= 1000:
            got.append(result)
        return True

    def answered(self, iq: Element) -> bool:
        fut = self.waits.get(iq.attrs.get("id", ""))
        if fut is None:
            return False
        if not fut.done():
            fut.set_result(iq)
        return True

    # -- the command ----------------------------------------------------------------------------
    def fail(self, code: str, *params: str) -> None:
        self.s.irc.send(Message("FAIL", ["CHATHISTORY", code, *params], self.s.irc.server_name))

    async def command(self, params: list[str]) -> None:
        sub = params[0].upper()
        if sub not in SUBCOMMANDS:
            self.fail("UNKNOWN_COMMAND", sub[:32], "Unknown CHATHISTORY subcommand")
            return
        need = 5 if sub == "BETWEEN" else 4
        if len(params) != need:
            self.fail("INVALID_PARAMS", sub, "Wrong number of parameters")
            return
        target = params[1]
        refs = [parse_ref(p) for p in params[2:-1]]
        limit_text = params[-1]
        if any(r is None for r in refs) or not limit_text.isdigit() or int(limit_text) < 1:
            self.fail("INVALID_PARAMS", sub, "Bad message reference or limit")
            return
        good = [r for r in refs if r is not None]
        limit = min(int(limit_text), self.s.cfg.chathistory_max)
        first = plan(sub, good, limit)
        if first is None:
            self.fail("INVALID_PARAMS", sub, "Bad message reference or limit")
            return
        if target.startswith("#"):
            room = self.s.commands.room_jid(target)
            if room is None:
                self.fail("INVALID_TARGET", sub, target[:64], "No such channel")
                return
            to: str | None = room.text
            name = "#" + room.local
            peer: JID | None = None
        else:
            peer = self.s.commands.user_jid(target)
            if peer is None or not valid_nick(target.partition("@")[0] or "-") \
                    or peer.resource:
                self.fail("INVALID_TARGET", sub, target[:64], "No such nick")
                return
            to, name = None, target
            first.form["with"] = peer.bare_str
        try:
            rows = await self._page(first, to)
            if sub == "AROUND":
                ref = good[0]
                rest = Query(limit - len(rows), dict(first.form))
                rest.form.pop("before-id", None)
                rest.form.pop("end", None)
                if ref.kind == "msgid":
                    if rows:  # from the one just before the ref: the ref and after
                        rest.after = rows[-1].attrs.get("id", "")
                else:
                    rest.form["start"] = stamp(ref.micros)
                rows += await self._page(rest, to)
        except QueryFailed as exc:
            cond = exc.condition
            if cond in _DENIED or (cond == "item-not-found" and all(
                    r.kind != "msgid" for r in good)):
                self.fail("INVALID_TARGET", sub, target[:64], f"Messages could not be "
                          f"retrieved ({cond})")
            else:
                self.fail("MESSAGE_ERROR", sub, target[:64], f"Messages could not be "
                          f"retrieved ({cond})")
            return
        self._show(name, peer, rows)

    async def _page(self, q: Query, to: str | None) -> list[Element]:
        qid = secrets.token_hex(8)
        self.results[qid] = []
        fut: asyncio.Future[Element] = asyncio.get_running_loop().create_future()
        self.waits[qid] = fut
        try:
            routed = self.s.route(query_element(q, qid, to))
            if routed is not None:
                await routed
            try:
                answer = await asyncio.wait_for(fut, QUERY_TIMEOUT)
            except TimeoutError:
                raise QueryFailed("remote-server-timeout") from None
            if answer.attrs.get("type") != "result":
                raise QueryFailed(_condition(answer))
            return self.results[qid]
        finally:
            self.results.pop(qid, None)
            self.waits.pop(qid, None)

    def _show(self, name: str, peer: JID | None, rows: list[Element]) -> None:
        irc = self.s.irc
        batch = "batch" in irc.caps
        ref = secrets.token_hex(4)
        if batch:
            irc.send(Message("BATCH", ["+" + ref, "chathistory", name], irc.server_name))
        me = self.s.jid.bare if self.s.jid is not None else None
        for result in rows:
            fwd = result.find("forwarded", FORWARD)
            inner = fwd.find("message", NS.CLIENT) if fwd is not None else None
            if fwd is None or inner is None:
                continue
            body = inner.find_text("body")
            if body is None or inner.find("subject") is not None:
                continue
            try:
                frm = JID.parse(inner.attrs.get("from", ""))
            except JIDError:
                continue
            delay = fwd.find("delay", NS.DELAY)
            tags = {"time": irc_time(delay.get("stamp") if delay is not None else None)}
            if result.attrs.get("id"):
                tags["msgid"] = result.attrs["id"]
            if batch:
                tags["batch"] = ref
            if peer is None:  # a room's message
                nick = frm.resource
                source = f"{nick}!{nick}@{self.s.service}" if nick else irc.server_name
                to = name
            elif me is not None and frm.bare == me:
                source, to = irc.source, name
            else:
                source = f"{name}!{name}@{frm.domain}"
                to = irc.nick
            for line in lines_of(body):
                irc.send(Message("PRIVMSG", [to, line], source, dict(tags)))
        if batch:
            irc.send(Message("BATCH", ["-" + ref], irc.server_name))


def _condition(el: Element) -> str:
    err = el.find("error")
    if err is not None:
        for child in err.elements:
            if child.xmlns == NS.STANZAS and child.name != "text":
                return str(child.name)
    return "undefined-condition"


__all__ = ["History", "Query", "Ref", "parse_ref", "plan", "query_element", "stamp"]
