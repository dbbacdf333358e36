"""A stream this server opens to another (RFC 6120 §9): one per pair of domains (ours, theirs),
reused by every stanza between them until it sits idle.

It connects (static route, else DNS), says its header, takes STARTTLS (required by default),
then authenticates its domain by server dialback (XEP-0220): a key the peer checks with this
server over a stream of its own. Stanzas wait in a bounded queue until then; when the stream
cannot be made they bounce (``remote-server-not-found`` when the peer could not be reached
or refused us, ``remote-server-timeout`` when it did not finish in time). The same stream
carries this server's dialback checks of keys other servers gave it (``<db:verify/>``), which
need TLS but no authentication.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from hongyan.server.session import BOUND, CLOSED, NEGOTIATING, WAIT_OPEN, StreamSession
from hongyan.transport.tcp import StreamTransport, connect
from hongyan.xmpp import dialback
from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element
from hongyan.xmpp.errors import StanzaError, StreamError
from hongyan.xmpp.jid import JID
from hongyan.xmpp.parser import Event, StreamClose, StreamOpen, parse_element
from hongyan.xmpp.stream import Stream

if TYPE_CHECKING:
    from hongyan.server.clock import Handle
    from hongyan.server.s2s.base import Host, Peers

log = logging.getLogger("hongyan.s2s")

# how far a stream got (besides the session states): features of the secure stream seen,
# SASL EXTERNAL asked, SASL EXTERNAL succeeded (the restarted stream's features end it)
_READY, _SASL, _SASL_DONE = 2, 3, 4


class OutgoingStream(StreamSession):
    """The stream from this server's ``local`` domain to the server of ``remote``."""

    __slots__ = (
        "_cause",
        "_checked",
        "_connector",
        "_idle",
        "_last",
        "_pending",
        "_phase",
        "_task",
        "_timer",
        "_unsent",
        "_verifies",
        "address",
        "federation",
        "local",
        "method",
        "queue",
        "remote",
        "stream",
        "verified",
    )

    node: Host
    transport: StreamTransport

    def __init__(self, federation: Peers, local: str, remote: str) -> None:
        super().__init__()
        self.federation = federation
        self.node = federation.node
        self.local = local
        self.remote = remote
        self.jid: JID | None = None
        self.stream = Stream(federation.streams)
        #: stanzas waiting for the stream to authenticate (bounded: config max_queue)
        self.queue: collections.deque[Element | bytes] = collections.deque()
        #: stream id -> (key, future) of the dialback checks asked of this peer
        self._verifies: dict[str, list[tuple[str, str, asyncio.Future[bool]]]] = {}
        self._unsent: list[tuple[str, str, str]] = []
        self._pending: collections.deque[Event] | None = None
        self._task: asyncio.Task[None] | None = None
        self._phase = 0
        self._checked = False
        #: the peer's certificate proves its domain (RFC 6125)
        self.verified = False
        #: how this stream authenticated: "external" (XEP-0178) or "dialback" (XEP-0220)
        self.method = ""
        #: where it connected: (host, port, direct TLS)
        self.address: tuple[str, int, bool] | None = None
        self._cause = "remote-server-not-found"
        self._last = self.node.clock.monotonic()
        self._idle: Handle | None = None
        self._timer: Handle | None = self.node.clock.call_later(
            federation.config.connect_timeout + federation.config.negotiation_timeout,
            self._negotiation_timeout)
        self._connector: asyncio.Task[None] | None = self.node.spawn(self._connect())

    def __repr__(self) -> str:
        return f"<OutgoingStream {self.local}->{self.remote} state={self.state}>"

    # -- what the federation asks ---------------------------------------------------------------
    def send_stanza(self, item: Element | bytes) -> None:
        if self.state == BOUND:
            self._last = self.node.clock.monotonic()
            self.send(item)
            return
        if len(self.queue) >= self.federation.config.max_queue:
            self.federation.bounce(item, StanzaError(
                "resource-constraint", f"too many stanzas wait for {self.remote}"))
            return
        self.queue.append(item)

    def verify(self, receiving: str, stream_id: str, key: str) -> asyncio.Future[bool]:
        """Ask the peer (authoritative for ``remote``) whether ``key`` is its key for the
        stream ``stream_id`` it opened to our ``receiving`` domain (XEP-0220 §2.2)."""
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        if self.state == CLOSED:
            fut.set_result(False)
            return fut
        self._verifies.setdefault(stream_id, []).append((receiving, key, fut))
        self._unsent.append((receiving, stream_id, key))
        if self._phase == _READY or self.state == BOUND:
            self._send_verifies()
        return fut

    def _send_verifies(self) -> None:
        """Write the dialback checks asked so far (not while SASL is under way)."""
        for receiving, sid, key in self._unsent:
            self._write(dialback.verify(receiving, self.remote, sid, key))
        self._unsent.clear()

    # -- connecting -----------------------------------------------------------------------------
    async def _connect(self) -> None:
        try:
            addresses = await self.federation.addresses(self.remote)
        except Exception as exc:
            log.info("s2s: no address for %s: %s", self.remote, exc)
            addresses = []
        cfg = self.federation.config
        for host, port, direct in addresses:
            if self.state == CLOSED:
                return
            transport = StreamTransport(lambda _t: self, None, direct)
            try:
                ctx = self.federation.client_context if direct else None
                await connect(host, port, transport, cfg.connect_timeout, ctx, self.remote)
            except (OSError, TimeoutError) as exc:
                log.info("s2s: could not reach %s at %s:%d: %s", self.remote, host, port, exc)
                continue
            self.transport = transport
            self.address = (host, port, direct)
            log.debug("s2s: connected to %s at %s:%d", self.remote, host, port)
            self._write(self.stream.initiate(self.local, self.remote))
            self.state = NEGOTIATING
            return
        self._fail("remote-server-not-found", f"could not connect to {self.remote}")

    def data_received(self, data: bytes) -> None:
        if self.state == CLOSED:
            return
        self._receive(data)

    def _handle(self, ev: Event) -> Awaitable[object] | None:
        if isinstance(ev, StreamOpen):
            self.stream.id = ev.attrs.get("id", "")
            if ev.version is None or not ev.version.startswith("1."):
                raise StreamError("unsupported-version", "XMPP 1.0 streams only")
            return None
        if isinstance(ev, StreamClose):
            self.close()
            return None
        if ev.xmlns == NS.STREAM:
            if ev.name == "features":
                return self._features(ev)
            if ev.name == "error":
                log.info("s2s: %s ended our stream: %s", self.remote, ev)
                self._cause = "remote-server-not-found"
                self._shutdown()
                return None
        if ev.xmlns == NS.TLS:
            if ev.name == "proceed":
                return self._start_tls()
            self._fail("remote-server-not-found", f"{self.remote} refused STARTTLS")
            return None
        if ev.xmlns == NS.SASL:
            self._sasl(ev)
            return None
        if ev.xmlns == NS.DIALBACK:
            if ev.name == "result":
                self._db_result(ev)
            elif ev.name == "verify":
                self._db_verify(ev)
            return None
        # Nothing else belongs on a stream we initiated (stanzas come on the peer's own).
        raise StreamError("unsupported-stanza-type", f"unexpected <{ev.name}/> on a stream "
                                                     "this server opened")

    def _features(self, feats: Element) -> Awaitable[object] | None:
        cfg = self.federation.config
        secure = self.transport.secure
        if self._phase == _SASL_DONE:
            self.method = "external"
            self._established()
            return None
        if not secure and feats.find("starttls", NS.TLS) is not None:
            self._write(f"<starttls xmlns='{NS.TLS}'/>".encode())
            return None
        if not secure and cfg.require_encryption:
            self._fail("remote-server-not-found", f"{self.remote} offers no TLS")
            return None
        if secure and not self._checked:
            self._checked = True
            valid = self.verified = self.federation.trust.proves(
                self.transport.peer_certificates(), self.remote)
            log.info("s2s: the certificate of %s %s", self.remote,
                     "is valid" if valid else "does not prove its name")
            if not valid and cfg.require_valid_certificates:
                self._fail("remote-server-not-found", f"the certificate of {self.remote} "
                                                      "does not prove its name")
                return None
        self._phase = _READY
        self._send_verifies()
        mechs = feats.find("mechanisms", NS.SASL)
        if secure and mechs is not None and any(
                m.text.strip() == "EXTERNAL" for m in mechs.find_all("mechanism", NS.SASL)):
            # XEP-0178: the peer validated our certificate; the authorization identity is
            # our domain
            self._phase = _SASL
            authzid = base64.b64encode(self.local.encode()).decode()
            self._write(f"<auth xmlns='{NS.SASL}' mechanism='EXTERNAL'>{authzid}</auth>"
                        .encode())
            return None
        self._dialback()
        return None

    def _dialback(self) -> None:
        if not self.federation.config.dialback:
            self._fail("remote-server-not-found", f"no way to authenticate to {self.remote}")
            return
        self.method = "dialback"
        key = self.federation.key(self.remote, self.local, self.stream.id)
        self._write(dialback.result(self.local, self.remote, key))

    def _sasl(self, el: Element) -> None:
        if self._phase != _SASL:
            raise StreamError("unsupported-stanza-type", f"unexpected <{el.name}/>")
        if el.name == "success":
            self._phase = _SASL_DONE
            self.stream.restart()
            self._write(self.stream.initiate(self.local, self.remote))
            return
        log.info("s2s: %s refused SASL EXTERNAL: %s", self.remote, el)
        self._phase = _READY
        self._dialback()

    async def _start_tls(self) -> None:
        self.transport.pause_reading()
        ok = await self.transport.start_client_tls(self.federation.client_context, self.remote)
        if not ok:
            self._fail("remote-server-not-found", f"TLS with {self.remote} failed")
            return
        self.stream.restart()
        self._write(self.stream.initiate(self.local, self.remote))
        self.flush()
        self.transport.resume_reading()

    def _db_result(self, el: Element) -> None:
        if el.attrs.get("from", "").lower() != self.remote or \
                el.attrs.get("to", "").lower() != self.local:
            return
        verdict = el.attrs.get("type")
        if verdict == "valid":
            self._established()
        elif verdict in ("invalid", "error"):
            self._fail("remote-server-not-found", f"{self.remote} refused our dialback key")

    def _db_verify(self, el: Element) -> None:
        asks = self._verifies.pop(el.attrs.get("id", ""), None)
        if not asks:
            return
        ok = el.attrs.get("type") == "valid" and el.attrs.get("from", "").lower() == self.remote
        receiving = el.attrs.get("to", "").lower()
        for rec, _, fut in asks:
            if not fut.done():
                fut.set_result(ok and rec == receiving)

    def _established(self) -> None:
        if self.state == BOUND:
            return
        self.state = BOUND
        self.stream.established()
        self._stop_timer()
        log.info("s2s: stream %s -> %s established (%s)", self.local, self.remote,
                 self.method)
        self._send_verifies()
        queued, self.queue = self.queue, collections.deque()
        for item in queued:
            self.send(item)
        self._last = self.node.clock.monotonic()
        self._arm_idle(self.federation.config.idle_timeout)

    # -- time -----------------------------------------------------------------------------------
    def _negotiation_timeout(self) -> None:
        self._timer = None
        if self.state < BOUND:
            self._fail("remote-server-timeout", f"{self.remote} did not answer in time")

    def _arm_idle(self, delay: float) -> None:
        self._idle = self.node.clock.call_later(delay, self._idle_check)

    def _idle_check(self) -> None:
        self._idle = None
        if self.state == CLOSED:
            return
        timeout = self.federation.config.idle_timeout
        quiet = self.node.clock.monotonic() - self._last
        if quiet < timeout or self._verifies:
            self._arm_idle(max(timeout - quiet, 1.0))
            return
        log.info("s2s: closing the idle stream %s -> %s", self.local, self.remote)
        self.close()

    # -- ending ---------------------------------------------------------------------------------
    def _fail(self, condition: str, text: str) -> None:
        """The stream cannot be made (or goes): what waits for it bounces with ``condition``."""
        log.info("s2s: stream %s -> %s failed: %s", self.local, self.remote, text)
        self._cause = condition
        if self.state in (WAIT_OPEN, CLOSED) or not hasattr(self, "transport"):
            self._ended()
            return
        self.stream_error(StreamError("undefined-condition" if condition ==
                                      "remote-server-not-found" else "connection-timeout",
                                      text))

    def stream_error(self, exc: StreamError) -> None:
        if self.state != CLOSED:
            log.info("s2s: stream %s -> %s ended: %s", self.local, self.remote, exc)
        if self.state == WAIT_OPEN:  # not connected yet: nothing to write to
            self._ended()
            return
        super().stream_error(exc)

    def _ended(self) -> None:
        if self.state == CLOSED and self._connector is None:
            return
        self.state = CLOSED
        self._stop_timer()
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        connector, self._connector = self._connector, None
        if connector is not None and connector is not asyncio.current_task():
            connector.cancel()
        self.stream.release()
        if self._pending is not None:
            self._pending.clear()
        for asks in self._verifies.values():
            for _, _, fut in asks:
                if not fut.done():
                    fut.set_result(False)
        self._verifies.clear()
        queued, self.queue = self.queue, collections.deque()
        if queued:
            err = StanzaError(self._cause, f"the stream to {self.remote} could not be made")
            for item in queued:
                self.federation.bounce(item, err)
        self.federation.outgoing_ended(self)


def parse(item: Element | bytes) -> Element:
    return item if isinstance(item, Element) else parse_element(item)


__all__ = ["OutgoingStream", "parse"]
