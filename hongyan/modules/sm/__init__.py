"""XEP-0198 Stream Management (urn:xmpp:sm:3) for client streams: acks and resumption.

* ``<enable/>`` after bind gives the session an :class:`SMState`; with ``resume='true'`` it gets
  a random id and the connection may drop: the session then *hibernates* (stays bound, keeps its
  presence, queues what is routed to it) for ``sm.resume_timeout`` seconds.
* ``<resume previd h/>`` on a new authenticated stream (same account) takes the session over,
  even when its old connection is still open (that one is closed), drops what ``h``
  acknowledged, answers ``<resumed/>`` and sends every unacknowledged stanza again, in order.
* A session that ends without resumption (timeout, clean close, replaced, queue overflow) hands
  its unacknowledged stanzas on: chat/normal messages go to offline storage by the offline
  module's own rule (:func:`~hongyan.modules.offline.disposition`: receipts, markers and
  bodiless encrypted messages are kept, a chat state alone is dropped, a ``<no-store/>`` one is
  bounced to its sender), as RFC 6121 §8.5.2 rules for an unavailable account; IQ get/set
  are answered with ``service-unavailable`` to their sender (XEP-0198 §5); the rest (presence,
  errors, groupchat, headline) is stale and dropped, as offline storage would drop it, and so
  are carbon copies (XEP-0280: the original reached another of the user's resources).
* Inline in SASL2 (XEP-0388, XEP-0198 with XEP-0386): ``<enable/>`` inside a
  Bind2 ``<bind/>`` answers ``<enabled/>`` inside ``<bound/>``, and ``<resume/>`` inside
  ``<authenticate/>`` answers ``<resumed/>`` (or ``<failed/>``) inside ``<success/>``; the same
  code as the top-level nonzas, only the answer goes elsewhere.
* A resumption id stays known for ``sm.resume_timeout`` seconds after its session ended (at
  most ``_GONE_MAX`` of them, oldest forgotten first): a ``<resume/>`` naming it gets
  ``<failed h='...'><item-not-found/></failed>`` with the count of stanzas the server had
  handled (XEP-0198 1.6 §5), so the client knows which of its stanzas arrived.
* We ask for acks (``<r/>``) every ``sm.request_every`` stanzas and, for sessions with something
  unacknowledged, on one module-wide sweep every ``sm.request_interval`` seconds: no timer per
  stanza or per session (one timer per *hibernated* session only).

Delivery: with resumption, every stanza sent to the session is delivered at least once; a
stanza is sent again on resume only when the client had not acknowledged it, so a client that
acks truthfully sees each stanza exactly once. Without resumption, or after the timeout, messages
reach offline storage and are delivered at least once (a message the client received but had
not yet acknowledged when its connection died comes again from offline storage).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import secrets
from collections.abc import Callable

from hongyan.modules.events import QueuedForResumption, SessionResumed
from hongyan.modules.offline import NOT_STORED, REFUSE, STORE, Offline, disposition
from hongyan.modules.sm.options import SMOptions
from hongyan.modules.sm.state import MOD, HandledCountTooHigh, SMState
from hongyan.server.hooks import (
    Bind2Request,
    InlineFeatures,
    Sasl2Resume,
    SessionClosed,
    StreamFeatures,
)
from hongyan.server.module import Module, ModuleAPI, hook
from hongyan.server.session import AUTHENTICATED, BOUND, CLOSED, ClientSession, Session
from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element
from hongyan.xmpp.errors import StanzaError, StreamError
from hongyan.xmpp.parser import parse_element

ERRORS_NS = NS.STANZAS
CARBONS = "urn:xmpp:carbons:2"
_GONE_MAX = 10_000  # ended resumption ids remembered for <failed h/>


def _failed_element(condition: str, h: int | None = None) -> Element:
    el = Element("failed", NS.SM)
    if h is not None:
        el.attrs["h"] = str(h)
    el.add(condition, ERRORS_NS)
    return el


def _failed(condition: str, h: int | None = None) -> bytes:
    return _failed_element(condition, h).to_bytes(NS.CLIENT)


class TooHigh(StreamError):
    """undefined-condition with XEP-0198's <handled-count-too-high/> application condition."""

    def __init__(self, exc: HandledCountTooHigh) -> None:
        super().__init__("undefined-condition",
                         f"you acknowledged {exc.h} stanzas, {exc.send_count} were sent")
        self.h = exc.h
        self.send_count = exc.send_count

    def element(self) -> Element:
        err = super().element()
        err.add("handled-count-too-high", NS.SM,
                {"h": str(self.h), "send-count": str(self.send_count)})
        return err


