"""The node's own HTTP routes: ``/health`` and XMPP over WebSocket at ``/xmpp-websocket``
(RFC 7395). Modules add theirs through ``ModuleAPI.http_route``.

A WebSocket client gets a :class:`~hongyan.server.c2s.C2SSession` like a TCP client, on a stream
of the WebSocket profile (``<open/>``/``<close/>``, one element per message): the same
negotiation, SASL, bind, stream management, client state indication and everything the
modules do. What differs is only the transport: a lean one (``transport/wsfront.py``, the
default) or aiohttp's (``transport/websocket.py``).
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Protocol

from aiohttp import web

from hongyan.server.c2s import C2SSession, Host, Transport
from hongyan.transport.http import loopback_peer, secure_request
from hongyan.transport.rfc6455 import (
    HandshakeError,
    RequestHead,
    check_upgrade,
    refusal,
    switching_protocols,
)
from hongyan.transport.websocket import WebSocketTransport
from hongyan.transport.wsfront import Keepalive, LeanWebSocket, peer_address

if TYPE_CHECKING:
    from hongyan.config.schema import HTTPSection
    from hongyan.server.cluster import Cluster
    from hongyan.transport.http import Proxies
    from hongyan.transport.tcp import Connections, TLSConfig
    from hongyan.xmpp.stream import Profile

#: RFC 7395 §3.1: the subprotocol a client must ask for
SUBPROTOCOL = "xmpp"
WEBSOCKET_PATH = "/xmpp-websocket"


class WebHost(Host, Protocol):
    """What the HTTP routes use of the node."""

    ws_streams: Profile
    connections: Connections

    @property
    def tls_config(self) -> TLSConfig | None: ...
    def adopted_session(self, transport: Transport, username: str, websocket: bool = False
                        ) -> C2SSession: ...


async def health(node: WebHost, timeout: float, detail: bool = True) -> web.Response:
    """``GET /health``: the whole node's. 200 and a small JSON while every worker is up; 503
    and the same JSON naming the workers that are not (``missing``: their link to the
    answering worker is down, or they did not answer its ping within ``timeout`` seconds, as
    a hung worker would not), so that a load balancer takes the node out of service. Without
    ``detail`` (a client that may not read ``/metrics``) the JSON is the status alone."""
    cluster: Cluster | None = node.cluster
    missing = await cluster.unanswered(timeout) if cluster is not None else []
    body: dict[str, object] = {"status": "degraded" if missing else "ok"}
    if detail:
        body.update(domain=node.config.server.domain, sessions=node.sessions.count(),
                    worker=cluster.index if cluster is not None else None,
                    workers=cluster.count if cluster is not None else 1, missing=missing)
    return web.Response(status=503 if missing else 200, text=json.dumps(body),
                        content_type="application/json",
                        headers={"Cache-Control": "no-store"})


class WebSocketEndpoint:
    """``GET /xmpp-websocket``: the handshake's checks (RFC 7395 §3.1-3.2: the ``xmpp``
    subprotocol, else 400; the configured origins, else 403), then a client session on the
    WebSocket until it ends.

    Two ways in: :meth:`upgrade`, the lean one (``http.websocket_lean``): the listener's
    front door (``transport/wsfront.py``) read the request head and the connection becomes a
    :class:`~hongyan.transport.wsfront.LeanWebSocket` with no aiohttp object left; and
    :meth:`__call__`, aiohttp's route (the fallback, and what a request the front door passes
    on meets): an aiohttp ``WebSocketResponse`` driven by :class:`WebSocketTransport`."""

    def __init__(self, node: WebHost, cfg: HTTPSection, proxies: Proxies) -> None:
        self._node = node
        self._cfg = cfg
        self._proxies = proxies
        self._origins = frozenset(cfg.websocket_origins)
        #: the stanza limit applies; a message twice as large is refused (1009) from its
        #: frame header, so that an oversized message is never buffered without bound
        self._limit = node.config.c2s.max_stanza_size
        #: the lean WebSockets open and their pings (one timer for all)
        self.keepalive = Keepalive(node.clock, cfg.websocket_ping)

    def refused(self, protocols: str, origin: str | None) -> tuple[int, str] | None:
        """Why a handshake asking for ``protocols`` from ``origin`` is refused (the status and
        the text), or None."""
        if SUBPROTOCOL not in [p.strip() for p in protocols.split(",")]:
            return 400, "XMPP over WebSocket needs the 'xmpp' subprotocol (RFC 7395)\n"
        if self._origins and origin is not None and \
                origin.strip().lower().rstrip("/") not in self._origins:
            return 403, "this origin may not connect\n"
        return None

    def _binding(self, raw: asyncio.BaseTransport, peer: str) -> tuple[str, bytes] | None:
        """Channel binding, when the TLS is ours (not a trusted proxy's)."""
        own_tls = raw.get_extra_info("sslcontext") is not None and not (
            peer and self._proxies.trusted(peer))
        tls = self._node.tls_config
        return (("tls-server-end-point", tls.cb_server_end_point)
                if own_tls and tls is not None else None)

    def upgrade(self, head: RequestHead, raw: asyncio.Transport, rest: bytes) -> None:
        """The front door's way: answer the handshake on ``raw`` and put a session on it
        (``rest``: what the client sent after the head)."""
        h = head.headers
        try:
            key = check_upgrade(head)
            refused = self.refused(h.get("sec-websocket-protocol", ""), h.get("origin"))
            if refused is not None:
                raise HandshakeError(*refused)
        except HandshakeError as e:
            raw.write(refusal(e.status, e.text, e.headers))
            raw.close()
            return
        peer = peer_address(raw)
        own_scheme = "https" if raw.get_extra_info("sslcontext") is not None else "http"
        remote, scheme = (self._proxies.client(peer, h.get("x-forwarded-for"),
                                               h.get("x-forwarded-proto"))
                          if self._proxies else (peer, None))
        node = self._node
        raw.write(switching_protocols(key, SUBPROTOCOL))
        ws = LeanWebSocket(raw, self.keepalive, peer_host=remote,
                           secure=(scheme or own_scheme) == "https" or (
                               self._cfg.loopback_secure and loopback_peer(
                                   remote, raw.get_extra_info("sockname"), h)),
                           channel_binding=self._binding(raw, peer), limit=self._limit,
                           conns=node.connections)
        raw.set_protocol(ws)
        session = C2SSession(node, ws, node.ws_streams)
        ws.session = session
        session.admit()  # (over a cap it ends at once)
        if rest:
            ws.data_received(rest)

    def adopted(self, username: str, peer_host: str, secure: bool) -> LeanWebSocket:
        """A lean WebSocket whose socket another worker authenticated for ``username`` (homed
        here) and moved here: the protocol for the socket, its session waiting for the client's
        stream restart."""
        node = self._node
        ws = LeanWebSocket(None, self.keepalive, peer_host=peer_host, secure=secure,
                           channel_binding=None, limit=self._limit, conns=node.connections)
        ws.session = node.adopted_session(ws, username, True)
        return ws

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        refused = self.refused(request.headers.get("Sec-WebSocket-Protocol", ""),
                               request.headers.get("Origin"))
        if refused is not None:
            return web.Response(status=refused[0], text=refused[1])
        ping = self._cfg.websocket_ping
        ws = web.WebSocketResponse(protocols=(SUBPROTOCOL,), heartbeat=ping or None,
                                   max_msg_size=2 * self._limit, compress=False)
        if not ws.can_prepare(request).ok:
            return web.Response(status=400, text="not a WebSocket handshake\n")
        await ws.prepare(request)
        raw = request.transport
        if raw is None:  # (gone during the handshake)
            return ws
        node = self._node
        peer = peer_address(raw)
        transport = WebSocketTransport(ws, raw, peer_host=request.remote or "",
                                       secure=secure_request(request,
                                                             self._cfg.loopback_secure),
                                       channel_binding=self._binding(raw, peer),
                                       max_message=self._limit)
        session = C2SSession(node, transport, node.ws_streams)
        session.admit()  # (over a cap it ends at once: run() then returns when the peer goes)
        node.connections.websocket += 1
        try:
            await transport.run(session)
        finally:
            node.connections.websocket -= 1
        return ws


__all__ = ["SUBPROTOCOL", "WEBSOCKET_PATH", "WebHost", "WebSocketEndpoint", "health"]
