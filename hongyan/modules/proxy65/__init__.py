"""XEP-0065 SOCKS5 Bytestreams: a proxy at ``proxy.<domain>`` (``[proxy65] host``) with its own
TCP port (``[proxy65] port``, 7777), so that two clients that cannot reach each other still
send a file (XEP-0065 itself, XEP-0096 stream initiation, Jingle's XEP-0260 transport) through
the server. Off by default (``[proxy65] enabled``): it opens a port that must be reachable from
the clients' networks and tells them an address (``public_host``) the server cannot guess
behind NAT.

In-band, the service answers disco#info (identity proxy/bytestreams), the streamhost query
(its JID, host and port) and activation (:meth:`Proxy65._activate`); the SOCKS5 side and the
relay are :mod:`.relay`. Only the server's users (and those of ``allowed_domains``) may ask
for the streamhost or activate; the SOCKS5 connections themselves carry no identity, and
nothing is relayed until an allowed initiator activates.

With several workers the listener opens on one worker only, the service's home (the worker
that every IQ to the service reaches): both SOCKS5 connections of a stream and the initiator's
activation then meet in one process, and nothing about a stream crosses the links.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
from typing import TYPE_CHECKING

from hongyan.modules.proxy65.options import Proxy65Options
from hongyan.modules.proxy65.relay import Streams
from hongyan.server.cluster import Cluster
from hongyan.server.module import Module
from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element
from hongyan.xmpp.errors import StanzaError
from hongyan.xmpp.jid import JID, JIDError

if TYPE_CHECKING:
    from hongyan.server.module import ModuleAPI

BYTESTREAMS = "http://jabber.org/protocol/bytestreams"


def stream_key(sid: str, initiator: JID, target: JID) -> str:
    """DST.ADDR: hex SHA-1 of SID + initiator JID + target JID, the JIDs prepared (XEP-0065
    §5.3.2)."""
    return hashlib.sha1(f"{sid}{initiator}{target}".encode()).hexdigest()


class Proxy65(Module):
    name = "proxy65"
    xeps = {"0065": "1.8.2"}

    def __init__(self, api: ModuleAPI) -> None:
        super().__init__(api)
        self.options = api.options(Proxy65Options)
        self.host = self.options.host_for(api.domain)
        self.streams = Streams(self.options, api.monotonic, api.call_later)
        self._servers: list[asyncio.AbstractServer] = []
        #: the listener's port once open (0 while it is not, or on another worker)
        self.port = 0

    async def start(self) -> None:
        if not self.options.enabled:
            return
        self.api.service(self.host, self._request)
        streams = self.streams
        self.api.metric("counter", "proxy65_activated", "SOCKS5 bytestreams activated",
                        lambda: streams.activated)
        self.api.metric("counter", "proxy65_bytes", "bytes relayed by the SOCKS5 proxy",
                        lambda: streams.bytes)
        self.api.metric("gauge", "proxy65_connections", "SOCKS5 connections open",
                        lambda: len(streams.conns))
        if self.api.config.server.workers <= 1:
            await self._listen()

    def cluster_ready(self, cluster: Cluster) -> None:
        if self.options.enabled and cluster.service_home(self.host) == cluster.index:
            self.api.spawn(self._listen())

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        o = self.options
        port = o.port
        for addr in o.bind:
            try:
                server = await loop.create_server(self.streams.protocol, addr, port,
                                                  reuse_address=True)
            except OSError as exc:
                for opened in self._servers:
                    opened.close()
                self._servers.clear()
                raise RuntimeError(f"proxy65.port: cannot listen on {addr} port {port}: "
                                   f"{exc.strerror or exc}") from None
            self._servers.append(server)
            port = int(server.sockets[0].getsockname()[1])
        self.port = port
        self.log.info("SOCKS5 bytestreams proxy %s on port %d", self.host, port)

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        self.streams.close_all()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()

    # -- in-band -------------------------------------------------------------------------------
    def _allowed(self, sender: JID) -> bool:
        allowed = self.options.allowed_domains
        return bool(sender.local) and (sender.domain == self.api.domain or "*" in allowed
                                       or sender.domain in allowed)

    def streamhost(self) -> tuple[str, int]:
        """What clients are told to connect to."""
        o = self.options
        host = o.public_host
        if not host:
            first = o.bind[0] if o.bind else ""
            try:
                wild = ipaddress.ip_address(first).is_unspecified
            except ValueError:
                wild = not first
            host = self.api.domain if wild else first
        return host, o.public_port or self.port or o.port

    async def _request(self, itype: str, payload: Element, sender: JID) -> Element | None:
        if itype == "get" and payload.name == "query" and not payload.attrs.get("node"):
            if payload.xmlns == NS.DISCO_INFO:
                return self._disco_info()
            if payload.xmlns == NS.DISCO_ITEMS:
                return Element("query", NS.DISCO_ITEMS)
        if payload.name == "query" and payload.xmlns == BYTESTREAMS:
            if not self._allowed(sender):
                raise StanzaError("forbidden", f"this proxy is for the users of "
                                  f"{self.api.domain}")
            if itype == "get":
                host, port = self.streamhost()
                q = Element("query", BYTESTREAMS)
                q.add("streamhost", attrs={"jid": self.host, "host": host, "port": str(port)})
                return q
            self._activate(payload, sender)
            return None
        raise StanzaError("service-unavailable")

    def _disco_info(self) -> Element:
        q = Element("query", NS.DISCO_INFO)
        q.add("identity", attrs={"category": "proxy", "type": "bytestreams",
                                 "name": "SOCKS5 Bytestreams Service"})
        for var in (NS.DISCO_INFO, BYTESTREAMS):
            q.add("feature", attrs={"var": var})
        return q

    def _activate(self, query: Element, sender: JID) -> None:
        """XEP-0065 §6.3.5: the stream of SHA-1(sid + sender + target) starts relaying."""
        sid = query.attrs.get("sid", "")
        act = query.find("activate", BYTESTREAMS)
        if not sid or act is None or not act.text.strip():
            raise StanzaError("bad-request", "activation names a sid and the target's JID")
        try:
            target = JID.parse(act.text.strip())
        except JIDError:
            raise StanzaError("jid-malformed", "the target in <activate/> is not a JID"
                              ) from None
        if self.port == 0:
            raise StanzaError("internal-server-error", "the proxy's listener is not open")
        failed = self.streams.activate(stream_key(sid, sender, target))
        if failed == "item-not-found":
            raise StanzaError("item-not-found", "no bytestream of this sid, initiator and "
                              "target is connected")
        if failed is not None:
            raise StanzaError(failed, "both sides must be connected, and only once")


MODULE = Proxy65