class StreamManagement(Module):
    name = "sm"
    xeps = {"0198": "1.6.1"}
    depends = ("offline",)

    def __init__(self, api: ModuleAPI) -> None:
        super().__init__(api)
        cfg = self.options = api.options(SMOptions)
        self.max_unacked = cfg.max_unacked
        self.request_every = cfg.request_every
        self.resume_timeout = cfg.resume_timeout
        self.resumable: dict[str, ClientSession] = {}  # resume id -> session (bound or hibernated)
        self.enabled: set[ClientSession] = set()
        # resume id of an ended session -> (username, its h, when to forget it), oldest first
        self.gone: dict[str, tuple[str, int, float]] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._offline: Offline | None = None

    async def start(self) -> None:
        api = self.api
        self._offline = api.module(Offline)
        api.nonza(NS.SM, "enable", self.on_enable)
        api.nonza(NS.SM, "resume", self.on_resume)
        api.nonza(NS.SM, "r", self.on_request)
        api.nonza(NS.SM, "a", self.on_ack)
        self._sweeper = api.spawn(self._sweep(self.options.request_interval))

    async def stop(self) -> None:
        for s in list(self.resumable.values()):
            sm = _sm(s)
            if sm is not None and sm.timer is not None:
                sm.timer.cancel()

    @hook(StreamFeatures)
    def on_features(self, ev: StreamFeatures) -> None:
        ev.features.add("sm", NS.SM)

    # -- inline in SASL2 (XEP-0388) and Bind2 (XEP-0386) ----------------------------------------
    @hook(InlineFeatures)
    def on_inline(self, ev: InlineFeatures) -> None:
        ev.sasl2.add("sm", NS.SM)  # resumption inline in <authenticate/>
        ev.bind2.add("feature", attrs={"var": NS.SM})  # <enable/> inline in <bind/>

    @hook(Bind2Request)
    def on_bind2(self, ev: Bind2Request) -> None:
        el = ev.request.find("enable", NS.SM)
        if el is not None:
            ev.bound.append(self._enable(ev.session, el))

    @hook(Sasl2Resume)
    def on_sasl2_resume(self, ev: Sasl2Resume) -> None:
        ev.resumed = self._resume(ev.session, ev.request, ev.success.append)

    # -- nonzas ---------------------------------------------------------------------------------
    def on_enable(self, session: ClientSession, el: Element) -> None:
        session.send(self._enable(session, el).to_bytes(NS.CLIENT), raw=True)

    def _enable(self, session: ClientSession, el: Element) -> Element:
        """Enable stream management on a bound session: the <enabled/> (or <failed/>)."""
        if session.state != BOUND or session.sm is not None:
            return _failed_element("unexpected-request")
        resume = el.attrs.get("resume") in ("true", "1")
        rid = secrets.token_urlsafe(18) if resume else ""
        state = session.sm = SMState(self, rid)
        session.add_filter(state)
        self.enabled.add(session)
        attrs = {}
        if resume:
            self.resumable[rid] = session
            attrs = {"id": rid, "resume": "true", "max": str(self.resume_timeout)}
        return Element("enabled", NS.SM, attrs)

    def on_request(self, session: ClientSession, el: Element) -> None:
        sm = _sm(session)
        if session.state != BOUND or sm is None:
            session.send(_failed("unexpected-request"), raw=True)
            return
        # The answer says the first h stanzas were handled: the client forgets them. So it
        # waits until what they caused survives a crash (archive rows committed, other
        # workers done with what went there; offline storage was awaited before this <r/>
        # was read): ModuleAPI.settled. The answers keep their order.
        h = sm.h_in
        wait = self.api.settled()
        acks = sm.acks
        if wait is None and not acks:
            session.send(f"<a xmlns='{NS.SM}' h='{h}'/>".encode(), raw=True)
            return
        if wait is None:
            wait = asyncio.get_running_loop().create_future()
            wait.set_result(None)
        if acks is None:
            acks = sm.acks = collections.deque()
        acks.append((wait, h))
        wait.add_done_callback(functools.partial(self._settled, session, sm))

    def _settled(self, session: ClientSession, sm: SMState, _f: asyncio.Future[None]) -> None:
        """Send the answers to <r/> whose stanzas are settled, in order; a failed write
        (the archive's, a worker that did not answer) ends the stream instead: the client
        resends what it has no ack for, on its next stream (at least once)."""
        acks = sm.acks
        if acks is None or session.sm is not sm or session.state == CLOSED:
            return
        while acks and acks[0][0].done():
            wait, h = acks.popleft()
            if wait.cancelled() or wait.exception() is not None:
                acks.clear()
                self.log.warning("%s: not acknowledging stanzas that were not stored: %s",
                                 session.jid, None if wait.cancelled() else wait.exception())
                session.stream_error(StreamError(
                    "internal-server-error", "a stanza could not be stored; send the "
                    "unacknowledged ones again"))
                break
            session.send(f"<a xmlns='{NS.SM}' h='{h}'/>".encode(), raw=True)
        if not acks:
            sm.acks = None

    def on_ack(self, session: ClientSession, el: Element) -> None:
        sm = _sm(session)
        if session.state != BOUND or sm is None:
            session.send(_failed("unexpected-request"), raw=True)
            return
        try:
            sm.ack(_parse_h(el))
        except HandledCountTooHigh as exc:
            raise TooHigh(exc) from None

    def on_resume(self, session: ClientSession, el: Element) -> None:
        self._resume(session, el,
                     lambda answer: session.send(answer.to_bytes(NS.CLIENT), raw=True))

    def _resume(self, session: ClientSession, el: Element,
                answer: Callable[[Element], object]) -> bool:
        """Resume the session ``el`` names into ``session``; ``answer`` gets the <resumed/>
        or <failed/> before anything is sent again. True when it resumed."""
        if session.state != AUTHENTICATED:
            answer(_failed_element("unexpected-request"))
            return False
        old = self.resumable.get(el.attrs.get("previd", ""))
        sm = None if old is None else _sm(old)
        if old is None or sm is None or old.username != session.username:
            # unknown, expired, or another account's: the client may bind afresh. For a session
            # of this account that ended lately, h says which of its stanzas we handled.
            gone = self.gone.get(el.attrs.get("previd", ""))
            h = None
            if (gone is not None and gone[0] == session.username
                    and gone[2] > asyncio.get_running_loop().time()):
                h = gone[1]
            answer(_failed_element("item-not-found", h))
            return False
        try:
            sm.ack(_parse_h(el))
        except HandledCountTooHigh as exc:
            raise TooHigh(exc) from None
        if sm.timer is not None:
            sm.timer.cancel()
            sm.timer = None
        self.enabled.discard(old)
        # what the old session's other filters held back (client state indication)
        held = [data for f in old.filters if f is not sm for data in f.drain()]
        session.take_over(old)
        self.enabled.add(session)
        hooks = self.api.hooks
        if hooks.has(SessionResumed):
            hooks.fire_sync(SessionResumed(session, old))
        answer(Element("resumed", NS.SM, {"h": str(sm.h_in), "previd": sm.id}))
        for data in list(sm.queue or ()):
            session.send(data, raw=True)  # already counted, still unacknowledged
        for data in held:  # held back by client state indication: sent (and counted) now
            session.send(data)
        if sm.queue:
            session.send(b"<r xmlns='" + NS.SM.encode() + b"'/>", raw=True)
        self.log.debug("%s resumed (%d stanzas sent again)", session.jid, sm.pending)
        return True

    # -- what SMState calls ---------------------------------------------------------------------
    def overflow(self, session: Session) -> None:
        session.stream_error(StreamError(
            "policy-violation",
            f"more than {self.max_unacked} stanzas left unacknowledged (XEP-0198)"))

    def hibernate(self, session: Session) -> None:
        sm = _sm(session)
        assert sm is not None
        self.log.debug("%s hibernated for %d s", session.jid, self.resume_timeout)
        sm.timer = self.api.call_later(self.resume_timeout,
                                       functools.partial(self._expire, session))

    def queued_hibernated(self, session: Session, data: bytes) -> None:
        """A stanza went into the queue of a hibernated session (push notifications listen)."""
        hooks = self.api.hooks
        if hooks.has(QueuedForResumption):
            hooks.fire_sync(QueuedForResumption(session, data))

    def _expire(self, session: Session) -> None:
        sm = _sm(session)
        if sm is None or session.state != BOUND:
            return
        sm.timer = None
        self.log.debug("%s: resumption timed out", session.jid)
        session.close()  # ends it: SessionClosed (unavailable presence, then on_closed below)

    def ended(self, session: Session) -> None:
        """A session replaced by a new bind of its resource (no SessionClosed for it)."""
        self.api.spawn(self.finish(session))

    # -- the end of a session -------------------------------------------------------------------
    @hook(SessionClosed, priority=100)
    async def on_closed(self, ev: SessionClosed) -> None:
        await self.finish(ev.session)

    async def finish(self, session: Session) -> None:
        sm = _sm(session)
        if sm is None:
            return
        session.sm = None
        session.remove_filter(sm)
        self.enabled.discard(session)
        if sm.timer is not None:
            sm.timer.cancel()
            sm.timer = None
        if sm.id and self.resumable.get(sm.id) is session:
            del self.resumable[sm.id]
            if session.jid is not None:
                self._remember(sm.id, session.jid.local, sm.h_in)
        unacked = sm.take_queue()
        if not unacked or session.jid is None:
            return
        await self._handle_unacked(session, unacked)

    def _remember(self, rid: str, username: str, h: int) -> None:
        gone = self.gone
        now = asyncio.get_running_loop().time()
        # oldest first (insertion order, one lifetime for all): drop the expired and the excess
        while gone:
            first = next(iter(gone))
            if gone[first][2] > now and len(gone) < _GONE_MAX:
                break
            del gone[first]
        gone[rid] = (username, h, now + self.resume_timeout)

    async def _handle_unacked(self, session: Session, unacked: list[bytes]) -> None:
        assert session.jid is not None
        router = self.api.router
        own = session.jid.bare_str
        messages: list[Element] = []
        for data in unacked:
            try:
                el = parse_element(data)
            except StreamError:
                self.log.error("unreadable queued stanza of %s", session.jid)
                continue
            if el.name == "iq":
                if el.attrs.get("type") in ("get", "set"):
                    router.bounce(el, StanzaError("service-unavailable",
                                                  "the recipient's session ended"))
                continue
            if el.name != "message" or el.attrs.get("type", "normal") not in ("chat", "normal"):
                continue
            if el.attrs.get("from") == own and any(c.xmlns == CARBONS for c in el.elements):
                continue  # a carbon copy: the original reached another resource (or its sender)
            verdict = disposition(el)  # the offline module's rule, as if it had come now
            if verdict == STORE:
                messages.append(el)
            elif verdict == REFUSE:
                router.bounce(el, NOT_STORED)
        if not messages:
            return
        # One batch under the offline store's per-user lock, taken before this coroutine first
        # yields: messages arriving for the user meanwhile are stored after these, in order.
        assert self._offline is not None
        refused = await self._offline.store(session.jid.local, messages)
        for el in refused:
            router.bounce(el, StanzaError("service-unavailable",
                                          f"the offline storage of {session.jid.bare} is full",
                                          type="wait"))
        self.log.debug("%s: %d unacknowledged messages to offline storage",
                       session.jid, len(messages) - len(refused))

    # -- periodic <r/> --------------------------------------------------------------------------
    async def _sweep(self, interval: float) -> None:
        request = f"<r xmlns='{NS.SM}'/>".encode()
        while True:
            await self.api.sleep(interval)
            for s in list(self.enabled):
                sm = _sm(s)
                if sm is not None and sm.queue and sm.timer is None and s.state != CLOSED:
                    s.send(request, raw=True)


def _sm(session: Session) -> SMState | None:
    """The session's stream management state (the core knows it only as :class:`Acks`)."""
    sm = session.sm
    return sm if isinstance(sm, SMState) else None


def _parse_h(el: Element) -> int:
    try:
        h = int(el.attrs.get("h", ""))
    except ValueError:
        raise StreamError("invalid-xml", "h must be a number (XEP-0198)") from None
    if not 0 <= h < MOD:
        raise StreamError("invalid-xml", "h must be between 0 and 2^32-1 (XEP-0198)")
    return h


MODULE = StreamManagement
