"""The node's own HTTP routes: ``/health`` and XMPP over WebSocket at ``/xmpp-websocket``
(RFC 7395). Modules add theirs through ``ModuleAPI.http_route``.

A WebSocket client gets a :class:`~hongyan.server.c2s.C2SSession` like a TCP client, on a stream
of the WebSocket profile (``<open/>``/``<close/>``, one element per message): the same
negotiation, SASL, bind, stream management, client state indication and everything the
modules do. What differs is only the transport (``transport/websocket.py``).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Protocol

from aiohttp import web

from hongyan.server.c2s import C2SSession, Host
from hongyan.transport.http import secure_request
from hongyan.transport.websocket import WebSocketTransport

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


def health(node: WebHost) -> web.Response:
    """``GET /health``: 200 and a small JSON while the node (this process of it) runs."""
    cluster: Cluster | None = node.cluster
    body = {"status": "ok", "domain": node.config.server.domain,
            "sessions": node.sessions.count(),
            "worker": cluster.index if cluster is not None else None}
    return web.Response(text=json.dumps(body), content_type="application/json",
                        headers={"Cache-Control": "no-store"})


class WebSocketEndpoint:
    """``GET /xmpp-websocket``: the handshake's checks (RFC 7395 §3.1-3.2: the ``xmpp``
    subprotocol, else 400; the configured origins, else 403), then a client session on the
    WebSocket until it ends."""

    def __init__(self, node: WebHost, cfg: HTTPSection, proxies: Proxies) -> None:
        self._node = node
        self._cfg = cfg
        self._proxies = proxies
        self._origins = frozenset(cfg.websocket_origins)
        #: the stanza limit applies; aiohttp itself refuses (1009) what is twice as large, so
        #: that an oversized message is never buffered without bound
        self._limit = node.config.c2s.max_stanza_size

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        asked = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")]
        if SUBPROTOCOL not in asked:
            return web.Response(status=400, text="XMPP over WebSocket needs the 'xmpp' "
                                                 "subprotocol (RFC 7395)\n")
        origin = request.headers.get("Origin")
        if self._origins and origin is not None and \
                origin.strip().lower().rstrip("/") not in self._origins:
            return web.Response(status=403, text="this origin may not connect\n")
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
        peer = raw.get_extra_info("peername")
        own_tls = raw.get_extra_info("sslcontext") is not None and not (
            peer and self._proxies.trusted(str(peer[0])))
        tls = node.tls_config
        cb = (("tls-server-end-point", tls.cb_server_end_point)
              if own_tls and tls is not None else None)
        transport = WebSocketTransport(ws, raw, peer_host=request.remote or "",
                                       secure=secure_request(request,
                                                             self._cfg.loopback_secure),
                                       channel_binding=cb,
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
