"""Server-to-server federation (RFC 6120 §9, XEP-0220, XEP-0185): a remote domain is one more
kind of place for the router (:data:`~hongyan.server.router.REMOTE`).

:class:`Federation` owns this process's streams with other servers: the outgoing ones, one per
pair (local domain, remote domain), made on the first stanza and reused
(:mod:`~hongyan.server.s2s.outgoing`), and the incoming ones the listener on 5269 accepts
(:mod:`~hongyan.server.s2s.incoming`). It makes and checks dialback keys (XEP-0185, from a
secret kept in the database, so that every worker and every restart agrees), and it remembers
which remote resources told which local users they are available, so that when the stream
from their server drops those users see them go unavailable.

With several workers, each remote domain's streams live on one worker (the domain's
``service_home``): the router sends every stanza for that domain there.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Container
from typing import TYPE_CHECKING

from hongyan.server.limits import Preauth
from hongyan.server.s2s.base import Host, Transport
from hongyan.server.s2s.certs import Trust
from hongyan.server.s2s.dns import Resolver
from hongyan.server.s2s.incoming import IncomingStream
from hongyan.server.s2s.outgoing import OutgoingStream, parse
from hongyan.xmpp import dialback
from hongyan.xmpp.element import Element
from hongyan.xmpp.errors import StanzaError, StreamError, error_reply
from hongyan.xmpp.jid import JID

if TYPE_CHECKING:
    from hongyan.config.schema import S2SSection
    from hongyan.server.router import Router
    from hongyan.xmpp.stream import Profile

log = logging.getLogger("hongyan.s2s")


class Federation:
    """This process's streams with other servers."""

    def __init__(self, node: Host, config: S2SSection, streams: Profile,
                 client_context: ssl.SSLContext, trust: Trust) -> None:
        self.node = node
        self.config = config
        #: what every s2s stream shares (parser limits, the domains a peer may name)
        self.streams = streams
        #: the TLS client context of outgoing streams (our certificate, for the peer to see)
        self.client_context = client_context
        #: what a peer's certificate is checked against (RFC 6125)
        self.trust = trust
        #: the dialback secret (XEP-0185), from the database at start
        self.secret = b""
        self.outgoing: dict[tuple[str, str], OutgoingStream] = {}
        self.incoming: set[IncomingStream] = set()
        #: incoming streams per address and in all
        self.per_ip = Preauth(config.max_streams_per_ip, config.max_streams)
        #: DNS (SRV, then A/AAAA) for domains without a static route
        self.resolver = Resolver(config.resolver, config.connect_timeout)
        #: remote domain -> {(remote full JID, local bare JID)} that sent available presence
        self._available: dict[str, dict[tuple[str, str], None]] = {}

    # -- the router's side ----------------------------------------------------------------------
    def federates(self, domain: str) -> bool:
        return self.config.federates(domain)

    def deliver(self, el: Element, sender: JID, to: JID) -> None:
        """Send ``el`` from a domain of this server to the server of ``to``."""
        if "from" not in el.attrs:
            el.attrs["from"] = sender.text
        key = (sender.domain, to.domain)
        out = self.outgoing.get(key)
        if out is None:
            out = self.outgoing[key] = OutgoingStream(self, sender.domain, to.domain)
        out.send_stanza(el)

    def bounce(self, item: Element | bytes, error: StanzaError) -> None:
        """Answer a stanza that cannot leave (unless it is an error or an unavailable
        presence, which nobody waits for)."""
        el = parse(item)
        itype = el.attrs.get("type")
        if itype in ("error", "result") or (el.name == "presence" and itype is not None):
            return
        reply = error_reply(el, error)
        if "from" not in reply.attrs:
            return
        self.node.router.send(reply)

    # -- dialback -------------------------------------------------------------------------------
    def key(self, receiving: str, originating: str, stream_id: str) -> str:
        return dialback.key(self.secret, receiving, originating, stream_id)

    def key_valid(self, receiving: str, originating: str, stream_id: str, given: str) -> bool:
        return bool(stream_id) and dialback.valid(self.secret, receiving, originating,
                                                  stream_id, given)

    async def verify(self, local: str, remote: str, stream_id: str, key: str) -> bool:
        """Ask the authoritative server of ``remote`` whether ``key`` is its key for the
        stream ``stream_id`` it opened to our ``local`` (over our own stream to it)."""
        if not self.config.federates(remote) or self.node.router.serves(remote):
            return False
        pair = (local, remote)
        out = self.outgoing.get(pair)
        if out is None:
            out = self.outgoing[pair] = OutgoingStream(self, local, remote)
        fut = out.verify(local, stream_id, key)
        try:
            async with asyncio.timeout(self.config.negotiation_timeout):
                return await fut
        except TimeoutError:
            return False

    # -- where ----------------------------------------------------------------------------------
    async def addresses(self, domain: str) -> list[tuple[str, int, bool]]:
        """Where the server of ``domain`` listens: (host, port, direct TLS), in order."""
        route = self.config.routes.get(domain)
        if route is not None:
            host, _, port = route.rpartition(":")
            return [(host.strip("[]"), int(port), False)]
        return await self.resolver.addresses(domain)

    # -- incoming streams -----------------------------------------------------------------------
    def incoming_stream(self, transport: Transport) -> IncomingStream:
        stream = IncomingStream(self, transport)
        self.incoming.add(stream)
        stream.admit()
        return stream

    def authenticated(self, stream: IncomingStream, remote: str) -> None:
        """``stream`` proved it speaks for ``remote``."""

    def remote_presence(self, el: Element, sender: JID, to: JID) -> None:
        """Note who at another server told whom here it is available (or no longer is)."""
        if not sender.resource:
            return
        ptype = el.attrs.get("type")
        pair = (sender.text, to.bare_str)
        if ptype is None:
            self._available.setdefault(sender.domain, {})[pair] = None
        elif ptype == "unavailable":
            seen = self._available.get(sender.domain)
            if seen is not None:
                seen.pop(pair, None)

    def incoming_ended(self, stream: IncomingStream) -> None:
        if stream not in self.incoming:
            return
        self.incoming.discard(stream)
        remotes = {r for r, _ in stream.domains}
        still = {r for s in self.incoming for r, _ in s.domains}
        for remote in remotes - still:
            self._gone(remote)

    def _gone(self, remote: str) -> None:
        """The last stream from ``remote`` dropped: its users are unavailable to ours."""
        seen = self._available.pop(remote, None)
        if not seen:
            return
        log.info("s2s: stream from %s gone: %d presences become unavailable", remote,
                 len(seen))
        for frm, to in seen:
            self.node.router.send(Element("presence", attrs={
                "type": "unavailable", "from": frm, "to": to}))

    def outgoing_ended(self, out: OutgoingStream) -> None:
        key = (out.local, out.remote)
        if self.outgoing.get(key) is out:
            del self.outgoing[key]

    # -- lifecycle ------------------------------------------------------------------------------
    def stop(self) -> None:
        for out in list(self.outgoing.values()):
            out.stream_error(StreamError("system-shutdown"))
        for s in list(self.incoming):
            s.stream_error(StreamError("system-shutdown"))


class Served(Container[str]):
    """The names a peer's stream header may carry: this server's domain and its services'."""

    __slots__ = ("_router",)

    def __init__(self, router: Router) -> None:
        self._router = router

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._router.serves(name)


__all__ = ["Federation", "Host", "IncomingStream", "OutgoingStream", "Served", "Transport"]
