"""TCP and TLS transport: an ``asyncio.Protocol`` that moves bytes between a socket and a session.

STARTTLS upgrades the same connection in place (``loop.start_tls``); direct TLS (XEP-0368) is a
listener with an SSL context. Channel binding data (``tls-server-end-point``, RFC 5929) is computed
once per certificate, not per connection.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Any, Protocol, cast

from hongyan.transport.exporter import tls_exporter

log = logging.getLogger("hongyan.transport")


class Session(Protocol):
    def data_received(self, data: bytes) -> None: ...
    def connection_lost(self) -> None: ...


class TLSConfig:
    """The server's TLS context and its channel-binding value."""

    __slots__ = ("cb_server_end_point", "context")

    def __init__(self, context: ssl.SSLContext, cb_server_end_point: bytes) -> None:
        self.context = context
        self.cb_server_end_point = cb_server_end_point


class Connections:
    """How many client connections of each kind this process holds open (``/metrics``):
    counted where a connection opens and closes, never per byte."""

    __slots__ = ("tcp", "tls", "websocket")

    def __init__(self) -> None:
        self.tcp = 0
        self.tls = 0  # direct TLS, and TCP after STARTTLS
        self.websocket = 0


#: seconds a closed plain TCP connection waits for its peer to close too (``close``)
LINGER = 2.0


class StreamTransport(asyncio.Protocol):
    """One client connection (``conns``: counted there while it is open)."""

    __slots__ = ("_closing", "_conns", "_factory", "_secure", "_tls", "_transport", "peer_host",
                 "session")

    def __init__(self, session_factory: Callable[[StreamTransport], Session],
                 tls: TLSConfig | None, direct_tls: bool,
                 conns: Connections | None = None) -> None:
        self._factory: Callable[[StreamTransport], Session] | None = session_factory
        self._tls = tls
        self._secure = direct_tls
        self._conns = conns
        self._transport: asyncio.Transport | None = None
        self._closing = False
        self.peer_host = ""
        self.session: Session | None = None

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing asyncio.Transport.
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer_host = str(peer[0]) if peer else ""
        conns = self._conns
        if conns is not None:
            if self._secure:
                conns.tls += 1
            else:
                conns.tcp += 1
        # No TCP_NODELAY here: uvloop and asyncio set it on every TCP transport, and asking
        # uvloop for the socket object makes it build and keep one per connection.
        # The factory is used once: an idle connection keeps no closure or bound method.
        factory, self._factory = self._factory, None
        assert factory is not None
        self.session = factory(self)

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return  # (what a peer sends after our end of the stream: read and dropped)
        session = self.session
        if session is not None:
            session.data_received(data)

    def eof_received(self) -> bool | None:
        return None  # (the transport closes itself: also what ends a lingering close)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        conns, self._conns = self._conns, None
        if conns is not None:
            if self._secure:
                conns.tls -= 1
            else:
                conns.tcp -= 1
        session = self.session
        self.session = None
        if session is not None:
            session.connection_lost()

    def pause_writing(self) -> None:
        pause = getattr(self.session, "pause_writing", None)
        if pause is not None:
            pause()

    def resume_writing(self) -> None:
        resume = getattr(self.session, "resume_writing", None)
        if resume is not None:
            resume()

    @property
    def raw(self) -> asyncio.Transport | None:
        """The event loop's transport (to hand its socket to another worker)."""
        return self._transport

    def detach(self) -> None:
        """Close this process's handle on the connection without telling the session (its
        socket was duplicated and handed to another worker, which goes on with it)."""
        t = self._transport
        self.session = None
        if t is not None and not self._closing:
            self._closing = True
            t.close()

    # what a session uses
    @property
    def secure(self) -> bool:
        return self._secure

    @property
    def can_start_tls(self) -> bool:
        return self._tls is not None

    def write(self, data: bytes) -> None:
        t = self._transport
        if t is not None and not self._closing:
            t.write(data)

    def close(self) -> None:
        """End the connection once what was written is sent. Over plain TCP it lingers (RFC
        6120 §4.4: wait for the peer to close its side too): our side is shut (FIN after the
        last byte) and what the peer still sends is read and dropped until it closes, at most
        ``LINGER`` seconds. Closing at once while the peer's bytes sit unread (a client
        refused at accept has sent its stream header meanwhile) makes the kernel answer with
        a reset, and a reset can make the peer's kernel drop the stream error it had not yet
        handed to its client."""
        t = self._transport
        if t is not None and not self._closing:
            self._closing = True
            if self._secure or not t.can_write_eof():
                t.close()
                return
            t.write_eof()
            self.resume_reading()
            asyncio.get_running_loop().call_later(LINGER, t.close)

    def pause_reading(self) -> None:
        t = self._transport
        if t is not None and t.is_reading():
            t.pause_reading()

    def resume_reading(self) -> None:
        t = self._transport
        if t is not None and not t.is_reading() and not t.is_closing():
            t.resume_reading()

    async def start_tls(self) -> None:
        t = self._transport
        if t is None or self._tls is None:
            return
        loop = asyncio.get_running_loop()
        try:
            new = await loop.start_tls(t, self, self._tls.context, server_side=True,
                                       ssl_handshake_timeout=30)
        except (TimeoutError, OSError, ssl.SSLError, ConnectionError) as exc:
            log.debug("TLS handshake with %s failed: %s", self.peer_host, exc)
            t.abort()
            return
        if new is None:
            return
        self._transport = new
        self._secure = True
        if self._conns is not None:
            self._conns.tcp -= 1
            self._conns.tls += 1

    async def start_client_tls(self, context: ssl.SSLContext, server_hostname: str,
                               timeout: float = 30.0) -> bool:
        """STARTTLS on a connection this server opened (server-to-server): this side is the
        TLS client. False when the handshake failed (the connection is then dropped)."""
        t = self._transport
        if t is None:
            return False
        loop = asyncio.get_running_loop()
        try:
            new = await loop.start_tls(t, self, context, server_side=False,
                                       server_hostname=server_hostname,
                                       ssl_handshake_timeout=timeout)
        except (TimeoutError, OSError, ssl.SSLError, ConnectionError) as exc:
            log.info("TLS handshake with %s (%s) failed: %s", server_hostname, self.peer_host,
                     exc)
            t.abort()
            return False
        if new is None:
            return False
        self._transport = new
        self._secure = True
        return True

    def peer_certificates(self) -> list[bytes]:
        """The peer's certificates (DER, its own first) on a TLS connection: the whole chain
        it sent where the ``ssl`` module gives it (Python 3.13), else its own alone; none
        when it sent none (or was not asked: a TLS server asks only when its context says)."""
        t = self._transport
        if t is None or not self._secure:
            return []
        obj = t.get_extra_info("ssl_object")
        if obj is None:
            return []
        chain = getattr(obj, "get_unverified_chain", None)
        if chain is not None:
            got = [c for c in chain() or [] if isinstance(c, bytes)]
            if got:
                return got
        der: bytes | None = obj.getpeercert(binary_form=True)
        return [der] if der else []

    def channel_binding(self) -> tuple[str, bytes] | None:
        if self._secure and self._tls is not None:
            return ("tls-server-end-point", self._tls.cb_server_end_point)
        return None

    def exporter(self) -> bytes | None:
        """RFC 9266 tls-exporter data of this connection (TLS 1.3 only), or None."""
        t = self._transport
        if not self._secure or t is None:
            return None
        return tls_exporter(t.get_extra_info("ssl_object"))


