"""The HTTP listener (aiohttp): one low-level server for port 5280 (HTTP) and 5281 (HTTPS), whose
routes the node and its modules register and remove while it runs.

aiohttp's own router freezes when the application starts, and modules come and go with their
registrations, so the listener keeps its own table (:class:`Routes`: an exact path, or a prefix
for paths ending in ``/*``) and aiohttp sees one handler. Behind a reverse proxy the client's
address and scheme come from ``X-Forwarded-For``/``X-Forwarded-Proto``, believed only when the
connection comes from a configured proxy (:class:`Proxies`); a handler sees the corrected
``request.remote`` and ``request.scheme``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import socket
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.web_protocol import RequestHandler, _ErrInfo

from hongyan.server.clock import Clock, Handle

log = logging.getLogger("hongyan.http")

#: how long, and how many bytes, a refused connection is drained before it is closed
LINGER = 2.0
LINGER_BYTES = 256 * 1024
#: what a client that takes too long over a request head gets before the connection closes
_TOO_SLOW = (b"HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain; charset=utf-8\r\n"
             b"Content-Length: 22\r\nConnection: close\r\n\r\nrequest head too slow\n")

#: what a route is: an aiohttp handler of the low-level server
Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Routes:
    """``(method, path)`` → handler. A path ending in ``/*`` is a prefix: it matches every path
    under it (the longest registered prefix wins). One handler per method and path."""

    __slots__ = ("_exact", "_prefix")

    def __init__(self) -> None:
        self._exact: dict[str, dict[str, Handler]] = {}
        self._prefix: dict[str, dict[str, Handler]] = {}

    def add(self, method: str, path: str, handler: Handler) -> Callable[[], None]:
        """Register ``handler``; returns what removes it."""
        method = method.upper()
        if not path.startswith("/"):
            raise ValueError(f"an HTTP path starts with '/': {path!r}")
        table, key = ((self._prefix, path[:-1]) if path.endswith("/*")
                      else (self._exact, path))
        methods = table.setdefault(key, {})
        if method in methods:
            raise ValueError(f"two handlers for HTTP {method} {path}")
        methods[method] = handler

        def remove() -> None:
            if methods.get(method) is handler:
                del methods[method]
                if not methods:
                    table.pop(key, None)
        return remove

    def find(self, method: str, path: str) -> tuple[Handler | None, tuple[str, ...]]:
        """The handler of ``method`` on ``path`` and the methods the path has (empty: no such
        path). HEAD falls back to GET."""
        methods = self._exact.get(path)
        if methods is None:
            best = ""
            for prefix in self._prefix:
                if path.startswith(prefix) and len(prefix) > len(best):
                    best = prefix
            methods = self._prefix.get(best) if best else None
        if methods is None:
            return None, ()
        handler = methods.get(method) or (methods.get("GET") if method == "HEAD" else None)
        return handler, tuple(sorted(methods))


class Networks:
    """Addresses and networks, and whether a client's address is among them (an IPv4
    address seen as IPv4-mapped IPv6 counts as itself)."""

    __slots__ = ("_nets",)

    def __init__(self, networks: list[str]) -> None:
        self._nets: tuple[IPNetwork, ...] = tuple(
            ipaddress.ip_network(n, strict=False) for n in networks)

    def __bool__(self) -> bool:
        return bool(self._nets)

    def __contains__(self, address: object) -> bool:
        try:
            ip = ipaddress.ip_address(str(address))
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self._nets)


class Proxies(Networks):
    """The reverse proxies whose forwarding headers are believed (addresses or networks)."""

    __slots__ = ()

    def trusted(self, address: str) -> bool:
        return address in self

    def client(self, peer: str, forwarded_for: str | None, forwarded_proto: str | None
               ) -> tuple[str, str | None]:
        """The client's address and the scheme it used (None: the connection's own), from the
        connection's ``peer`` and its forwarding headers. Only a trusted peer is believed; in
        ``X-Forwarded-For`` (each proxy appends who connected to it) the client is the last
        address that is not a trusted proxy. The scheme is the nearest proxy's word."""
        if not self._nets or not self.trusted(peer):
            return peer, None
        client = peer
        if forwarded_for:
            for hop in reversed([h.strip() for h in forwarded_for.split(",")]):
                try:
                    hop = str(ipaddress.ip_address(hop.strip("[]")))
                except ValueError:
                    break  # garbage: keep the last proxy that said something sensible
                client = hop
                if not self.trusted(hop):
                    break
        scheme = None
        if forwarded_proto:
            last = forwarded_proto.rsplit(",", 1)[-1].strip().lower()
            if last in ("http", "https"):
                scheme = last
        return client, scheme


_LOOPBACK = Networks(["127.0.0.0/8", "::1/128"])
_LOOPBACK_HOST = re.compile(r"(localhost|127(\.\d{1,3}){3}|\[::1\])(:\d{1,5})?")
_FORWARDING = ("Forwarded", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host",
               "X-Real-IP", "Via")


def loopback_browser(request: web.BaseRequest) -> bool:
    """Whether ``request`` is a browser on this machine talking to this machine: a loopback
    client (after trusted proxies are applied) on a loopback address of ours, with an
    ``Origin`` whose host is loopback too and no forwarding header at all.

    Such a connection never leaves the machine, so plain HTTP there is as private as a local
    socket (browsers treat ``http://localhost`` as a secure context for the same reason); this
    is what lets the bundled web client at ``http://localhost:5280/`` log in. The ``Origin`` and
    the absence of forwarding headers keep out what a reverse proxy on the same machine relays
    from elsewhere over plain HTTP: it carries the public page's origin, or says it forwards."""
    raw = request.transport
    if raw is None:
        return False
    return loopback_peer(request.remote or "", raw.get_extra_info("sockname"),
                         request.headers)


def loopback_peer(remote: str, local: object, headers: Mapping[str, str]) -> bool:
    """:func:`loopback_browser` for a request head read without aiohttp (``headers``: keys in
    lower case, or a case-insensitive mapping; ``local``: the socket's own address)."""
    if remote not in _LOOPBACK:
        return False
    if not isinstance(local, tuple) or not local or str(local[0]) not in _LOOPBACK:
        return False
    if any(h.lower() in headers for h in _FORWARDING):
        return False
    origin = headers.get("origin", "")
    scheme, _, host = origin.partition("://")
    return scheme.lower() in ("http", "https") and bool(
        _LOOPBACK_HOST.fullmatch(host.lower().rstrip("/")))


def secure_request(request: web.BaseRequest, loopback_secure: bool) -> bool:
    """Whether an XMPP stream carried by ``request`` (WebSocket, BOSH) counts as encrypted:
    it came over HTTPS (ours, or a trusted proxy's that says so), or, with ``[http]
    loopback_secure``, from a :func:`loopback_browser`."""
    return request.scheme == "https" or (loopback_secure and loopback_browser(request))


@dataclass(frozen=True, slots=True)
class HeadLimits:
    """What one request head may be (``[http]``): the request target's bytes, one header
    field's (name and value), the number of fields, and the seconds from a head's first byte
    (a connection's first head: from the connect) to its end; and the seconds a kept-alive
    connection may wait for its next request."""

    max_line: int = 8190
    max_field: int = 8190
    max_headers: int = 128
    header_timeout: float = 10.0
    keepalive_timeout: float = 75.0


class _Handler(RequestHandler):
    """aiohttp's connection handler with the bounds of a request head: a head not whole within
    ``header_timeout`` gets 408 and the connection is closed (aiohttp has no such timer: its
    keep-alive timeout starts only after a response), and the parser's refusals get their
    statuses (aiohttp says 400 to all): a request line over the limit 414 (RFC 9110 §15.5.15),
    a header field over it or too many fields 431 (RFC 6585 §5), anything else malformed 400.
    The parser keeps no more than the limits, so a head costs at most ``max_headers *
    max_field`` bytes while it lasts; what a refused client still sends is read and dropped
    (at most :data:`LINGER_BYTES`, for :data:`LINGER` seconds) after the answer and our FIN,
    so that the client reads the answer rather than a reset, and then the socket is closed."""

    __slots__ = ("_clock", "_discarded", "_head_len", "_head_timer", "_limits", "_line_end",
                 "_linger")

    def __init__(self, manager: web.Server, clock: Clock, limits: HeadLimits,
                 **kwargs: Any) -> None:
        super().__init__(manager, keepalive_timeout=limits.keepalive_timeout,
                         max_line_size=limits.max_line, max_field_size=limits.max_field,
                         max_headers=limits.max_headers, **kwargs)
        self._clock = clock
        self._limits = limits
        self._head_timer: Handle | None = None
        #: bytes of the head being read so far, and where its request line ended (-1: not yet)
        self._head_len = 0
        self._line_end = -1
        #: a refused connection's transport, until it closes, and the bytes dropped since
        self._linger: tuple[asyncio.Transport, Handle] | None = None
        self._discarded = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm()

    def _arm(self) -> None:
        self._head_len, self._line_end = 0, -1
        self._head_timer = self._clock.call_later(self._limits.header_timeout, self._too_slow)

    def _disarm(self) -> None:
        timer, self._head_timer = self._head_timer, None
        if timer is not None:
            timer.cancel()

    def data_received(self, data: bytes) -> None:
        if self._linger is not None:
            self._discarded += len(data)
            if self._discarded > LINGER_BYTES:
                self._end_linger()
            return
        if self._head_timer is None:
            waiter = self._waiter
            if waiter is not None and not waiter.done() and not self._messages:
                self._arm()  # between requests: this starts the next head
        if self._head_timer is not None:
            if self._line_end < 0:
                nl = data.find(b"\n")
                if nl >= 0:
                    self._line_end = self._head_len + nl
            self._head_len += len(data)
        before = len(self._messages)
        super().data_received(data)
        if self._head_timer is None or len(self._messages) == before:
            return
        self._disarm()  # a head is whole (or refused)
        msg, _ = self._messages[-1]
        if isinstance(msg, _ErrInfo):
            self._messages.pop()
            self._refuse(*self._status_of(msg.exc))

    def _status_of(self, exc: BaseException) -> tuple[int, str]:
        if isinstance(exc, LineTooLong):
            line = self._line_end if self._line_end >= 0 else self._head_len
            if line > self._limits.max_line:
                return 414, "URI Too Long"
            return 431, "Request Header Fields Too Large"
        if isinstance(exc, BadHttpMessage) and "Too many headers" in exc.message:
            return 431, "Request Header Fields Too Large"
        return 400, "Bad Request"

    def _refuse(self, status: int, reason: str) -> None:
        """Answer a refused head ourselves (aiohttp would read on while its answer waits for
        the handler's task), then linger: drop what comes until the client closes, or
        :data:`LINGER` s, or :data:`LINGER_BYTES`."""
        transport = self.transport
        if transport is None:
            return
        log.debug("refused a request head: %d %s", status, reason)
        body = f"{status} {reason}\n".encode()
        transport.write(b"HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
                        % (status, reason.encode(), len(body), body))
        if transport.can_write_eof():
            transport.write_eof()
        self._force_close = True  # (aiohttp's loop ends, and it no longer owns the socket)
        self.transport = None
        if self._waiter is not None:
            self._waiter.cancel()
        self._linger = (transport, self._clock.call_later(LINGER, self._end_linger))

    def _end_linger(self) -> None:
        linger, self._linger = self._linger, None
        if linger is not None:
            linger[1].cancel()
            linger[0].close()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        self._end_linger()
        super().connection_lost(exc)

    def _too_slow(self) -> None:
        self._head_timer = None
        transport = self.transport
        if transport is None or self._force_close:
            return
        log.debug("no whole request head within %g s: closing", self._limits.header_timeout)
        transport.write(_TOO_SLOW)
        self.force_close()


class _Server(web.Server):
    """aiohttp's low-level server, making :class:`_Handler` s."""

    def __init__(self, handler: Handler, clock: Clock, limits: HeadLimits) -> None:
        super().__init__(handler, access_log=None)
        self._clock = clock
        self._limits = limits

    def __call__(self) -> RequestHandler:
        return _Handler(self, self._clock, self._limits, loop=self._loop, **self._kwargs)


class HttpServer:
    """The listener: aiohttp's low-level server on the given sockets, dispatching through
    ``routes``, with the bounds of :class:`HeadLimits` on every request head. With a ``front``
    (a :class:`~hongyan.transport.wsfront.FrontDoor` around :attr:`server`), every new
    connection meets it first, and it hands aiohttp what is not a WebSocket upgrade of its
    path."""

    def __init__(self, routes: Routes, proxies: Proxies, *,
                 shutdown_timeout: float = 2.0, clock: Clock | None = None,
                 limits: HeadLimits | None = None) -> None:
        self.routes = routes
        self.proxies = proxies
        self.limits = limits or HeadLimits()
        self.server = _Server(self._handle, clock or Clock(), self.limits)
        self._runner = web.ServerRunner(self.server, handle_signals=False,
                                        shutdown_timeout=shutdown_timeout)
        self._servers: list[asyncio.Server] = []

    async def start(self, plain: list[socket.socket], secure: list[socket.socket],
                    ssl_context: ssl.SSLContext | None,
                    front: Callable[[], asyncio.Protocol] | None = None) -> None:
        await self._runner.setup()
        factory = front if front is not None else self.server
        loop = asyncio.get_running_loop()
        for sock in plain:
            self._servers.append(await loop.create_server(factory, sock=sock, backlog=1024))
        for sock in secure:  # (the TLS handshake, before any head, has the head's time too)
            self._servers.append(await loop.create_server(
                factory, sock=sock, ssl=ssl_context, backlog=1024,
                ssl_handshake_timeout=self.limits.header_timeout))

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        await self._runner.cleanup()
        self._servers.clear()

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if self.proxies:
            remote, scheme = self.proxies.client(
                request.remote or "", request.headers.get("X-Forwarded-For"),
                request.headers.get("X-Forwarded-Proto"))
            if remote != request.remote or scheme is not None:
                request = request.clone(remote=remote, scheme=scheme or request.scheme)
        handler, methods = self.routes.find(request.method, request.path)
        if handler is None:
            if methods:
                return web.Response(status=405, text="method not allowed\n",
                                    headers={"Allow": ", ".join(methods)})
            return web.Response(status=404, text="not found\n")
        try:
            return await handler(request)
        except web.HTTPException:
            raise  # aiohttp answers it
        except Exception:
            # a path may carry a secret (an invitation's token): only its first segment
            log.exception("HTTP %s /%s/... failed", request.method,
                          request.path.strip("/").split("/", 1)[0])
            return web.Response(status=500, text="internal server error\n")


__all__ = ["Handler", "HeadLimits", "HttpServer", "Networks", "Proxies", "Routes",
           "loopback_browser", "secure_request"]
