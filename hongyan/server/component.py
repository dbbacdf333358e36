"""External components (XEP-0114, ``jabber:component:accept``): a gateway or a bot that
connects to the server (port 5347), proves it knows its configured secret, and then serves its
own domain.

A component is a place like any other: its domain is a service of the router (a
:class:`~hongyan.server.router.Target`), registered at start for every configured name, so a
stanza for it goes wherever the router sends services, and while it is not connected the
stanza bounces (``service-unavailable``, as Prosody answers). What it sends is routed as the
server's own stanzas are, once its ``from`` is checked to be at its domain (else the stream
error ``invalid-from``).

With several workers a component lives on the home of its domain (``service_home``), where
the router sends every stanza for it: a connection another worker accepted moves there as soon
as its stream header names the component, before the server has said a word (the socket and
the bytes read so far are handed over; see ``Cluster.pass_stream``). The other workers learn
that it connected or left (a notice) only to list it in disco#items.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
import logging
from collections.abc import Awaitable, Iterable
from typing import TYPE_CHECKING, Protocol

from hongyan.server.session import (
    BOUND,
    CLOSED,
    NEGOTIATING,
    WAIT_OPEN,
    Batcher,
    Connection,
    StreamSession,
)
from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element
from hongyan.xmpp.errors import StanzaError, StreamError, error_reply
from hongyan.xmpp.jid import JID, JIDError
from hongyan.xmpp.parser import Event, StreamClose, StreamOpen
from hongyan.xmpp.stream import Stream

if TYPE_CHECKING:
    from hongyan.config.schema import ComponentEntry, Config
    from hongyan.server.auth import Guard
    from hongyan.server.clock import Clock, Handle
    from hongyan.server.cluster import Cluster
    from hongyan.server.router import Router
    from hongyan.xmpp.stream import Profile

log = logging.getLogger("hongyan.component")

#: bytes a connection may send before its stream header is complete (kept to pass them on
#: with the connection when it moves to the component's home worker)
MAX_PRELUDE = 16384
_HANDSHAKE_OK = b"<handshake/>"


class Transport(Connection, Protocol):
    """What a component's stream needs of its connection."""

    @property
    def peer_host(self) -> str: ...


class Host(Batcher, Protocol):
    """What a component's stream uses of its node."""

    config: Config
    router: Router
    clock: Clock
    component_streams: Profile
    components: ExternalComponents

    @property
    def cluster(self) -> Cluster | None: ...


class ExternalComponents:
    """The configured components of a node: their secrets, and the one stream of each that is
    connected to this process (the component's home)."""

    def __init__(self, router: Router, entries: Iterable[ComponentEntry], guard: Guard) -> None:
        """``guard``: failed handshakes per address, which delay the next answer (a guard of
        their own: a gateway retrying a wrong secret must not slow the clients' logins from
        its address, often the same loopback)."""
        self._router = router
        self.guard = guard
        self._secrets = {e.name: e.secret for e in entries}
        #: the names a component's stream may ask for
        self.names = frozenset(self._secrets)
        #: name -> its stream, for each component connected here
        self.connected: dict[str, ComponentSession] = {}
        self._cluster: Cluster | None = None
        self._undo = [router.register_component(name, self.deliver, listed=False)
                      for name in self.names]

    def attach_cluster(self, cluster: Cluster) -> None:
        """This process is one of several: hear which components connect elsewhere."""
        self._cluster = cluster
        self._undo.append(cluster.on("component", self._peer_notice))

    def release(self) -> None:
        for undo in self._undo:
            undo()
        self._undo.clear()

    # -- authentication -------------------------------------------------------------------------
    def handshake_ok(self, name: str, stream_id: str, given: str) -> bool:
        """XEP-0114 §3: the handshake is the hex SHA-1 of the stream id and the secret."""
        secret = self._secrets.get(name)
        if secret is None:
            return False
        expected = hashlib.sha1((stream_id + secret.get_secret_value()).encode()).hexdigest()
        return hmac.compare_digest(expected.encode(), given.strip().lower().encode())

    def attach(self, session: ComponentSession, name: str) -> bool:
        """``session`` authenticated as ``name``; False when another stream serves it already
        (the one connected first keeps it)."""
        if name in self.connected:
            return False
        self.connected[name] = session
        self._listed(name, True)
        return True

    def detach(self, session: ComponentSession, name: str) -> None:
        if self.connected.get(name) is session:
            del self.connected[name]
            self._listed(name, False)

    def _listed(self, name: str, up: bool) -> None:
        self._router.announce(name, up)
        if self._cluster is not None:
            self._cluster.notify("component", (b"+" if up else b"-") + name.encode())

    def _peer_notice(self, body: bytes) -> None:
        name = body[1:].decode()
        if name in self.names:
            self._router.announce(name, body[:1] == b"+")

    # -- routing ----------------------------------------------------------------------------------
    def deliver(self, el: Element, sender: JID, to: JID) -> None:
        """The router's handler of every configured component's domain (on its home)."""
        session = self.connected.get(to.domain)
        if session is not None:
            session.send(el)
            return
        itype = el.attrs.get("type")
        if itype in ("error", "result") or (el.name == "presence" and itype == "unavailable"):
            return
        self._router.bounce(el, StanzaError("service-unavailable",
                                            f"the component {to.domain} is not connected"))

    def stop(self) -> None:
        for session in list(self.connected.values()):
            session.stream_error(StreamError("system-shutdown"))