def listening_sockets(hosts: list[str], port: int) -> list[socket.socket]:
    """Listening sockets on each address ``hosts`` name (each address a host name resolves to),
    all on one port (with port 0, the one the kernel picked for the first): made once and
    shared by every worker of a node, or used by a one-process node itself."""
    socks: list[socket.socket] = []
    seen: set[tuple[int, str]] = set()
    try:
        for host in hosts or ["0.0.0.0"]:
            for family, _, _, _, addr in socket.getaddrinfo(
                    host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE):
                if (family, str(addr[0])) in seen:
                    continue
                seen.add((family, str(addr[0])))
                sock = socket.socket(family, socket.SOCK_STREAM)
                socks.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:  # "::" beside "0.0.0.0": each its own family
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind((addr[0], port, *addr[2:]))
                port = sock.getsockname()[1]
                sock.listen(1024)
                sock.set_inheritable(True)
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


async def connect(host: str, port: int, protocol: asyncio.Protocol, timeout: float,
                  ssl_context: ssl.SSLContext | None = None, server_hostname: str | None = None
                  ) -> None:
    """Open a TCP connection (direct TLS with ``ssl_context``) to ``host``:``port`` for
    ``protocol``, within ``timeout`` seconds. Raises OSError or TimeoutError."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        await loop.create_connection(lambda: protocol, host, port, ssl=ssl_context,
                                     server_hostname=server_hostname if ssl_context else None)


async def listen(host: str | list[str], port: int,
                 factory: Callable[[], asyncio.Protocol],
                 ssl_context: ssl.SSLContext | None = None, backlog: int = 1024,
                 sock: socket.socket | None = None) -> Any:
    """Listen on ``host``:``port``, or on ``sock``, a listening socket made elsewhere (the
    supervisor of a multi-worker node shares one with every worker)."""
    loop = asyncio.get_running_loop()
    if sock is not None:
        return await loop.create_server(factory, sock=sock, ssl=ssl_context, backlog=backlog)
    return await loop.create_server(factory, host, port, ssl=ssl_context, backlog=backlog,
                                    reuse_address=True)
