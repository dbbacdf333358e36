"""BOSH (XEP-0124) as XEP-0206 uses it, the connection manager's side, sans-I/O.

A BOSH session is a series of HTTP requests, each one ``<body/>`` numbered by its ``rid``.
:class:`BoshSession` is what the connection manager keeps of one: the ``rid`` window, the
requests it holds open for the server's output, the responses it keeps for retransmission and
the deadlines. Nothing here reads a socket or a clock of its own: requests come in through
:meth:`BoshSession.request` (each with a callback that answers it), the XMPP stream's output
through :meth:`BoshSession.push`, the time from the ``now`` the owner injects, and the owner
calls :meth:`BoshSession.tick` at :meth:`BoshSession.deadline`. What the session must tell the
XMPP stream (payloads in ``rid`` order, a restart, the client's terminate, the end of the
session) it tells its :class:`Owner`.

The rules (XEP-0124 version 1.11):

* requests are handled, and answered, in ``rid`` order (§14.2); one that arrives before a
  missing one waits for it, within the window (``requests`` above the last handled ``rid``);
  beyond it: ``item-not-found``;
* at most ``hold`` requests are held (§7): one more makes the oldest answered at once (empty
  when there is nothing to say); a held request is answered empty at ``wait`` (§7);
* a repeated ``rid`` gets the copy of its response when it is one of the last ``requests``
  answered, else ``item-not-found`` (§14.3); a repeat of a request still held takes its place;
* too many simultaneous requests, or (a polling session, ``hold`` 0) two empty ones within
  ``polling`` seconds: ``policy-violation`` (§11, §12);
* ``pause`` (at most ``maxpause``): every held request is answered, and the inactivity period is
  the pause until the next request (§10); no request held for ``inactivity`` seconds (or the
  pause): the session is over (the owner is told, the client is not: §10).
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Final, Protocol

from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element, escape_attr
from hongyan.xmpp.errors import StreamError
from hongyan.xmpp.parser import StreamParser

HTTPBIND: Final = "http://jabber.org/protocol/httpbind"
XBOSH: Final = "urn:xmpp:xbosh"
#: the protocol version we speak (XEP-0124 1.11)
VERSION: Final = "1.11"
#: the largest rid a client may reach (2^53 - 1, §14.1)
MAX_RID: Final = 9007199254740991

_WRAP = (f"<stream:stream xmlns='{NS.CLIENT}' xmlns:stream='{NS.STREAM}'>").encode()
_OPEN_BODY = f"<body xmlns='{HTTPBIND}'"
EMPTY: Final = f"<body xmlns='{HTTPBIND}'/>".encode()

Answer = Callable[[bytes], None]


class BoshError(Exception):
    """A terminal binding condition (XEP-0124 §17.2): the body that says it, and the session
    (if any) is over."""

    def __init__(self, condition: str, text: str = "") -> None:
        super().__init__(text or condition)
        self.condition = condition


def terminate_body(condition: str | None = None, payload: bytes = b"") -> bytes:
    """``<body type='terminate'/>``, with a condition, and what goes with it (the stream error
    of a ``remote-stream-error``)."""
    cond = f" condition='{escape_attr(condition)}'" if condition else ""
    if not payload:
        return f"{_OPEN_BODY} type='terminate'{cond}/>".encode()
    return (f"{_OPEN_BODY} xmlns:stream='{NS.STREAM}' type='terminate'{cond}>".encode()
            + payload + b"</body>")


class Body:
    """One request's ``<body/>``: its attributes (``xmpp:`` ones as ``{urn:xmpp:xbosh}name``)
    and its payloads, each serialized on its own declaring its namespace (an element in no
    namespace of its own, as some clients send stanzas, is taken as ``jabber:client``)."""

    __slots__ = ("attrs", "payloads", "rid")

    def __init__(self, attrs: dict[str, str], payloads: list[bytes], rid: int) -> None:
        self.attrs = attrs
        self.payloads = payloads
        self.rid = rid

    @property
    def sid(self) -> str | None:
        return self.attrs.get("sid")

    @property
    def terminate(self) -> bool:
        return self.attrs.get("type") == "terminate"

    @property
    def restart(self) -> bool:
        return self.attrs.get(f"{{{XBOSH}}}restart") == "true"

    def number(self, name: str) -> int | None:
        """A non-negative integer attribute; None when absent. Raises ``bad-request``."""
        text = self.attrs.get(name)
        if text is None:
            return None
        if not text.isdigit() or len(text) > 16:
            raise BoshError("bad-request", f"'{name}' must be a non-negative integer")
        return int(text)


def _as_client(el: Element) -> Element:
    if el.xmlns == HTTPBIND:
        el.xmlns = NS.CLIENT
        for c in el.children:
            if isinstance(c, Element):
                _as_client(c)
    return el


def parse_body(data: bytes, *, max_size: int, max_depth: int) -> Body:
    """A request's bytes as a :class:`Body`. Raises ``bad-request`` for anything else than one
    well-formed ``<body xmlns='http://jabber.org/protocol/httpbind'>`` with a ``rid``
    (XML restricted as on a stream: no DTD, comments or processing instructions)."""
    data = data.strip()
    if data.startswith(b"<?xml"):
        end = data.find(b"?>")
        data = data[end + 2:].lstrip() if end > 0 else data
    parser = StreamParser(max_stanza_size=max_size, max_depth=max_depth + 1)
    try:
        parser.feed(_WRAP)
        events = parser.feed(data)
        ok = parser.at_rest
    except StreamError as exc:
        raise BoshError("bad-request", exc.text or exc.condition) from None
    finally:
        parser.close()
    if len(events) != 1 or not ok or not isinstance(events[0], Element):
        raise BoshError("bad-request", "a request is one <body/> element")
    body = events[0]
    if body.name != "body" or body.xmlns != HTTPBIND:
        raise BoshError("bad-request", f"a request is a <body xmlns='{HTTPBIND}'/>")
    rid = body.attrs.get("rid", "")
    if not rid.isdigit() or len(rid) > 16 or int(rid) > MAX_RID:
        raise BoshError("bad-request", "no valid 'rid'")
    payloads = []
    for c in body.children:
        if isinstance(c, Element):
            payloads.append(_as_client(c).to_bytes(""))
        elif c.strip():
            raise BoshError("bad-request", "text in a <body/>")
    return Body(body.attrs, payloads, int(rid))


class Limits:
    """What the connection manager allows (the session creation response's attributes are
    the client's wishes bounded by these)."""

    __slots__ = ("inactivity", "max_hold", "max_pause", "max_wait", "polling")

    def __init__(self, *, max_wait: int = 60, max_hold: int = 1, inactivity: int = 60,
                 polling: int = 2, max_pause: int = 120) -> None:
        self.max_wait = max_wait
        self.max_hold = max_hold
        self.inactivity = inactivity
        self.polling = polling
        self.max_pause = max_pause


class Owner(Protocol):
    """What a BOSH session tells the XMPP stream it carries."""

    def payloads(self, payloads: list[bytes]) -> None:
        """The client's elements, in ``rid`` order."""

    def restart(self, body: Body) -> None:
        """``xmpp:restart='true'`` (XEP-0206 §5): a new stream on the same session."""

    def terminate(self) -> None:
        """The client's ``type='terminate'`` (its payloads were given first)."""

    def ended(self) -> None:
        """The session is over (terminated either way, or inactive): forget it."""


class _Held:
    __slots__ = ("answer", "due", "empty", "rid")

    def __init__(self, rid: int, answer: Answer, due: float, empty: bool) -> None:
        self.rid = rid
        self.answer = answer
        self.due = due
        self.empty = empty


class BoshSession:
    """One BOSH session from its creation request (``first``, already checked: no ``sid``)
    on; ``sid`` is its (unguessable) identifier."""

    __slots__ = ("_ack", "_acks", "_answered", "_closing", "_creation", "_early", "_held",
                 "_idle_since", "_inactivity", "_last_empty", "_now", "_out", "_owner",
                 "_polled", "domain", "ended", "hold", "inactivity", "max_pause", "paused",
                 "polling", "requests", "secure", "sid", "wait")

    def __init__(self, sid: str, first: Body, limits: Limits, owner: Owner,
                 now: Callable[[], float], *, domain: str, secure: bool) -> None:
        self.sid = sid
        self.domain = domain
        self.secure = secure
        self._owner = owner
        self._now = now
        wait = first.number("wait")
        hold = first.number("hold")
        self.wait = min(limits.max_wait, wait if wait is not None else limits.max_wait)
        self.hold = min(limits.max_hold, hold if hold is not None else 1)
        #: XEP-0124 §7.2: requests SHOULD be one more than hold (and at least 2, so that a
        #: client can always send while one request is held)
        self.requests = max(2, self.hold + 1)
        self.polling = limits.polling
        self.inactivity = limits.inactivity
        self.max_pause = limits.max_pause
        self._acks = first.attrs.get("ack") == "1"
        self._ack = first.rid  # the highest rid handled so far (all below it were too)
        self._creation = first.rid
        self._held: collections.deque[_Held] = collections.deque()
        self._early: dict[int, tuple[Body, Answer]] = {}
        self._answered: collections.OrderedDict[int, bytes] = collections.OrderedDict()
        self._out: list[bytes] = []
        self._closing: bytes | None = None  # the final body, once the stream ended
        self._inactivity = self.inactivity
        self._idle_since = now()
        self._last_empty = -1e18  # when the last empty request of a polling session came
        self._polled = False  # ...and whether its answer was empty
        self.ended = False
        #: set while the XMPP stream reads nothing (flow control): requests wait unhandled,
        #: within the window, as bytes wait in a socket
        self.paused = False

    def open(self, first: Body, answer: Answer) -> None:
        """Handle the creation request (the one given to the constructor): the stream's
        first header goes to the owner, and the request is held for what it answers."""
        self._owner.restart(first)
        if self._gone(answer):
            return
        self._held.append(_Held(first.rid, answer, self._now() + self.wait, True))
        self._flush()

    # -- requests -------------------------------------------------------------------------------
    def request(self, body: Body, answer: Answer) -> None:
        """A request of this session (its ``sid`` matched): ``answer`` is called with the
        response body, at once or later (in ``rid`` order)."""
        if self.ended:
            answer(terminate_body("item-not-found"))
            return
        if self._closing is not None:
            self.take_closing(answer)
            return
        rid = body.rid
        try:
            if rid <= self._ack:
                self._repeat(body, answer)
                return
            if rid > self._ack + self.requests:
                raise BoshError("item-not-found", "rid out of window")
            if not (body.terminate or body.attrs.get("pause")) and \
                    len(self._held) + len(self._early) >= self.requests:
                raise BoshError("policy-violation", "too many simultaneous requests")
            if rid in self._early:  # (a repeat of one waiting for the gap: the newer wins)
                self._early.pop(rid)[1](EMPTY)
            self._early[rid] = (body, answer)
        except BoshError as exc:
            self._fail(exc, answer)
            return
        self.resume()

    def resume(self) -> None:
        """Handle the requests that wait for nothing but their turn (after a pause of the
        stream's reading, or the one that closed a gap)."""
        while self._ack + 1 in self._early and not self.ended and not self.paused:
            nxt, ans = self._early.pop(self._ack + 1)
            self._ack += 1
            try:
                self._handle(nxt, ans)
            except BoshError as exc:
                self._fail(exc, ans)

    def _repeat(self, body: Body, answer: Answer) -> None:
        copy = self._answered.get(body.rid)
        if copy is not None:
            answer(copy)
            return
        for h in self._held:
            if h.rid == body.rid:  # the client gave up on that connection: this one waits
                old, h.answer = h.answer, answer
                old(EMPTY)
                return
        raise BoshError("item-not-found", "rid no longer known")

    def _handle(self, body: Body, answer: Answer) -> None:
        now = self._now()
        self._inactivity = self.inactivity  # (a pause lasts until the next request)
        pause = body.number("pause")
        if pause is not None:
            if pause > self.max_pause:
                raise BoshError("policy-violation", f"pause longer than {self.max_pause} s")
            if body.payloads:
                self._owner.payloads(body.payloads)
                if self._gone(answer):
                    return
            while self._held:
                self._answer_oldest()
            answer(self._response(body.rid, b""))  # (not kept: pauses are not resent)
            self._inactivity = pause
            self._idle_since = now
            return
        empty = not body.payloads and not body.restart and not body.terminate
        if empty and self.hold == 0:
            if self._polled and now - self._last_empty < self.polling:
                raise BoshError("policy-violation", f"polling more often than every "
                                                    f"{self.polling} s")
            self._last_empty = now
        if body.payloads:
            self._owner.payloads(body.payloads)
            if self._gone(answer):
                return
        if body.terminate:
            self._owner.terminate()
            while self._held:
                self._answer_oldest()
            self._out.clear()
            answer(terminate_body())
            self._end()
            return
        if body.restart:
            self._owner.restart(body)
            if self._gone(answer):
                return
        self._held.append(_Held(body.rid, answer, now + self.wait, empty))
        self._flush()
        while len(self._held) > self.hold:
            self._answer_oldest()

    def _gone(self, answer: Answer) -> bool:
        """The stream ended while it handled what a request brought: answer it so."""
        if self.ended:
            answer(terminate_body())
            return True
        if self._closing is not None:
            self.take_closing(answer)
            return True
        return False

    # -- output ---------------------------------------------------------------------------------
    def push(self, payloads: list[bytes]) -> None:
        """Elements from the XMPP stream for the client (each declaring its namespace)."""
        if self.ended or self._closing is not None:
            return
        self._out.extend(payloads)
        self._flush()

    def close(self, condition: str | None = None, payload: bytes = b"") -> None:
        """The stream ended on the server's side (``condition``: ``remote-stream-error``
        with ``payload``, the stream error): the next response says ``terminate``, and then
        the session is over."""
        if self.ended or self._closing is not None:
            return
        self._closing = terminate_body(condition, b"".join(self._out) + payload)
        self._out.clear()
        if self._held:
            h = self._held.popleft()
            while self._held:  # (the older ones empty: the final one carries it all)
                self._held.popleft().answer(EMPTY)
            h.answer(self._closing)
            self._end()

    def _flush(self) -> None:
        if self._out and self._held:
            self._answer_oldest()

    def _answer_oldest(self) -> None:
        h = self._held.popleft()
        payload = b"".join(self._out)
        self._out.clear()
        if self.hold == 0 and h.empty:
            self._polled = not payload
        data = self._response(h.rid, payload)
        self._answered[h.rid] = data
        while len(self._answered) > self.requests:
            self._answered.popitem(last=False)
        if not self._held:
            self._idle_since = self._now()
        h.answer(data)

    def _response(self, rid: int, payload: bytes) -> bytes:
        attrs = ""
        if rid == self._creation:
            attrs = self._creation_attrs()
        elif self._acks and self._ack > rid:
            attrs = f" ack='{self._ack}'"
        if not payload:
            return f"{_OPEN_BODY}{attrs}/>".encode()
        return (f"{_OPEN_BODY} xmlns:stream='{NS.STREAM}'{attrs}>".encode()
                + payload + b"</body>")

    def _creation_attrs(self) -> str:
        ack = f" ack='{self._creation}'" if self._acks else ""
        return (f" xmlns:xmpp='{XBOSH}' sid='{self.sid}' wait='{self.wait}'"
                f" hold='{self.hold}' requests='{self.requests}'"
                f" inactivity='{self.inactivity}' polling='{self.polling}'"
                f" maxpause='{self.max_pause}' ver='{VERSION}' from='{escape_attr(self.domain)}'"
                f" secure='{'true' if self.secure else 'false'}'{ack}"
                " xmpp:version='1.0' xmpp:restartlogic='true'")

    # -- time -----------------------------------------------------------------------------------
    def deadline(self) -> float | None:
        """When :meth:`tick` is due next (None: never, the session is over)."""
        if self.ended:
            return None
        if self._held:
            return self._held[0].due
        return self._idle_since + self._inactivity

    def tick(self) -> None:
        """Answer the held requests whose ``wait`` is over; end an inactive session."""
        if self.ended:
            return
        now = self._now()
        while self._held and self._held[0].due <= now:
            self._answer_oldest()
        if not self._held and now >= self._idle_since + self._inactivity:
            self._end()

    # -- ending ---------------------------------------------------------------------------------
    def _fail(self, exc: BoshError, answer: Answer) -> None:
        body = terminate_body(exc.condition)
        while self._held:
            self._held.popleft().answer(body)
        for _, ans in self._early.values():
            ans(body)
        self._early.clear()
        answer(body)
        self._end()

    def _end(self) -> None:
        if self.ended:
            return
        self.ended = True
        self._out.clear()
        self._answered.clear()
        for _, ans in self._early.values():
            ans(terminate_body())
        self._early.clear()
        while self._held:
            self._held.popleft().answer(self._closing or terminate_body())
        self._owner.ended()

    @property
    def closing(self) -> bytes | None:
        """The final body, when the stream ended while no request was held (the next request
        gets it)."""
        return self._closing

    def take_closing(self, answer: Answer) -> None:
        """Answer a request with the final body (the stream ended meanwhile)."""
        assert self._closing is not None
        answer(self._closing)
        self._end()


__all__ = ["EMPTY", "HTTPBIND", "MAX_RID", "VERSION", "XBOSH", "Body", "BoshError",
           "BoshSession", "Limits", "Owner", "parse_body", "terminate_body"]
