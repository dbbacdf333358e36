"""Client-to-server sessions (RFC 6120): stream negotiation, STARTTLS, SASL, resource binding,
then stanzas handed to the router.

Events from the sans-I/O parser are handled synchronously in ``data_received``. A step that needs
I/O (an account look-up, an IQ handler that touches storage, offline storage) returns an awaitable;
the session then runs it in one task and queues the events that follow, so a client's stanzas are
processed strictly in order and an idle connection owns no task at all.

Limits (docs/design.md, Limits): each stream has a byte budget (a token bucket of
``c2s.rate_burst`` bytes refilled at ``c2s.rate_bytes`` per second, two floats in the session);
a read that overdraws it pauses reading the socket until the budget is back, so a flooding
client is slowed by TCP itself instead of filling our buffers. Until SASL succeeds a stream
counts against the node's :class:`~hongyan.server.limits.Preauth` caps.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import datetime
import hmac
import logging
import secrets
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Protocol

from hongyan.server.auth import BANNED, SaslExchange, channel_bindings, mechanisms
from hongyan.server.hooks import (
    Bind2Prepare,
    Bind2Request,
    InlineFeatures,
    Sasl2Resume,
    SessionBound,
    SessionClosed,
    StreamFeatures,
)
from hongyan.server.sasl2 import (
    BIND2,
    FAST,
    LIMITS,
    SASL2,
    FastService,
    Outcome,
    Sasl2Exchange,
    fast_feature,
)
from hongyan.server.session import (
    AUTHENTICATED,
    BOUND,
    CLOSED,
    MAX_QUEUED,
    NEGOTIATING,
    WAIT_OPEN,
    ClientSession,
    Flushable,
    StreamSession,
)
from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element
from hongyan.xmpp.errors import StanzaError, StreamError, error_reply
from hongyan.xmpp.jid import JID, JIDError, prepare_resource
from hongyan.xmpp.parser import Event, StreamClose, StreamOpen
from hongyan.xmpp.sasl import HT_MECHANISMS
from hongyan.xmpp.stream import Stream

if TYPE_CHECKING:
    from hongyan.config.schema import Config
    from hongyan.server.clock import Clock, Handle
    from hongyan.server.cluster import Cluster
    from hongyan.server.hooks import HookBus
    from hongyan.server.limits import Addresses, Budget, Preauth
    from hongyan.server.metrics import Counters
    from hongyan.server.router import Router
    from hongyan.server.session import NonzaHandler
    from hongyan.server.sessions import SessionManager
    from hongyan.xmpp.stream import Profile

log = logging.getLogger("hongyan.c2s")

__all__ = ["AUTHENTICATED", "BOUND", "CLOSED", "NEGOTIATING", "WAIT_OPEN", "C2SSession"]


class Transport(Protocol):
    """What a session needs from the byte transport (see ``hongyan.transport``)."""

    @property
    def secure(self) -> bool: ...
    @property
    def peer_host(self) -> str: ...
    #: STARTTLS may be offered (never over WebSocket: RFC 7395 §3.9)
    @property
    def can_start_tls(self) -> bool: ...
    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def start_tls(self) -> Awaitable[None]: ...
    def channel_binding(self) -> tuple[str, bytes] | None: ...


class Host(FastService, Protocol):
    """What a client session uses of its node (besides what SASL uses, :class:`Service`)."""

    config: Config
    sessions: SessionManager
    preauth: Preauth
    addresses: Addresses
    hooks: HookBus
    router: Router
    nonzas: dict[tuple[str, str], NonzaHandler]
    registration_enabled: bool
    ibr_tokens: bool
    c2s_streams: Profile
    clock: Clock
    #: what sessions write (``/metrics``)
    counters: Counters
    #: set while a read's stanzas are handled: output waits for :meth:`end_batch`
    in_batch: bool

    @property
    def cluster(self) -> Cluster | None: ...
    def end_batch(self) -> None: ...
    def schedule_flush(self, session: Flushable) -> None: ...
    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]: ...
    def preauth_iq(self, session: C2SSession, el: Element, payload: Element
                   ) -> Awaitable[object] | None: ...


class _Detached:
    """The transport of a session whose connection dropped while XEP-0198 keeps it for
    resumption: output goes nowhere (the stream management queue keeps what matters)."""

    secure = False
    peer_host = ""
    can_start_tls = False

    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    async def start_tls(self) -> None:
        pass

    def channel_binding(self) -> tuple[str, bytes] | None:
        return None


DETACHED = _Detached()


class C2SSession(StreamSession, ClientSession):
    __slots__ = (
        "_active",
        "_address",
        "_pending",
        "_preauth",
        "_sasl",
        "_stamp",
        "_stanza_stamp",
        "_stanzas",
        "_task",
        "_timer",
        "_tokens",
        "stream",
    )

    node: Host
    transport: Transport

    def __init__(self, node: Host, transport: Transport, streams: Profile | None = None) -> None:
        """A client's stream over ``transport``; ``streams``: its listener's profile (its
        framing: WebSocket's, or by default TCP's)."""
        super().__init__()
        self.node = node
        self.transport = transport
        self.stream = Stream(node.c2s_streams if streams is None else streams)
        self._active = True
        self._pending: collections.deque[Event] | None = None
        self._task: asyncio.Task[None] | None = None
        self._sasl: SaslExchange | None = None  # while SASL is under way
        self._timer: Handle | None = node.clock.call_later(
            node.config.c2s.auth_timeout, self._auth_timeout)
        self._tokens = float(node.config.c2s.rate_burst)
        self._stamp = node.clock.monotonic()
        self._stanzas = float(node.config.c2s.rate_stanzas_burst)
        self._stanza_stamp = self._stamp
        #: the address this stream counts against in node.preauth, until it authenticates
        self._preauth: str | None = None
        #: the budget it shares with every stream from its address (from admit on)
        self._address: Budget | None = None

    def __repr__(self) -> str:
        return f"<C2SSession {self.jid or self.transport.peer_host} state={self.state}>"

    # -- transport callbacks --------------------------------------------------------------------
    def admit(self) -> bool:
        """Count this new connection against the pre-authentication caps; when over one,
        end it at once with ``policy-violation`` and return False."""
        host = self.transport.peer_host
        if self.node.guard.banned(host):  # (it failed too many logins lately)
            self.stream_error(StreamError("policy-violation", BANNED))
            return False
        refused = self.node.preauth.enter(host)
        if refused is not None:
            self.stream_error(StreamError("policy-violation", refused))
            return False
        self._preauth = host
        self.share_address_budget()
        return True

    def share_address_budget(self) -> None:
        """Spend from the budget of the stream's address (from admit on; on the worker a
        connection moved to after login, from its adoption)."""
        self._address = self.node.addresses.budget(self.transport.peer_host,
                                                   self.node.clock.monotonic())

    def _leave_preauth(self) -> None:
        host = self._preauth
        if host is not None:
            self._preauth = None
            self.node.preauth.leave(host)

    def data_received(self, data: bytes) -> None:
        if self.state == CLOSED:
            return
        self._active = True
        tokens = self._tokens - len(data)
        if tokens < 0.0:
            self._overdrawn(tokens)
        else:
            self._tokens = tokens
        address = self._address
        if address is not None:
            address.bytes -= len(data)
            if address.bytes < 0.0:
                self._address_overdrawn(address)
        self._receive(data)

    def _overdrawn(self, tokens: float) -> None:
        # The budget ran out: refill it for the time since the last refill; still short, stop
        # reading until it is back (what was read is handled: it is in memory already).
        cfg = self.node.config.c2s
        clock = self.node.clock
        now = clock.monotonic()
        tokens = min(tokens + (now - self._stamp) * cfg.rate_bytes, float(cfg.rate_burst))
        self._stamp = now
        self._tokens = tokens
        if tokens < 0.0:
            log.info("%s sends faster than %d bytes/s: reading paused",
                     self.transport.peer_host, cfg.rate_bytes)
            self.transport.pause_reading()
            clock.call_later(-tokens / cfg.rate_bytes, self._refilled)

    def _address_overdrawn(self, address: Budget) -> None:
        # What all the streams of this address may send ran out: refill it; still short, this
        # stream stops reading until it is back (the others do when they next read).
        clock = self.node.clock
        wait = self.node.addresses.refill(address, clock.monotonic())
        if wait > 0.0:
            log.info("%s sends more than its address may: reading paused for %.1f s",
                     self.transport.peer_host, wait)
            self.transport.pause_reading()
            clock.call_later(wait, self._refilled)

    def _too_many(self) -> None:
        # The stanza budget ran out: as with bytes, refill it for the time since the last
        # refill; still short, stop reading until it is back.
        cfg = self.node.config.c2s
        clock = self.node.clock
        now = clock.monotonic()
        stanzas = min(self._stanzas + (now - self._stanza_stamp) * cfg.rate_stanzas,
                      float(cfg.rate_stanzas_burst))
        self._stanza_stamp = now
        self._stanzas = stanzas
        if stanzas < 0.0:
            log.info("%s sends more than %d stanzas/s: reading paused",
                     self.transport.peer_host, cfg.rate_stanzas)
            self.transport.pause_reading()
            clock.call_later(-stanzas / cfg.rate_stanzas, self._refilled)

    def _refilled(self) -> None:
        if self.state != CLOSED and (self._pending is None or len(self._pending) < MAX_QUEUED):
            self.transport.resume_reading()

    def connection_lost(self) -> None:
        sm = self.sm
        if sm is not None and self.state == BOUND and sm.resumable:
            # XEP-0198: the session (its presence, its queue) waits for a resumption.
            self.stream.release()
            if self._pending is not None:
                self._pending.clear()
            self._out = None
            self.transport = DETACHED
            sm.hibernate(self)
            return
        was_closed = self.state == CLOSED
        self.state = CLOSED
        self._leave_preauth()
        self.stream.release()
        self._sasl = None
        self._stop_timer()
        if self._pending is not None:
            self._pending.clear()
        if not was_closed or self.jid is not None:
            self._ended()

    def _ended(self) -> None:
        if self.jid is not None and self.node.sessions.get(self.jid) is self:
            self.node.sessions.remove(self)
            was_available = self.available
            self.available = False
            self.node.spawn(self.node.hooks.fire(SessionClosed(self, was_available)))
        elif self.sm is not None:
            # replaced by a new bind of the same resource: no unavailable presence (the
            # resource is online), but its unacknowledged stanzas must not be lost (XEP-0198)
            self.sm.ended(self)

    # -- event dispatch -------------------------------------------------------------------------
    def _handle(self, ev: Event) -> Awaitable[object] | None:
        if isinstance(ev, Element):
            stanzas = self._stanzas - 1.0
            self._stanzas = stanzas
            if stanzas < 0.0:
                self._too_many()
            address = self._address
            if address is not None:
                address.stanzas -= 1.0
                if address.stanzas < 0.0:
                    self._address_overdrawn(address)
            if self.state == BOUND and ev.xmlns == NS.CLIENT:
                if self.sm is not None:
                    self.sm.handled()
                return self._stanza(ev)
            return self._element(ev)
        if isinstance(ev, StreamOpen):
            self._stream_open(ev)
            return None
        assert isinstance(ev, StreamClose)
        self.close()
        return None

    # -- stream level ---------------------------------------------------------------------------
    def _stream_open(self, ev: StreamOpen) -> None:
        header, wrong = self.stream.accept(ev)
        self._write(header)
        if wrong is not None:
            raise wrong
        if self.state == WAIT_OPEN:
            self.state = NEGOTIATING
        self._write(self._features().to_bytes(NS.CLIENT))

    def _features(self) -> Element:
        feats = Element("features", NS.STREAM)
        cfg = self.node.config
        if self.state == NEGOTIATING:
            secure = self.transport.secure
            if not secure and self.transport.can_start_tls:
                st = feats.add("starttls", NS.TLS)
                if cfg.c2s.require_encryption:
                    st.add("required")
            mechs = self._mechanisms()
            if mechs:
                m = feats.add("mechanisms", NS.SASL)
                for name in mechs:
                    m.add("mechanism", text=name)
                cb_types = self._cb_types()
                if cb_types:
                    cb = feats.add("sasl-channel-binding", NS.SASL_CB)
                    for t in cb_types:
                        cb.add("channel-binding", attrs={"type": t})
                self._sasl2_feature(feats, mechs, cb_types or [])
            if secure or not cfg.c2s.require_encryption:
                if self.node.ibr_tokens:
                    for xmlns in NS.IBR_TOKEN_FEATURES:
                        feats.add("register", xmlns)
                if self.node.registration_enabled or self.node.ibr_tokens:
                    feats.add("register", NS.REGISTER_FEATURE)
            # XEP-0478: the bounds of this stream before authentication
            limits = feats.add("limits", LIMITS)
            limits.add("max-bytes", text=str(min(cfg.c2s.preauth_max_stanza_size,
                                                 cfg.c2s.max_stanza_size)))
            limits.add("idle-seconds", text=str(int(cfg.c2s.auth_timeout)))
        else:
            if self.state == AUTHENTICATED:
                feats.add("bind", NS.BIND)
                sess = feats.add("session", NS.SESSION)
                sess.add("optional")
            self.node.hooks.fire_sync(StreamFeatures(self, feats))
            limits = feats.add("limits", LIMITS)
            limits.add("max-bytes", text=str(cfg.c2s.max_stanza_size))
        return feats

    def _cb_types(self) -> list[str] | None:
        """The channel binding types advertised (XEP-0440), when -PLUS mechanisms are."""
        if not self.transport.secure or self.transport.channel_binding() is None:
            return None
        return sorted(channel_bindings(self.transport))

    def _sasl2_feature(self, feats: Element, mechs: list[str], cb_types: list[str]) -> None:
        """SASL2's ``<authentication/>`` (XEP-0388) with what it negotiates inline: Bind2
        and the inline features of the modules, FAST (XEP-0484)."""
        auth = feats.add("authentication", SASL2)
        for name in mechs:
            auth.add("mechanism", text=name)
        inline = auth.add("inline")
        bind_inline = inline.add("bind", BIND2).add("inline")
        hooks = self.node.hooks
        if hooks.has(InlineFeatures):
            hooks.fire_sync(InlineFeatures(self, inline, bind_inline))
        if self.node.fast is not None:
            fast = fast_feature(self.transport.secure, cb_types)
            if fast is not None:
                inline.append(fast)

    def abandon(self) -> None:
        """This process lets go of an authenticated, unbound connection (it moved to the
        account's home worker): no hooks, no output, the timers stopped."""
        self.state = CLOSED
        self._leave_preauth()
        self._stop_timer()
        self.stream.release()
        self._out = None

    def take_over(self, old: ClientSession) -> None:
        super().take_over(old)
        self.stream.established()
        self._stop_timer()
        self.node.sessions.add(self)
        old.superseded()

    def superseded(self) -> None:
        if self._pending is not None:
            self._pending.clear()
        self.stream.release()
        self.transport.close()

    def _shutdown(self) -> None:
        self.flush()
        self.state = CLOSED
        self._leave_preauth()
        self._sasl = None
        self._stop_timer()
        self._ended()
        self.transport.close()

    def _auth_timeout(self) -> None:
        # One timer per negotiating session, armed at the stream's deadline; reads push the
        # deadline back without touching the timer, so when it fires early it is armed again.
        self._timer = None
        if self.state >= BOUND or self.state == CLOSED:
            return
        stream = self.stream
        if not stream.expired():
            clock = stream.profile.clock
            assert clock is not None
            self._timer = self.node.clock.call_later(
                stream.deadline - clock(), self._auth_timeout)
            return
        self.stream_error(StreamError("connection-timeout",
                                      "no authentication within the time allowed"))

    def restart(self) -> None:
        """A stream restart (after STARTTLS or SASL): the next bytes open a new stream.
        Events are handled only after ``feed`` returned, so the old parser can go now."""
        self.stream.restart(self.state >= AUTHENTICATED)

    def rest(self) -> bool:
        """Called periodically: drop the parser of a bound session that received nothing since
        the last call and sits between stanzas. An expat parser costs about 14 KB; an idle
        connection then holds none, and the next bytes get a fresh one (``data_received``).
        Returns True when it dropped one."""
        if self._active:
            self._active = False
            return False
        return self.state == BOUND and self._pending is None and self.stream.rest()

    # -- negotiation elements -------------------------------------------------------------------
    def _element(self, el: Element) -> Awaitable[object] | None:
        if self.state == WAIT_OPEN:
            raise StreamError("not-authorized")
        xmlns = el.xmlns
        if xmlns == NS.TLS and el.name == "starttls" and self.state == NEGOTIATING:
            return self._starttls()
        if xmlns == NS.SASL and self.state == NEGOTIATING:
            return self._sasl_element(el)
        if xmlns == SASL2 and self.state == NEGOTIATING:
            return self._sasl2_element(el)
        if xmlns == NS.CLIENT:
            if el.name not in ("message", "presence", "iq"):
                raise StreamError("unsupported-stanza-type", f"<{el.name}/> is not a stanza")
            if self.state == NEGOTIATING and el.name == "iq":
                return self._preauth_iq(el)
            if self.state == AUTHENTICATED and el.name == "iq":
                return self._bind_iq(el)
            raise StreamError("not-authorized", "authenticate and bind a resource first")
        if self.state >= AUTHENTICATED:
            # XEP-0198 <enable/>/<resume/> may come before bind; handlers check the state
            handler = self.node.nonzas.get((xmlns, el.name))
            if handler is not None:
                return handler(self, el)
        raise StreamError("unsupported-stanza-type", f"unexpected <{el.name} xmlns='{xmlns}'/>")

    def _starttls(self) -> Awaitable[None]:
        if self.transport.secure or not self.transport.can_start_tls:
            raise StreamError("policy-violation", "TLS is not available here")
        self._write(f"<proceed xmlns='{NS.TLS}'/>".encode())
        self.flush()
        self.transport.pause_reading()
        self.restart()
        return self._start_tls()

    async def _start_tls(self) -> None:
        # Runs after the rest of the input batch was queued. Anything the client sent in the
        # clear after <starttls/> may have been injected by a man in the middle (STARTTLS command
        # injection, cf. CVE-2011-0411): it must never be handled as if it came over TLS. An
        # honest client waits for <proceed/> (RFC 6120 §5.4.3.3), so we drop the connection.
        if self._pending:
            log.info("plaintext pipelined after <starttls/> from %s: closing",
                     self.transport.peer_host)
            self._pending.clear()
            self._shutdown()
            return
        await self.transport.start_tls()

    # -- SASL -----------------------------------------------------------------------------------
    def _mechanisms(self) -> list[str]:
        return mechanisms(self.node.config.auth, self.transport,
                          allow_plaintext=self.node.config.c2s.allow_plaintext_auth)

    def _sasl_element(self, el: Element) -> Awaitable[object] | None:
        sasl = self._sasl
        if isinstance(sasl, Sasl2Exchange):
            new = SaslExchange(self, self.node, self.node.config.auth,
                               allow_plaintext=self.node.config.c2s.allow_plaintext_auth)
            new.carry_failures(sasl)
            sasl = self._sasl = new
        if sasl is None:
            sasl = self._sasl = SaslExchange(
                self, self.node, self.node.config.auth,
                allow_plaintext=self.node.config.c2s.allow_plaintext_auth)
        return sasl.element(el)

    def _sasl2_element(self, el: Element) -> Awaitable[object] | None:
        sasl = self._sasl
        if not isinstance(sasl, Sasl2Exchange):
            if sasl is not None and el.name != "authenticate":
                raise StreamError("policy-violation", "SASL and SASL2 mixed in one exchange")
            new = Sasl2Exchange(self, self.node, self.node.config.auth,
                                allow_plaintext=self.node.config.c2s.allow_plaintext_auth,
                                cb_types=self._cb_types())
            if sasl is not None:
                new.carry_failures(sasl)  # switching protocols does not reset the count
            sasl = self._sasl = new
        return sasl.element(el)

    async def authenticated2(self, outcome: Outcome) -> None:
        """SASL2 succeeded: resume or bind what ``outcome.request`` asks inline, then answer
        one ``<success/>`` and the stream features (no stream restart, XEP-0388 §3.5)."""
        self._sasl = None
        self.username = outcome.username
        self.state = AUTHENTICATED
        self._leave_preauth()
        cluster = self.node.cluster
        if cluster is not None:
            home = cluster.home(outcome.username)
            if home != cluster.index:
                if self._pending:
                    raise StreamError("policy-violation", "data pipelined after SASL2")
                self.stream.upgrade()
                await cluster.hand_over(self, home, b"", sasl2=outcome)
                return
        self.stream.upgrade()
        await self.finish_sasl2(outcome)

    async def finish_sasl2(self, outcome: Outcome) -> None:
        """What follows a SASL2 success on the account's home process."""
        request = outcome.request
        success = Element("success", SASL2)
        if outcome.additional:
            success.add("additional-data", text=base64.b64encode(outcome.additional).decode())
        ident = success.add("authorization-identifier",
                            text=f"{outcome.username}@{self.node.domain}")
        token = await self._fast_token(outcome)
        hooks = self.node.hooks
        bind = request.find("bind", BIND2)
        prepared: list[Element] = []
        if bind is not None and hooks.has(Bind2Prepare):
            await hooks.fire(Bind2Prepare(outcome.username, bind, prepared))
        # the last await is behind: from here on it is one step
        if self.state == CLOSED:
            return
        out = self._out
        mark = 0 if out is None else len(out)
        resume = request.find("resume", NS.SM)
        resumed = False
        if resume is not None:
            if hooks.has(Sasl2Resume):
                ev = Sasl2Resume(self, resume, success)
                hooks.fire_sync(ev)
                resumed = ev.resumed
            else:
                success.add("failed", NS.SM).add("feature-not-implemented", NS.STANZAS)
        if bind is not None and not resumed:
            self._bind2(bind, outcome.agent, success, prepared)
        if self.jid is not None:
            ident.text = self.jid.text
        if token is not None:
            success.append(token)
        data = success.to_bytes(NS.CLIENT) + self._features().to_bytes(NS.CLIENT)
        out = self._out
        if out is None or mark >= len(out):
            self._write(data)
        else:
            out.insert(mark, data)  # before whatever resuming or binding sent

    async def _fast_token(self, outcome: Outcome) -> Element | None:
        """XEP-0484: drop the token on ``<fast invalidate/>``, issue one on
        ``<request-token/>`` or when the one used is due for rotation."""
        tokens = self.node.fast
        if tokens is None or not outcome.agent or not self.transport.secure:
            return None
        request = outcome.request
        mech = ""
        ask = request.find("request-token", FAST)
        fast = request.find("fast", FAST)
        used = outcome.used
        if used is not None and fast is not None and fast.attrs.get("invalidate") in (
                "1", "true"):
            await tokens.invalidate(outcome.username, outcome.agent)
            used = None  # no rotation after an invalidation (XEP-0484 §4.6)
        if ask is not None:
            # one the client saw offered (after a move to the home worker, the connection's
            # TLS is on the other one: its bindings are not visible here)
            mech = ask.attrs.get("mechanism", "")
            if mech not in HT_MECHANISMS:
                return None  # not a FAST mechanism: no token
        elif used is not None and tokens.due(used):
            mech = outcome.mechanism
        if not mech:
            return None
        issued = await tokens.issue(outcome.username, outcome.agent, mech)
        return Element("token", FAST, {"expiry": _timestamp(issued.expires_at),
                                       "token": issued.token})

    def _bind2(self, bind: Element, agent: str, success: Element,
               prepared: list[Element]) -> None:
        """Bind2 (XEP-0386): the resource is the client's tag and a suffix that stays the same
        for one user agent (so a reconnecting phone replaces its stale session)."""
        tag = (bind.find_text("tag", BIND2) or "").strip()
        seed = agent or secrets.token_hex(8)
        suffix = hmac.new(self.node.secret, f"{self.username}\0{seed}".encode(),
                          "sha256").hexdigest()[:8]
        try:
            resource = prepare_resource(f"{tag[:64]}.{suffix}" if tag else suffix)
        except JIDError:
            resource = suffix
        self._bind(resource)
        bound = success.add("bound", BIND2)
        for el in prepared:
            bound.append(el)
        hooks = self.node.hooks
        if hooks.has(Bind2Request):
            hooks.fire_sync(Bind2Request(self, bind, bound))

    async def authenticated(self, username: str, success: bytes) -> None:
        """SASL succeeded for ``username``: ``success`` is the ``<success/>`` to answer."""
        self._sasl = None
        self.username = username
        self.state = AUTHENTICATED
        self._leave_preauth()
        cluster = self.node.cluster
        if cluster is not None:
            home = cluster.home(username)
            if home != cluster.index:
                if self._pending:
                    # an honest client waits for <success/> before it sends more
                    raise StreamError("policy-violation", "data pipelined after SASL")
                await cluster.hand_over(self, home, success)
                return
        self.restart()
        self._write(success)

    # -- pre-auth IQ (in-band registration) and bind -------------------------------------------
    def _preauth_iq(self, el: Element) -> Awaitable[object] | None:
        payload = el.first
        node = self.node
        allowed = (node.registration_enabled or node.ibr_tokens) if payload is not None and \
            payload.xmlns == NS.REGISTER else (node.ibr_tokens and payload is not None
                                               and payload.xmlns == NS.PARS)
        if (not allowed or payload is None
                or (not self.transport.secure and self.node.config.c2s.require_encryption)):
            raise StreamError("not-authorized", "authenticate first")
        return self.node.preauth_iq(self, el, payload)

    def _bind_iq(self, el: Element) -> Awaitable[object] | None:
        payload = el.first
        iq_id = el.attrs.get("id", "")
        if el.attrs.get("type") == "set" and payload is not None and payload.xmlns == NS.SESSION:
            self.send(Element("iq", attrs={"type": "result", "id": iq_id}))
            return None
        if payload is None or payload.xmlns != NS.BIND or el.attrs.get("type") != "set":
            self.send(error_reply(el, StanzaError("not-authorized", "bind a resource first")))
            return None
        requested = payload.find_text("resource") or ""
        try:
            resource = prepare_resource(requested) if requested else secrets.token_hex(6)
        except JIDError as exc:
            self.send(error_reply(el, StanzaError("bad-request", str(exc))))
            return None
        reply = Element("iq", attrs={"type": "result", "id": iq_id})
        reply.add("bind", NS.BIND).add("jid", text=str(JID(self.username, self.node.domain,
                                                                resource)))
        self._bind(resource, reply)
        return None

    def _bind(self, resource: str, reply: Element | None = None) -> JID:
        """Bind ``resource`` (``reply``: the IQ result to send before the bound hooks)."""
        jid = JID(self.username, self.node.domain, resource)
        self.jid = jid
        old = self.node.sessions.add(self)
        if old is not None and old is not self:
            old.stream_error(StreamError("conflict", "replaced by a new connection"))
        self.state = BOUND
        self.stream.established()
        self._stop_timer()
        if reply is not None:
            self.send(reply)
        self.node.hooks.fire_sync(SessionBound(self))
        return jid

    # -- stanzas after bind ---------------------------------------------------------------------
    def _stanza(self, el: Element) -> Awaitable[object] | None:
        name = el.name
        if name not in ("message", "presence", "iq"):
            raise StreamError("unsupported-stanza-type", f"<{name}/> is not a stanza")
        attrs = el.attrs
        jid = self.jid
        assert jid is not None
        attrs["from"] = jid.text
        to_text = attrs.get("to")
        to: JID | None = None
        if name == "iq" and attrs.get("type") == "set" and (
                to_text is None or to_text == self.node.domain):
            payload = el.first
            if payload is not None and payload.xmlns == NS.SESSION and payload.name == "session":
                # RFC 3921 session establishment: we advertise it (optional), so a client
                # that still sends it after binding gets its result.
                self.send(Element("iq", attrs={"type": "result", "id": attrs.get("id", "")}))
                return None
        if to_text is not None:
            try:
                to = JID.parse(to_text)
            except JIDError as exc:
                if attrs.get("type") != "error":
                    # from the address as the client wrote it (RFC 6120 §8.3.3.8), which is
                    # what it matches the error against (a room join, an IQ)
                    self.send(error_reply(el, StanzaError("jid-malformed", str(exc))))
                return None
        return self.node.router.route_from_session(el, self, to)


def _timestamp(epoch: int) -> str:
    """XEP-0082 DateTime, UTC."""
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
