"""The HTTP listener's front door: it reads the start of each new connection itself, answers a
WebSocket upgrade of the XMPP path without aiohttp, and hands every other connection to aiohttp
unchanged (the bytes read so far and the transport, as if aiohttp had accepted it).

An XMPP client's WebSocket lives for hours, mostly idle. Kept by aiohttp it holds the parsed
request, a request handler with its parser and queues, the WebSocket response with its reader
and writer, and a task with its futures: about 17 KB of Python heap, six times a TCP session's.
Here it is one :class:`LeanWebSocket` (a protocol on the event loop's transport: no task, no
timer) around a :class:`~hongyan.transport.rfc6455.FrameReader`, and one sweep timer for all of
them sends the keep-alive pings (:class:`Keepalive`).

:class:`Front` decides from the first bytes: a request line that is not ``GET <path>`` (or
``GET <path>?…``) goes to aiohttp at once; one that is waits for its head (at most
:data:`MAX_HEAD` bytes, for :attr:`FrontDoor.head_timeout` seconds), and a head without
``Upgrade: websocket`` goes to aiohttp too. So every other route (BOSH, the web client, uploads,
``/metrics``) and a plain GET of the WebSocket path see aiohttp exactly as before.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from typing import Any, Protocol, cast

from hongyan.server.clock import Clock, Handle
from hongyan.transport import rfc6455
from hongyan.transport.rfc6455 import (
    BINARY,
    CLOSE,
    NORMAL,
    PING,
    TEXT,
    TOO_BIG,
    UNSUPPORTED_DATA,
    FrameReader,
    HandshakeError,
    ProtocolError,
    RequestHead,
    close_frame,
    parse_close,
    parse_head,
    ping_frame,
    pong_frame,
    refusal,
    text_frame,
)
from hongyan.transport.tcp import Connections
from hongyan.xmpp.stream import websocket_messages

log = logging.getLogger("hongyan.websocket")

#: the largest request head read here (aiohttp's default limit for one header line is 8190)
MAX_HEAD = 16384
#: seconds a closing WebSocket waits for the client's close frame before it drops the TCP
CLOSE_WAIT = 2.0

#: what a WebSocket upgrade goes to: (the head, the transport, what followed the head)
Upgrade = Callable[[RequestHead, asyncio.Transport, bytes], None]


class Session(Protocol):
    """What a :class:`LeanWebSocket` drives (a client session, or the relay to its home)."""

    def data_received(self, data: bytes) -> None: ...
    def connection_lost(self) -> None: ...


class FrontDoor:
    """One per HTTP listener: the protocol factory of its sockets (``loop.create_server``).
    ``aiohttp``: aiohttp's low-level server (a factory of its request handlers); ``upgrade``:
    called with each WebSocket upgrade request of ``path``."""

    __slots__ = ("_aiohttp", "_prefix", "clock", "head_timeout", "max_line", "upgrade")

    def __init__(self, aiohttp: Callable[[], asyncio.Protocol], path: str, upgrade: Upgrade,
                 clock: Clock, head_timeout: float = 30.0, max_line: int = 8190) -> None:
        self._aiohttp = aiohttp
        self._prefix = b"GET " + path.encode()
        self.upgrade = upgrade
        self.clock = clock
        self.head_timeout = head_timeout
        #: bytes the request target may have (``[http] max_request_line``, as aiohttp's)
        self.max_line = max_line

    def line_too_long(self, buf: bytes) -> bool:
        """Whether the request line begun in ``buf`` has a target over :attr:`max_line`."""
        end = buf.find(b"\n")
        line = len(buf) if end < 0 else end
        return line - len(b"GET ") - len(b" HTTP/1.1\r") > self.max_line

    def __call__(self) -> asyncio.Protocol:
        return Front(self)

    def to_aiohttp(self, transport: asyncio.Transport, data: bytes) -> None:
        """Give the connection to aiohttp, with what was read of it."""
        handler = self._aiohttp()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        if data:
            handler.data_received(data)

    def route(self, buf: bytes) -> bool | None:
        """Whether ``buf`` (the start of a connection) starts a request of our path (None:
        too soon to tell)."""
        prefix = self._prefix
        if len(buf) <= len(prefix):
            return None if prefix.startswith(buf) else False
        return buf.startswith(prefix) and buf[len(prefix)] in b" ?"


class Front(asyncio.Protocol):
    """A new connection until its first request says where it goes."""

    __slots__ = ("_buf", "_door", "_timer", "_transport")

    def __init__(self, door: FrontDoor) -> None:
        self._door = door
        self._buf = b""
        self._transport: asyncio.Transport | None = None
        self._timer: Handle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._timer = self._door.clock.call_later(self._door.head_timeout, self._timed_out)

    def data_received(self, data: bytes) -> None:
        t = self._transport
        if t is None:
            return
        buf = self._buf + data if self._buf else data
        ours = self._door.route(buf)
        if ours is None:
            self._buf = buf
            return
        if not ours:
            self._leave()
            self._door.to_aiohttp(t, buf)
            return
        if self._door.line_too_long(buf):
            self._refuse(414, "request line too long")
            return
        end = buf.find(b"\r\n\r\n")
        if end < 0 or end > MAX_HEAD:
            if len(buf) > MAX_HEAD:
                self._refuse(431, "request head too large")
            else:
                self._buf = buf
            return
        try:
            head = parse_head(buf[:end])
        except HandshakeError as e:
            self._refuse(e.status, e.text)
            return
        self._leave()
        if "websocket" not in head.tokens("upgrade"):
            self._door.to_aiohttp(t, buf)  # (a plain GET: aiohttp's route answers it)
            return
        self._door.upgrade(head, t, buf[end + 4:])

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._leave()

    def _leave(self) -> None:
        self._transport, self._buf = None, b""
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    def _refuse(self, status: int, text: str) -> None:
        t = self._transport
        self._leave()
        if t is not None:
            t.write(refusal(status, text))
            t.close()

    def _timed_out(self) -> None:
        self._timer = None
        t = self._transport
        if t is not None:
            log.debug("no complete request head within %.0f s: closing",
                      self._door.head_timeout)
            self._refuse(408, "request head too slow")


class Keepalive:
    """Every open :class:`LeanWebSocket` of a node, and one timer (on the node's clock) that
    sweeps them every ``ping / 2`` seconds: a connection silent for ``ping`` seconds (three
    sweeps; ``ping`` to ``1.5 * ping``) gets a ping, and one still silent half of ``ping``
    later is dropped. ``ping`` 0: no pings (the set still serves :meth:`close_all`)."""

    __slots__ = ("_conns", "_interval", "_timer", "clock")

    def __init__(self, clock: Clock, ping: float) -> None:
        self.clock = clock
        self._conns: set[LeanWebSocket] = set()
        self._interval = ping / 2
        self._timer: Handle | None = None

    def __len__(self) -> int:
        return len(self._conns)

    def __iter__(self) -> Iterator[LeanWebSocket]:
        return iter(list(self._conns))

    def add(self, conn: LeanWebSocket) -> None:
        self._conns.add(conn)
        if self._timer is None and self._interval > 0:
            self._timer = self.clock.call_later(self._interval, self._sweep)

    def discard(self, conn: LeanWebSocket) -> None:
        self._conns.discard(conn)

    def _sweep(self) -> None:
        self._timer = None
        for conn in list(self._conns):
            conn.swept()
        if self._conns:
            self._timer = self.clock.call_later(self._interval, self._sweep)

    def close_all(self) -> None:
        """End every connection (the node stops): what was written is still sent."""
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        for conn in list(self._conns):
            conn.shut()


class LeanWebSocket(asyncio.Protocol):
    """One client's WebSocket after the handshake: the event loop's protocol on its transport
    and the transport its session writes to (``c2s.Transport``): each ``data_received`` of
    the session is one text message. What the session writes in one pass goes out as one
    ``transport.write`` of one frame per element (:func:`websocket_messages`).

    Messages over ``limit`` are still handed on (the stream answers ``policy-violation``) and
    make the close code 1009; the reader refuses (1009) what is over twice as large from its
    frame header, so such a message is never buffered. Pings are answered; ours are sent by
    :class:`Keepalive`. A close frame from the client is answered and the TCP connection
    closed; :meth:`close` sends ours and waits :data:`CLOSE_WAIT` seconds for the answer."""

    __slots__ = ("__weakref__", "_cb", "_closing", "_conns", "_held", "_idle", "_keepalive",
                 "_limit", "_paused", "_reader", "_timer", "_transport", "close_code",
                 "peer_host", "secure", "session")

    #: RFC 7395 §3.9: TLS is the WebSocket's (wss:), never STARTTLS
    can_start_tls = False

    def __init__(self, transport: asyncio.Transport | None, keepalive: Keepalive, *,
                 peer_host: str,
                 secure: bool, channel_binding: tuple[str, bytes] | None, limit: int,
                 conns: Connections | None = None) -> None:
        self._transport: asyncio.Transport | None = transport
        self._keepalive = keepalive
        self.peer_host = peer_host
        self.secure = secure
        self._cb = channel_binding
        self._limit = limit
        self._reader = FrameReader(2 * limit)
        self._closing = False
        self._paused = False
        self._held: list[tuple[int, bytes]] | None = None  # read while paused
        self._idle = 0  # sweeps since the client last sent anything
        self._timer: Handle | None = None  # of the close handshake
        self._conns = conns
        self.close_code = NORMAL
        self.session: Session | None = None
        keepalive.add(self)
        if conns is not None:
            conns.websocket += 1

    # -- asyncio.Protocol ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (the front door makes one on the transport it has; a worker that adopts a moved
        # socket makes one first, and the loop then calls this)
        if self._transport is None and not self._closing:
            self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._idle = 0
        try:
            frames = self._reader.feed(data)
        except ProtocolError as e:
            log.debug("WebSocket from %s: %s", self.peer_host, e.reason)
            self._fail(e.code, e.reason)
            return
        if not frames:
            return
        if self._held is not None or self._paused:  # (handed on when reading resumes)
            self._held = [*self._held, *frames] if self._held else frames
            return
        self._dispatch(frames)

    def _dispatch(self, frames: list[tuple[int, bytes]]) -> None:
        for i, (opcode, payload) in enumerate(frames):
            if self._paused:
                self._held = frames[i:]
                return
            if opcode == TEXT:
                if self._closing:
                    continue
                if len(payload) > self._limit:
                    self.close_code = TOO_BIG  # (the stream says policy-violation)
                session = self.session
                if session is not None:
                    session.data_received(payload)
            elif opcode == PING:
                if not self._closing and self._transport is not None:
                    self._transport.write(pong_frame(payload))
            elif opcode == CLOSE:
                self._peer_closed(payload)
                return
            elif opcode == BINARY:
                log.debug("binary WebSocket message from %s", self.peer_host)
                if not self._closing:
                    self.close_code = UNSUPPORTED_DATA  # RFC 7395 §3.2: text only
                    self.close()
            # (a pong: the client is alive, which data_received noted)

    def _peer_closed(self, payload: bytes) -> None:
        t = self._transport
        if t is None:
            return
        if not self._closing:
            self._closing = True
            code, _ = parse_close(payload)
            t.write(close_frame(code if code is not None else NORMAL))  # (RFC 6455 §5.5.1)
        t.close()  # the server closes the TCP connection first (§7.1.1)

    def _fail(self, code: int, reason: str) -> None:
        """§7.1.7: the client broke the protocol: say why, and close."""
        t = self._transport
        self._held = None
        if t is None:
            return
        if not self._closing:
            self._closing = True
            self.close_code = code
            t.write(close_frame(code, reason))
        t.close()

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._closing = True
        self._held = None
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        self._keepalive.discard(self)
        conns, self._conns = self._conns, None
        if conns is not None:
            conns.websocket -= 1
        session, self.session = self.session, None
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

    # -- the keep-alive sweep --------------------------------------------------------------------
    def swept(self) -> None:
        idle = self._idle + 1
        self._idle = idle
        t = self._transport
        if t is None or self._closing:
            return
        if idle == 3:
            t.write(ping_frame())
        elif idle > 3:
            log.debug("WebSocket from %s: no pong: dropped", self.peer_host)
            t.abort()

    def shut(self) -> None:
        t = self._transport
        if t is not None:
            if not self._closing:
                self._closing = True
                t.write(close_frame(rfc6455.GOING_AWAY))
            t.close()

    # -- what a session uses ---------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        """What the session wrote in one pass, as one message per element."""
        self.send_messages(websocket_messages(data))

    def send_messages(self, messages: list[bytes]) -> None:
        t = self._transport
        if t is None or self._closing:
            return
        t.write(b"".join([text_frame(m) for m in messages]) if len(messages) != 1
                else text_frame(messages[0]))

    def close(self) -> None:
        t = self._transport
        if t is None or self._closing:
            return
        self._closing = True
        self._held = None
        t.write(close_frame(self.close_code))
        if not t.is_reading():
            t.resume_reading()  # (to read the client's close frame)
        self._timer = self._keepalive.clock.call_later(CLOSE_WAIT, self._close_timeout)

    def _close_timeout(self) -> None:
        self._timer = None
        t = self._transport
        if t is not None:
            t.close()

    def pause_reading(self) -> None:
        self._paused = True
        t = self._transport
        if t is not None and t.is_reading():
            t.pause_reading()

    def resume_reading(self) -> None:
        if not self._paused:
            return
        self._paused = False
        t = self._transport
        if t is None:
            return
        if not t.is_reading():
            t.resume_reading()
        held, self._held = self._held, None
        if held:
            self._dispatch(held)

    async def start_tls(self) -> None:
        pass

    def channel_binding(self) -> tuple[str, bytes] | None:
        return self._cb if self.secure else None

    @property
    def raw(self) -> asyncio.Transport | None:
        return self._transport

    @property
    def movable(self) -> bool:
        """Whether the socket itself may move to another process: plain TCP (no TLS of ours)
        with nothing read and not yet handed on, so that the frame reader there starts clean."""
        t = self._transport
        return (t is not None and not self._closing and self._held is None
                and self._reader.buffered == 0 and t.get_extra_info("sslcontext") is None)

    def detach(self) -> None:
        """Close this process's handle on the connection without a word to the client or the
        session (the socket was duplicated for another worker, which goes on with it)."""
        t = self._transport
        self.session = None
        if t is not None and not self._closing:
            self._closing = True
            t.close()


def peer_address(transport: asyncio.BaseTransport) -> str:
    peer: Any = transport.get_extra_info("peername")
    return str(peer[0]) if peer else ""


__all__ = ["CLOSE_WAIT", "MAX_HEAD", "Front", "FrontDoor", "Keepalive", "LeanWebSocket",
           "Upgrade", "peer_address"]
