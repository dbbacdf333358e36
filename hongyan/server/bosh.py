"""``/http-bind``: XMPP over BOSH (XEP-0206, XEP-0124) on the HTTP listener.

Each POST is one ``<body/>`` (at most ``c2s.max_stanza_size`` and a little for the wrapper,
else 413 before it is read). One without ``sid`` creates a BOSH session: a
:class:`~hongyan.transport.bosh.BoshTransport` under an ordinary
:class:`~hongyan.server.c2s.C2SSession` on the WebSocket profile, so that negotiation, SASL,
bind and everything the modules do are those of TCP and WebSocket. The others go to their
session by ``sid``; an unknown one is answered ``item-not-found``. Answers are
``text/xml; charset=utf-8`` with the CORS headers a web page on another origin needs (and
OPTIONS answers the preflight).

With several workers a BOSH session lives in the process that created it, whose index ends
its ``sid`` (``<random>.<index>``): a request that reaches another worker is passed there over
the worker links (notices ``bosh`` and ``bosh-reply``) and its answer comes back the same way.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
from typing import TYPE_CHECKING, Protocol

from aiohttp import web

from hongyan.server.c2s import C2SSession, Host
from hongyan.transport.bosh import BoshTransport
from hongyan.transport.http import secure_request
from hongyan.xmpp.bosh import Answer, BoshError, Limits, parse_body, terminate_body

if TYPE_CHECKING:
    from hongyan.config.schema import HTTPSection
    from hongyan.server.cluster import Cluster
    from hongyan.transport.http import Proxies
    from hongyan.transport.tcp import TLSConfig
    from hongyan.xmpp.stream import Profile

log = logging.getLogger("hongyan.bosh")

BOSH_PATH = "/http-bind"
#: what a <body/> wrapper may add to the stanzas it carries
WRAPPER = 4096
#: how much longer than ``wait`` a worker waits for another's answer to a passed request
PASS_MARGIN = 15.0
CONTENT_TYPE = "text/xml; charset=utf-8"


class BoshHost(Host, Protocol):
    """What the BOSH endpoint uses of the node."""

    ws_streams: Profile

    @property
    def tls_config(self) -> TLSConfig | None: ...


class BoshEndpoint:
    """The BOSH sessions of this process, and the handlers of ``/http-bind``."""

    def __init__(self, node: BoshHost, cfg: HTTPSection, proxies: Proxies) -> None:
        self._node = node
        self._proxies = proxies
        c2s = node.config.c2s
        self._max_body = c2s.max_stanza_size + WRAPPER
        self._max_depth = c2s.max_depth
        self.limits = Limits(max_wait=cfg.bosh_max_wait, max_hold=cfg.bosh_max_hold,
                             inactivity=cfg.bosh_inactivity, polling=cfg.bosh_polling,
                             max_pause=cfg.bosh_max_pause)
        self._origins = frozenset(cfg.websocket_origins)
        self._loopback_secure = cfg.loopback_secure
        #: sid -> the BOSH session
        self.sessions: dict[str, BoshTransport] = {}
        self._calls: dict[int, asyncio.Future[bytes]] = {}
        self._tokens = itertools.count(1)
        self._index = 0

    def attach(self, cluster: Cluster) -> None:
        """Several workers: sids name this one, and requests for others' pass through."""
        self._index = cluster.index
        cluster.on("bosh", self._peer_request)
        cluster.on("bosh-reply", self._peer_reply)

    # -- HTTP -----------------------------------------------------------------------------------
    def _cors(self, request: web.BaseRequest) -> dict[str, str]:
        headers = {"Cache-Control": "no-store"}
        origin = request.headers.get("Origin")
        if origin is None:
            return headers
        if not self._origins:
            headers["Access-Control-Allow-Origin"] = "*"
        elif origin.strip().lower().rstrip("/") in self._origins:
            headers["Access-Control-Allow-Origin"] = origin
            headers["Vary"] = "Origin"
        headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
        headers["Access-Control-Allow-Headers"] = "Content-Type"
        headers["Access-Control-Max-Age"] = "86400"
        return headers

    async def options(self, request: web.BaseRequest) -> web.StreamResponse:
        """The CORS preflight of a browser's POST."""
        return web.Response(status=200, headers=self._cors(request))

    async def get(self, request: web.BaseRequest) -> web.StreamResponse:
        return web.Response(text="XMPP over BOSH (XEP-0206): POST a <body/> here\n",
                            headers=self._cors(request))

    async def post(self, request: web.BaseRequest) -> web.StreamResponse:
        headers = self._cors(request)
        limit = self._max_body
        if request.content_length is not None and request.content_length > limit:
            return web.Response(status=413, text=f"a BOSH body is at most {limit} bytes\n",
                                headers=headers)
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = await request.content.readany()
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                return web.Response(status=413, text=f"a BOSH body is at most {limit} "
                                                     "bytes\n", headers=headers)
            chunks.append(chunk)
        data = b"".join(chunks)
        body = await self._answer(request, data)
        return web.Response(body=body, headers={**headers, "Content-Type": CONTENT_TYPE})

    async def _answer(self, request: web.BaseRequest, data: bytes) -> bytes:
        cluster = self._node.cluster
        sid = _sid_of(data)
        if cluster is not None and sid is not None:
            index = _index_of(sid)
            if index is not None and index != cluster.index and 0 <= index < cluster.count:
                return await self._pass(cluster, index, data)
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        def answer(body: bytes) -> None:
            if not fut.done():
                fut.set_result(body)

        raw = request.transport
        peer = raw.get_extra_info("peername") if raw is not None else None
        own_tls = raw is not None and raw.get_extra_info("sslcontext") is not None and not (
            peer and self._proxies.trusted(str(peer[0])))
        self.handle(data, answer, peer_host=request.remote or "",
                    secure=secure_request(request, self._loopback_secure), own_tls=own_tls)
        return await fut

    # -- one request, whichever worker received it ----------------------------------------------
    def handle(self, data: bytes, answer: Answer, *, peer_host: str, secure: bool,
               own_tls: bool) -> None:
        """A request's body, answered through ``answer`` (at once or when the session has
        something to say)."""
        try:
            body = parse_body(data, max_size=self._max_body, max_depth=self._max_depth)
        except BoshError as exc:
            log.debug("bad BOSH request from %s: %s", peer_host, exc)
            answer(terminate_body(exc.condition))
            return
        sid = body.sid
        if sid is not None:
            transport = self.sessions.get(sid)
            if transport is None:
                answer(terminate_body("item-not-found"))
                return
            transport.request(body, answer)
            return
        node = self._node
        to = (body.attrs.get("to") or "").lower().rstrip(".")
        if to not in node.ws_streams.domains:
            answer(terminate_body("host-unknown"))
            return
        if body.attrs.get("type") == "terminate":
            answer(terminate_body("bad-request"))
            return
        sid = f"{secrets.token_urlsafe(18)}.{self._index}"
        tls = node.tls_config
        cb = (("tls-server-end-point", tls.cb_server_end_point)
              if own_tls and tls is not None else None)
        transport = BoshTransport(sid, body, self.limits, node.clock, domain=node.domain,
                                  peer_host=peer_host, secure=secure, channel_binding=cb,
                                  ended=self._ended)
        session = C2SSession(node, transport, node.ws_streams)
        transport.session = session
        self.sessions[sid] = transport
        if not session.admit():
            self.sessions.pop(sid, None)
        transport.open(body, answer)

    def _ended(self, transport: BoshTransport) -> None:
        if self.sessions.get(transport.core.sid) is transport:
            del self.sessions[transport.core.sid]

    # -- passing requests between workers -------------------------------------------------------
    async def _pass(self, cluster: Cluster, index: int, data: bytes) -> bytes:
        token = next(self._tokens)
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._calls[token] = fut
        cluster.notify("bosh", b"%d\0%d\0%s" % (cluster.index, token, data), index)
        try:
            return await asyncio.wait_for(fut, self.limits.max_wait + PASS_MARGIN)
        except TimeoutError:
            log.warning("worker %d did not answer a BOSH request in time", index)
            return terminate_body("remote-connection-failed")
        finally:
            self._calls.pop(token, None)

    def _peer_request(self, frame: bytes) -> None:
        origin_text, token, data = frame.split(b"\0", 2)
        cluster = self._node.cluster
        assert cluster is not None
        origin = int(origin_text)

        def answer(body: bytes) -> None:
            cluster.notify("bosh-reply", token + b"\0" + body, origin)

        # (a session is never created here: a request without a sid is not passed)
        self.handle(data, answer, peer_host="", secure=False, own_tls=False)

    def _peer_reply(self, frame: bytes) -> None:
        token, _, body = frame.partition(b"\0")
        fut = self._calls.get(int(token))
        if fut is not None and not fut.done():
            fut.set_result(body)

    def stop(self) -> None:
        """The node stops: every session ends (its client is told on its next request...
        which finds no session)."""
        for transport in list(self.sessions.values()):
            transport.close()


def _sid_of(data: bytes) -> str | None:
    """The ``sid`` attribute of a body, found without parsing it (only to pick the worker;
    the worker that has the session parses it)."""
    end = data.find(b">")
    head = data[:end] if end >= 0 else data
    for quote in (b"'", b'"'):
        key = b"sid=" + quote
        at = head.find(key)
        while at > 0 and head[at - 1:at] not in (b" ", b"\t", b"\n", b"\r"):
            at = head.find(key, at + 1)
        if at > 0:
            start = at + len(key)
            stop = head.find(quote, start)
            if stop > start:
                return head[start:stop].decode("ascii", "replace")
    return None


def _index_of(sid: str) -> int | None:
    _, dot, index = sid.rpartition(".")
    if not dot or not index.isdigit() or len(index) > 4:
        return None
    return int(index)


__all__ = ["BOSH_PATH", "BoshEndpoint", "BoshHost"]