class ComponentSession(StreamSession):
    """The server's side of one component's stream: header, handshake, then stanzas, handled
    in order as on a client's stream (:class:`~hongyan.server.session.StreamSession`)."""

    __slots__ = ("_name", "_pending", "_prelude", "_task", "_timer", "stream")

    node: Host
    transport: Transport

    def __init__(self, node: Host, transport: Transport, received: bytes = b"") -> None:
        """``received``: what another worker read from this connection before it handed it
        over (the stream header that named this worker's component)."""
        super().__init__()
        self.node = node
        self.transport = transport
        self.jid: JID | None = None
        self.stream = Stream(node.component_streams)
        self._name = ""
        self._prelude = b""
        self._pending: collections.deque[Event] | None = None
        self._task: asyncio.Task[None] | None = None
        self._timer: Handle | None = node.clock.call_later(node.config.c2s.auth_timeout,
                                                           self._timeout)
        if received:
            self.data_received(received)

    def __repr__(self) -> str:
        return f"<ComponentSession {self._name or self.transport.peer_host} state={self.state}>"

    # -- input ----------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self.state == CLOSED:
            return
        if self.state == WAIT_OPEN and self.node.cluster is not None:
            self._prelude += data
            if len(self._prelude) > MAX_PRELUDE:
                self.stream_error(StreamError("policy-violation", "no stream header"))
                return
        self._receive(data)

    def _handle(self, ev: Event) -> Awaitable[object] | None:
        if isinstance(ev, StreamOpen):
            self._open(ev)
            return None
        if isinstance(ev, StreamClose):
            self.close()
            return None
        if self.state == BOUND:
            return self._stanza(ev)
        if ev.name == "handshake" and ev.xmlns == NS.CLIENT and self.state == NEGOTIATING:
            return self._handshake(ev)
        raise StreamError("not-authorized", "complete the handshake first (XEP-0114)")

    # -- negotiation ----------------------------------------------------------------------------
    def _open(self, ev: StreamOpen) -> None:
        name = (ev.to or "").lower().rstrip(".")
        cluster = self.node.cluster
        if cluster is not None and name in self.node.components.names:
            home = cluster.service_home(name)
            if home != cluster.index:
                # nothing was said yet: the component's home takes it from here
                log.debug("component %s: the stream moves to worker %d", name, home)
                self._stop_timer()
                self.state = CLOSED
                self.stream.release()
                cluster.pass_stream(self, home, self._prelude)
                return
        self._prelude = b""
        header, wrong = self.stream.accept(ev)
        self._write(header)
        self._name = name[:255]  # (an unknown one too: the log line names it)
        if wrong is not None:
            raise wrong
        self.state = NEGOTIATING

    def _handshake(self, el: Element) -> Awaitable[None] | None:
        name, peer = self._name, self.transport.peer_host
        guard = self.node.components.guard
        if not self.node.components.handshake_ok(name, self.stream.id, el.text):
            log.info("component %s: wrong handshake from %s", name, peer)
            return self._refuse(guard.failed(peer))
        guard.succeeded(peer)
        if not self.node.components.attach(self, name):
            log.info("component %s: refused a second connection from %s", name, peer)
            raise StreamError("conflict", f"a component serves {name} already")
        self._stop_timer()
        self.stream.established()
        self.jid = JID("", name, "")
        self.state = BOUND
        self._write(_HANDSHAKE_OK)
        log.info("component %s connected from %s", name, peer)
        return None

    async def _refuse(self, delay: float) -> None:
        if delay > 0:
            await asyncio.sleep(delay)
        raise StreamError("not-authorized", "the handshake does not match the secret")

    def _timeout(self) -> None:
        self._timer = None
        if self.state < BOUND:
            self.stream_error(StreamError("connection-timeout",
                                          "no handshake within the time allowed"))

    # -- stanzas --------------------------------------------------------------------------------
    def _stanza(self, el: Element) -> Awaitable[object] | None:
        if el.xmlns != NS.CLIENT or el.name not in ("message", "presence", "iq"):
            raise StreamError("unsupported-stanza-type", f"<{el.name}/> is not a stanza")
        attrs = el.attrs
        frm, to_text = attrs.get("from"), attrs.get("to")
        if frm is None or to_text is None:
            raise StreamError("improper-addressing", "a component's stanza needs 'from' and "
                                                     "'to' (XEP-0114)")
        try:
            sender = JID.parse(frm)
        except JIDError:
            raise StreamError("improper-addressing", "'from' is not a JID") from None
        if sender.domain != self._name:
            raise StreamError("invalid-from", f"this component may send only from JIDs at "
                                              f"{self._name}")
        try:
            to = JID.parse(to_text)
        except JIDError as exc:
            if attrs.get("type") != "error":
                reply = error_reply(el, StanzaError("jid-malformed", str(exc)))
                reply.attrs["from"] = self.node.config.server.domain
                self.send(reply)
            return None
        return self.node.router.route(el, sender, to)

    # -- ending ---------------------------------------------------------------------------------
    def stream_error(self, exc: StreamError) -> None:
        if self.state != CLOSED:  # (a few streams, each refusal worth a line)
            log.info("component stream %r from %s ended: %s", self._name,
                     self.transport.peer_host, exc)
        super().stream_error(exc)

    def _ended(self) -> None:
        was = self.state
        self.state = CLOSED
        self._stop_timer()
        self.stream.release()
        if self._pending is not None:
            self._pending.clear()
        if was == BOUND:
            self.node.components.detach(self, self._name)
            log.info("component %s disconnected", self._name)


__all__ = ["ComponentSession", "ExternalComponents", "Transport"]
