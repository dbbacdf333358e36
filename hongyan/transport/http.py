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

from aiohttp import web

log = logging.getLogger("hongyan.http")

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


class HttpServer:
    """The listener: aiohttp's low-level server on the given sockets, dispatching through
    ``routes``. With a ``front`` (a :class:`~hongyan.transport.wsfront.FrontDoor` around
    :attr:`server`), every new connection meets it first, and it hands aiohttp what is not a
    WebSocket upgrade of its path."""

    def __init__(self, routes: Routes, proxies: Proxies, *,
                 shutdown_timeout: float = 2.0) -> None:
        self.routes = routes
        self.proxies = proxies
        self.server = web.Server(self._handle, access_log=None)
        self._runner = web.ServerRunner(self.server, handle_signals=False,
                                        shutdown_timeout=shutdown_timeout)
        self._servers: list[asyncio.Server] = []

    async def start(self, plain: list[socket.socket], secure: list[socket.socket],
                    ssl_context: ssl.SSLContext | None,
                    front: Callable[[], asyncio.Protocol] | None = None) -> None:
        await self._runner.setup()
        factory = front if front is not None else self.server
        loop = asyncio.get_running_loop()
        for sock, ctx in [(s, None) for s in plain] + [(s, ssl_context) for s in secure]:
            self._servers.append(await loop.create_server(factory, sock=sock, ssl=ctx,
                                                          backlog=1024))

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


__all__ = ["Handler", "HttpServer", "Networks", "Proxies", "Routes", "loopback_browser",
           "secure_request"]
