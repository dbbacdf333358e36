"""XMPP over WebSocket (RFC 7395): the transport between an aiohttp WebSocket and a client
session, and the link that carries such a connection's messages to another worker.

aiohttp does the handshake, reads and checks frames (text only, UTF-8, the size limit), answers
pings and sends ours (``heartbeat``). Writing is ours: a session writes synchronously and once
per pass of the event loop (its outbox), aiohttp's ``send_str`` is a coroutine per message. So
:meth:`WebSocketTransport.write` splits what the session wrote into RFC 7395 messages (the
stream's framing, :func:`hongyan.xmpp.stream.websocket_messages`) and writes their frames
(unmasked, uncompressed: we never negotiate permessage-deflate) to the connection in one
``transport.write``, as a TCP session's outbox does.

With several workers, a WebSocket stays in the worker that accepted it (its aiohttp state cannot
move) and, once the client authenticated as an account homed elsewhere, its messages travel to
the home over a socket pair, each as ``[4-byte length][message]`` (:class:`WebSocketRelay`
here, :class:`LinkTransport` at the home, where the session lives).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol, cast

from aiohttp import WSMsgType, web

from hongyan.transport.relay import Relay
from hongyan.transport.rfc6455 import NORMAL, TOO_BIG, UNSUPPORTED_DATA, text_frame
from hongyan.transport.tcp import Session as TransportSession
from hongyan.transport.tcp import StreamTransport
from hongyan.xmpp.stream import websocket_messages

log = logging.getLogger("hongyan.websocket")


def link_frames(messages: list[bytes]) -> bytes:
    """Messages as they cross a socket pair between workers: ``[4-byte length][message]``."""
    return b"".join(len(m).to_bytes(4, "big") + m for m in messages)


class LinkReader:
    """Messages out of a byte stream of :func:`link_frames`, as its bytes arrive."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf + data if self._buf else data
        out: list[bytes] = []
        off, end = 0, len(buf)
        while end - off >= 4:
            n = int.from_bytes(buf[off:off + 4], "big")
            if end - off - 4 < n:
                break
            out.append(buf[off + 4:off + 4 + n])
            off += 4 + n
        self._buf = buf[off:]
        return out


class Session(Protocol):
    """What the transport drives (a client session, or the relay to its home)."""

    def data_received(self, data: bytes) -> None: ...
    def connection_lost(self) -> None: ...


class WebSocketTransport:
    """One client's WebSocket as its session sees it (``c2s.Transport``): each
    :meth:`data_received` of the session is one message."""

    __slots__ = ("_cb", "_closer", "_closing", "_max", "_raw", "_resume", "_ws", "close_code",
                 "peer_host", "secure", "session")

    #: RFC 7395 §3.9: TLS is the WebSocket's (wss:), never STARTTLS
    can_start_tls = False

    def __init__(self, ws: web.WebSocketResponse, raw: asyncio.Transport, *, peer_host: str,
                 secure: bool, channel_binding: tuple[str, bytes] | None,
                 max_message: int) -> None:
        self._ws = ws
        self._raw = raw
        self.peer_host = peer_host
        self.secure = secure
        self._cb = channel_binding
        self._max = max_message
        self._closing = False
        self._closer: asyncio.Task[Any] | None = None
        self._resume: asyncio.Event | None = None  # set while reading is paused
        self.close_code = NORMAL
        self.session: Session | None = None

    async def run(self, session: Session) -> None:
        """Hand each message to ``session`` (or to whatever :attr:`session` is by then) until
        the connection ends."""
        self.session = session
        ws = self._ws
        try:
            while not self._closing:
                await self._unpaused()
                msg = await ws.receive()
                if msg.type == WSMsgType.TEXT:
                    data = cast(str, msg.data).encode()
                    if len(data) > self._max:
                        self.close_code = TOO_BIG  # (the stream says policy-violation)
                    # paused meanwhile (the session moves to another worker): it waits
                    await self._unpaused()
                    if self.session is not None and not self._closing:
                        self.session.data_received(data)
                elif msg.type == WSMsgType.BINARY:
                    log.debug("binary WebSocket message from %s", self.peer_host)
                    self.close_code = UNSUPPORTED_DATA  # RFC 7395 §3.2: text only
                    self.close()
                else:  # closing, closed, or an error aiohttp already answered (1009, 1007)
                    break
        finally:
            session_now, self.session = self.session, None
            self._closing = True
            if session_now is not None:
                session_now.connection_lost()
            if not ws.closed:
                await ws.close(code=self.close_code)
            if self._closer is not None:
                await self._closer

    async def _unpaused(self) -> None:
        while self._resume is not None:
            await self._resume.wait()

    # -- what a session uses ---------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        """What the session wrote in one pass, as one message per element."""
        self.send_messages(websocket_messages(data))

    def send_messages(self, messages: list[bytes]) -> None:
        if self._closing or self._raw.is_closing():
            return
        self._raw.write(b"".join(text_frame(m) for m in messages))

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self.resume_reading()
        self._closer = asyncio.get_running_loop().create_task(
            self._ws.close(code=self.close_code))

    def pause_reading(self) -> None:
        if self._resume is None:
            self._resume = asyncio.Event()

    def resume_reading(self) -> None:
        resume, self._resume = self._resume, None
        if resume is not None:
            resume.set()

    async def start_tls(self) -> None:
        pass

    def channel_binding(self) -> tuple[str, bytes] | None:
        return self._cb if self.secure else None


class MessageClient(Protocol):
    """A WebSocket as its relay uses it (:class:`WebSocketTransport`, or the lean one of
    ``wsfront.py``)."""

    def write(self, data: bytes) -> None: ...
    def send_messages(self, messages: list[bytes]) -> None: ...
    def close(self) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...


class WebSocketRelay(Relay):
    """In the worker that keeps a client's WebSocket: its messages to the account's home and
    the home's back, each ``[4-byte length][message]`` on the socket pair."""

    def __init__(self, client: MessageClient) -> None:
        super().__init__(client)
        self._ws = client
        self._reader = LinkReader()

    def to_client(self, data: bytes) -> None:
        self._ws.send_messages(self._reader.feed(data))

    def to_home(self, data: bytes) -> bytes:
        return link_frames([data])


class LinkTransport(StreamTransport):
    """At the account's home: a WebSocket client's connection that another worker keeps, as the
    session sees it, over the socket pair of a :class:`WebSocketRelay`: a stream transport
    whose bytes are length-prefixed messages (``secure`` as the WebSocket was; no STARTTLS, no
    channel binding: SASL is over by the time a connection comes home)."""

    __slots__ = ("_reader",)

    def __init__(self, factory: Callable[[StreamTransport], TransportSession],
                 secure: bool) -> None:
        super().__init__(factory, None, secure)
        self._reader = LinkReader()

    def data_received(self, data: bytes) -> None:
        for message in self._reader.feed(data):
            if self.session is None:
                return
            self.session.data_received(message)

    def write(self, data: bytes) -> None:
        super().write(link_frames(websocket_messages(data)))


__all__ = ["LinkReader", "LinkTransport", "WebSocketRelay", "WebSocketTransport",
           "link_frames", "text_frame"]
