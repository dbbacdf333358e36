"""A stream another server opened to this one (RFC 6120 §9; port 5269).

STARTTLS first (required by default), then the peer proves each domain it will send from:
by SASL EXTERNAL when its certificate names the domain (XEP-0178), or by server dialback
(XEP-0220), which this server checks with the domain's authoritative server over a stream of
its own (:meth:`Federation.verify`). The same stream answers dialback checks of keys this
server made (``<db:verify/>``). Stanzas are routed like any other once their ``from`` is at a
domain the stream authenticated (else ``invalid-from``) and their ``to`` at a domain this
server serves (else ``host-unknown``): a stream is never a relay.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from hongyan.server.session import (
    BOUND,
    CLOSED,
    NEGOTIATING,
    WAIT_OPEN,
    StreamSession,
)
from hongyan.xmpp import dialback
from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element
from hongyan.xmpp.errors import StanzaError, StreamError
from hongyan.xmpp.jid import JID, JIDError
from hongyan.xmpp.parser import Event, StreamClose, StreamOpen
from hongyan.xmpp.stream import Stream

if TYPE_CHECKING:
    from hongyan.server.clock import Handle
    from hongyan.server.s2s.base import Host, Peers, Transport

log = logging.getLogger("hongyan.s2s")

_STANZAS = ("message", "presence", "iq")


class IncomingStream(StreamSession):
    """The server's side of one stream from another server."""

    __slots__ = (
        "_host",
        "_idle",
        "_last",
        "_peer",
        "_pending",
        "_task",
        "_timer",
        "domains",
        "federation",
        "local",
        "method",
        "stream",
    )

    node: Host
    transport: Transport

    def __init__(self, federation: Peers, transport: Transport) -> None:
        super().__init__()
        self.federation = federation
        self.node = federation.node
        self.transport = transport
        self.jid: JID | None = None
        self.stream = Stream(federation.streams)
        #: the domain of this server the peer's header named
        self.local = ""
        #: (remote domain, local domain) pairs the peer proved it may send stanzas for
        self.domains: set[tuple[str, str]] = set()
        self._pending: collections.deque[Event] | None = None
        self._task: asyncio.Task[None] | None = None
        self._host: str | None = None
        #: the domain the peer's header said it is (its 'from')
        self._peer = ""
        #: how the peer authenticated its first domain: "external" or "dialback"
        self.method = ""
        self._last = self.node.clock.monotonic()
        self._timer: Handle | None = self.node.clock.call_later(
            federation.config.negotiation_timeout, self._negotiation_timeout)
        self._idle: Handle | None = None

    def __repr__(self) -> str:
        peers = ",".join(sorted({r for r, _ in self.domains})) or self.transport.peer_host
        return f"<IncomingStream {peers} state={self.state}>"

    def admit(self) -> bool:
        """Count this connection against the streams-per-address caps (else policy-violation)."""
        host = self.transport.peer_host
        refused = self.federation.per_ip.enter(host)
        if refused is not None:
            log.info("s2s: refused a stream from %s: %s", host, refused)
            self.stream_error(StreamError("policy-violation", refused))
            return False
        self._host = host
        return True

    # -- input ----------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self.state == CLOSED:
            return
        self._last = self.node.clock.monotonic()
        self._receive(data)

    def _handle(self, ev: Event) -> Awaitable[object] | None:
        if isinstance(ev, Element):
            if ev.xmlns == NS.CLIENT and ev.name in _STANZAS:
                return self._stanza(ev)
            return self._element(ev)
        if isinstance(ev, StreamOpen):
            self._open(ev)
            return None
        assert isinstance(ev, StreamClose)
        self.close()
        return None

    def _open(self, ev: StreamOpen) -> None:
        header, wrong = self.stream.accept(ev)
        self._write(header)
        if wrong is not None:
            log.info("s2s: stream from %s for %r refused: %s", self.transport.peer_host,
                     ev.to, wrong)
            raise wrong
        self.local = (ev.to or "").lower().rstrip(".")
        self._peer = ev.attrs.get("from", "").lower().rstrip(".")
        if self.state == WAIT_OPEN:
            self.state = NEGOTIATING
        self._write(self._features().to_bytes(NS.CLIENT))

    def _features(self) -> Element:
        feats = Element("features", NS.STREAM)
        cfg = self.federation.config
        if not self.transport.secure and self.transport.can_start_tls:
            st = feats.add("starttls", NS.TLS)
            if cfg.require_encryption:
                st.add("required")
        if self.state == BOUND:
            return feats  # (after SASL EXTERNAL: nothing more to negotiate)
        if self._proven(self._peer):
            feats.add("mechanisms", NS.SASL).add("mechanism", text="EXTERNAL")
        if (self.transport.secure or not cfg.require_encryption) and cfg.dialback:
            feats.add("dialback", NS.DIALBACK_FEATURE).add("errors")
        return feats

    def _proven(self, domain: str) -> bool:
        """The peer's certificate proves ``domain`` (it was asked for one: see
        ``require_valid_certificates``)."""
        return bool(domain) and self.transport.secure and self.federation.trust.proves(
            self.transport.peer_certificates(), domain)

    def _sasl_external(self, el: Element) -> None:
        """XEP-0178: SASL EXTERNAL with the certificate the peer showed in TLS."""
        if el.name != "auth" or el.attrs.get("mechanism") != "EXTERNAL" or self.state == BOUND:
            raise StreamError("policy-violation", "only SASL EXTERNAL, once")
        text = el.text.strip()
        try:
            authzid = base64.b64decode(text, validate=True).decode() if text and text != "=" \
                else self._peer
        except (ValueError, UnicodeDecodeError):
            authzid = ""
        domain = authzid.lower().rstrip(".")
        if not self._proven(domain) or not self.federation.config.federates(domain):
            log.info("s2s: SASL EXTERNAL for %r from %s refused", domain,
                     self.transport.peer_host)
            self._write(f"<failure xmlns='{NS.SASL}'><not-authorized/></failure>".encode())
            return
        self.domains.add((domain, self.local))
        self.method = "external"
        self._write(f"<success xmlns='{NS.SASL}'/>".encode())
        self.stream.restart(authenticated=True)
        self._authenticated()
        self.federation.authenticated(self, domain)
        log.info("s2s: %s authenticated (SASL EXTERNAL) on a stream to %s from %s", domain,
                 self.local, self.transport.peer_host)

    def _element(self, el: Element) -> Awaitable[object] | None:
        if el.xmlns == NS.TLS and el.name == "starttls":
            return self._starttls()
        if el.xmlns == NS.SASL:
            self._sasl_external(el)
            return None
        if el.xmlns == NS.DIALBACK:
            if self.federation.config.require_encryption and not self.transport.secure:
                raise StreamError("policy-violation", "STARTTLS first")
            if el.name == "result":
                self._db_result(el)
                return None
            if el.name == "verify":
                self._db_verify(el)
                return None
        if el.xmlns == NS.STREAM and el.name == "error":
            log.info("s2s: stream error from %s: %s", self.transport.peer_host, el)
            self._shutdown()
            return None
        raise StreamError("unsupported-stanza-type", f"unexpected <{el.name} xmlns='{el.xmlns}'/>")

    # -- TLS ------------------------------------------------------------------------------------
    def _starttls(self) -> Awaitable[None]:
        if self.transport.secure or not self.transport.can_start_tls:
            raise StreamError("policy-violation", "TLS is not available here")
        self._write(f"<proceed xmlns='{NS.TLS}'/>".encode())
        self.flush()
        self.transport.pause_reading()
        self.stream.restart()
        return self._start_tls()

    async def _start_tls(self) -> None:
        if self._pending:  # plaintext pipelined after <starttls/>: see C2SSession._start_tls
            log.info("s2s: plaintext pipelined after <starttls/> from %s: closing",
                     self.transport.peer_host)
            self._pending.clear()
            self._shutdown()
            return
        await self.transport.start_tls()

    # -- dialback -------------------------------------------------------------------------------
    def _addressing(self, el: Element) -> tuple[str, str] | None:
        """The (remote, local) domains of a dialback element; None: answered as an error."""
        remote = el.attrs.get("from", "").lower().rstrip(".")
        local = el.attrs.get("to", "").lower().rstrip(".")
        try:
            jid = JID.parse(remote)
        except JIDError:
            jid = None
        if jid is None or jid.local or jid.resource:
            raise StreamError("improper-addressing", "'from' is no domain")
        remote = jid.domain
        if not self.node.router.serves(local):
            if el.name == "result":
                self._db_error(el, "item-not-found", "not a domain of this server")
                return None
            raise StreamError("host-unknown", f"{local!r} is not served here")
        if not self.federation.config.federates(remote):
            log.info("s2s: refused dialback from %s (not allowed)", remote)
            self._db_error(el, "forbidden", "this server does not federate with you")
            return None
        return remote, local

    def _db_error(self, el: Element, condition: str, text: str) -> None:
        self._write(dialback.error(el.name, el.attrs.get("to", ""), el.attrs.get("from", ""),
                                   el.attrs.get("id"), StanzaError(condition, text).element()))

    def _db_result(self, el: Element) -> None:
        """XEP-0220 §2.1: a key for a stream from ``from`` to ``to``; checked with the
        authoritative server of ``from`` (in the background: the stream goes on)."""
        pair = self._addressing(el)
        if pair is None:
            return
        if pair in self.domains:
            self._write(dialback.result(pair[1], pair[0], type="valid"))
            return
        if self.federation.config.require_valid_certificates and not self._proven(pair[0]):
            log.info("s2s: dialback for %s refused: no valid certificate", pair[0])
            self._db_error(el, "not-authorized", "a valid certificate is required here")
            return
        self.node.spawn(self._check(pair, el.text.strip()))

    async def _check(self, pair: tuple[str, str], key: str) -> None:
        remote, local = pair
        ok = await self.federation.verify(local, remote, self.stream.id, key)
        if self.state == CLOSED:
            return
        if ok:
            self.domains.add(pair)
            self.method = self.method or "dialback"
            if self.state < BOUND:
                self._authenticated()
            self.federation.authenticated(self, remote)
            log.info("s2s: %s authenticated (dialback) on a stream to %s from %s", remote,
                     local, self.transport.peer_host)
        else:
            log.info("s2s: dialback for %s from %s failed", remote, self.transport.peer_host)
        self._write(dialback.result(local, remote, type="valid" if ok else "invalid"))
        self.flush()

    def _db_verify(self, el: Element) -> None:
        """XEP-0220 §2.3: this server is authoritative for ``to``: was the key ours?"""
        receiving = el.attrs.get("from", "").lower()
        originating = el.attrs.get("to", "").lower()
        sid = el.attrs.get("id", "")
        if not self.node.router.serves(originating):
            self._db_error(el, "item-not-found", "not a domain of this server")
            return
        ok = self.federation.key_valid(receiving, originating, sid, el.text)
        self._write(dialback.verify(originating, receiving, sid, type="valid" if ok else
                                    "invalid"))

    def _authenticated(self) -> None:
        self.state = BOUND
        self.stream.established()
        self._stop_timer()
        self._arm_idle(self.federation.config.idle_timeout)

    # -- stanzas --------------------------------------------------------------------------------
    def _stanza(self, el: Element) -> Awaitable[object] | None:
        if not self.domains:
            raise StreamError("not-authorized", "authenticate the stream first")
        attrs = el.attrs
        try:
            sender = JID.parse(attrs.get("from", ""))
            to = JID.parse(attrs.get("to", ""))
        except JIDError:
            raise StreamError("improper-addressing", "a stanza from another server needs a "
                                                     "valid 'from' and 'to'") from None
        if (sender.domain, to.domain) not in self.domains:
            if not self.node.router.serves(to.domain):
                log.info("s2s: %s sent a stanza for %s, not served here", sender.domain,
                         to.domain)
                raise StreamError("host-unknown", f"{to.domain} is not served here")
            log.info("s2s: stanza from unauthenticated %s on a stream from %s: closing",
                     sender.domain, self.transport.peer_host)
            raise StreamError("invalid-from", f"this stream has not authenticated "
                                              f"{sender.domain}")
        if el.name == "presence":
            self.federation.remote_presence(el, sender, to)
        # (errors go back through our own stream to the peer: this one is the peer's)
        return self.node.router.route(el, sender, to)

    # -- time -----------------------------------------------------------------------------------
    def _negotiation_timeout(self) -> None:
        self._timer = None
        if self.state < BOUND:
            log.info("s2s: stream from %s did not authenticate in time",
                     self.transport.peer_host)
            self.stream_error(StreamError("connection-timeout",
                                          "no authentication within the time allowed"))

    def _arm_idle(self, delay: float) -> None:
        self._idle = self.node.clock.call_later(delay, self._idle_check)

    def _idle_check(self) -> None:
        self._idle = None
        if self.state == CLOSED:
            return
        timeout = self.federation.config.idle_timeout
        quiet = self.node.clock.monotonic() - self._last
        if quiet < timeout:
            self._arm_idle(timeout - quiet)
            return
        log.info("s2s: closing the idle stream from %s", self.transport.peer_host)
        self.close()

    # -- ending ---------------------------------------------------------------------------------
    def stream_error(self, exc: StreamError) -> None:
        if self.state != CLOSED:
            log.info("s2s: stream from %s ended: %s", self.transport.peer_host, exc)
        super().stream_error(exc)

    def _ended(self) -> None:
        self.state = CLOSED
        self._stop_timer()
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        self.stream.release()
        if self._pending is not None:
            self._pending.clear()
        host, self._host = self._host, None
        if host is not None:
            self.federation.per_ip.leave(host)
        self.federation.incoming_ended(self)


__all__ = ["IncomingStream"]
