"""The SOCKS5 side of the proxy: RFC 1928 as XEP-0065 §6 uses it, and the relay.

A connection says hello (version 5 and its methods: only "no authentication", 0x00, is
offered), then CONNECT to a domain name that is the stream's hash (40 hexadecimal digits,
SHA-1 of SID + initiator JID + target JID) and any port. The first two connections with one
hash are the stream's two sides (the target connects first, then the initiator; the relay
does not need to know which is which); a third is refused. Nothing is relayed until the
initiator activates the stream in-band (:meth:`Streams.activate`); then each side's bytes go
to the other, with the writer's buffer bounded (``HIGH_WATER``): when it is full the reader
stops reading its socket until it drains, so TCP pushes back on the sender and no file is
held here. A stream's bytes are counted against ``max_bytes`` and, when ``rate`` is set, a
token bucket (one second of rate as burst) pauses reading while overdrawn.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol, cast

log = logging.getLogger("hongyan.mod.proxy65")

#: bytes queued for a socket before its peer stops reading
HIGH_WATER = 64 * 1024
#: bytes a side may send before activation (kept for the peer); more closes it
EARLY_MAX = 64 * 1024
#: the longest greeting and request: 2 + 255 methods, 7 + 255 bytes of address
HANDSHAKE_MAX = 262

# RFC 1928 §6 reply codes
SUCCEEDED = 0x00
GENERAL_FAILURE = 0x01
NOT_ALLOWED = 0x02
HOST_UNREACHABLE = 0x04
COMMAND_NOT_SUPPORTED = 0x07
ADDRESS_NOT_SUPPORTED = 0x08

_HEX = frozenset(b"0123456789abcdef")


class Timer(Protocol):
    def cancel(self) -> None: ...


class Limits(Protocol):
    @property
    def activation_timeout(self) -> float: ...
    @property
    def max_bytes(self) -> int: ...
    @property
    def rate(self) -> int: ...
    @property
    def max_connections(self) -> int: ...
    @property
    def max_connections_per_ip(self) -> int: ...


def reply(code: int, addr: bytes = b"") -> bytes:
    """A SOCKS5 reply; BND.ADDR is the domain the client asked for (XEP-0065 §5.3.2), or
    0.0.0.0 when there was none."""
    if addr:
        return bytes((5, code, 0, 3, len(addr))) + addr + b"\0\0"
    return bytes((5, code, 0, 1, 0, 0, 0, 0, 0, 0))


class Stream:
    """The two connections of one hash, and what they relayed."""

    __slots__ = ("active", "conns", "key", "relayed", "stamp", "tokens")

    def __init__(self, key: str) -> None:
        self.key = key
        self.conns: list[Conn] = []
        self.active = False
        self.relayed = 0
        self.tokens = 0.0
        self.stamp = 0.0


class Streams:
    """Every connection of the proxy and the streams they make (one process holds them all:
    the listener and the activation IQs live on the service's home)."""

    def __init__(self, limits: Limits, monotonic: Callable[[], float],
                 call_later: Callable[[float, Callable[[], None]], Timer]) -> None:
        self.limits = limits
        self.monotonic = monotonic
        self.call_later = call_later
        self.streams: dict[str, Stream] = {}
        self.conns: set[Conn] = set()
        #: open connections by client address
        self.per_ip: dict[str, int] = {}
        #: counters for /metrics
        self.activated = 0
        self.bytes = 0

    def protocol(self) -> Conn:
        return Conn(self)

    def join(self, key: str, conn: Conn) -> int:
        """``conn`` asked for the stream ``key``: its reply code."""
        stream = self.streams.get(key)
        if stream is None:
            stream = self.streams[key] = Stream(key)
        if stream.active or len(stream.conns) >= 2:
            return NOT_ALLOWED
        stream.conns.append(conn)
        conn.stream = stream
        return SUCCEEDED

    def admit(self, conn: Conn, ip: str) -> bool:
        """Whether one more connection (from ``ip``) may be open."""
        limits = self.limits
        if len(self.conns) >= limits.max_connections or \
                self.per_ip.get(ip, 0) >= limits.max_connections_per_ip:
            return False
        self.conns.add(conn)
        self.per_ip[ip] = self.per_ip.get(ip, 0) + 1
        return True

    def leave(self, conn: Conn) -> None:
        if conn in self.conns:
            self.conns.discard(conn)
            left = self.per_ip[conn.ip] - 1
            if left:
                self.per_ip[conn.ip] = left
            else:
                del self.per_ip[conn.ip]
        stream = conn.stream
        if stream is None:
            return
        conn.stream = None
        if conn in stream.conns:
            stream.conns.remove(conn)
        if not stream.conns and self.streams.get(stream.key) is stream:
            del self.streams[stream.key]

    def activate(self, key: str) -> str | None:
        """Start relaying the stream ``key``; None, or the XEP-0065 §6.3.5 condition: no such
        stream (the hash of SID, the requester's JID and the target named; a requester who
        is not the initiator named in the hash gets this too), only one side connected, or
        activated already."""
        stream = self.streams.get(key)
        if stream is None:
            return "item-not-found"
        if stream.active or len(stream.conns) != 2:
            return "not-allowed"
        stream.active = True
        stream.tokens = float(self.limits.rate)
        stream.stamp = self.monotonic()
        a, b = stream.conns
        a.peer, b.peer = b, a
        self.activated += 1
        for c in (a, b):
            c.activated()
        return None

    def close_all(self) -> None:
        for conn in list(self.conns):
            conn.abort()


class Conn(asyncio.Protocol):
    """One SOCKS5 connection: the handshake, the wait for activation, then one side of a
    relay."""

    GREETING, REQUEST, WAITING, ACTIVE, CLOSED = range(5)

    def __init__(self, streams: Streams) -> None:
        self.streams = streams
        self.state = Conn.GREETING
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.ip = ""
        self.stream: Stream | None = None
        self.peer: Conn | None = None
        self.timer: Timer | None = None
        self.eof = False
        #: why reading is paused: "peer" (its buffer is full), "rate"
        self.holds: set[str] = set()
        self.rate_timer: Timer | None = None

    # -- asyncio.Protocol --------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)  # uvloop's is not one
        streams = self.streams
        peer = transport.get_extra_info("peername")
        self.ip = str(peer[0]) if isinstance(peer, tuple) else ""
        if not streams.admit(self, self.ip):
            log.warning("SOCKS5 connection from %s refused: %d open, %d from there",
                        self.ip, len(streams.conns), streams.per_ip.get(self.ip, 0))
            self.state = Conn.CLOSED
            transport.abort()
            return
        transport.set_write_buffer_limits(high=HIGH_WATER)
        self.timer = streams.call_later(streams.limits.activation_timeout, self._timeout)

    def data_received(self, data: bytes) -> None:
        if self.state == Conn.ACTIVE:
            self._relay(data)
            return
        if self.state == Conn.CLOSED:
            return
        self.buf += data
        if self.state == Conn.WAITING:
            if len(self.buf) > EARLY_MAX:
                self.close()
            return
        while self.state in (Conn.GREETING, Conn.REQUEST):
            done = self._greeting() if self.state == Conn.GREETING else self._request()
            if not done:
                if len(self.buf) > HANDSHAKE_MAX:
                    self.close()
                return

    def eof_received(self) -> bool | None:
        peer = self.peer
        if self.state != Conn.ACTIVE or peer is None or peer.transport is None:
            return None  # closes
        if self.eof:
            return True  # read again after a pause: told already
        self.eof = True
        if peer.eof:
            return None
        if peer.transport.can_write_eof():
            peer.transport.write_eof()  # after what is queued
        return True  # half-closed: the other direction goes on

    def connection_lost(self, exc: Exception | None) -> None:
        was = self.state
        self.state = Conn.CLOSED
        for t in (self.timer, self.rate_timer):
            if t is not None:
                t.cancel()
        self.timer = self.rate_timer = None
        self.streams.leave(self)
        peer, self.peer = self.peer, None
        if peer is not None and was == Conn.ACTIVE:
            peer.peer = None
            peer.close()  # after what is queued for it

    def pause_writing(self) -> None:
        if self.peer is not None:
            self.peer.hold("peer")

    def resume_writing(self) -> None:
        if self.peer is not None:
            self.peer.release("peer")

    # -- the handshake -----------------------------------------------------------------------
    def _greeting(self) -> bool:
        buf = self.buf
        if len(buf) < 2:
            return False
        if buf[0] != 5:
            self.close()  # not SOCKS5: there is no reply to give in another version
            return False
        n = buf[1]
        if len(buf) < 2 + n:
            return False
        methods = bytes(buf[2:2 + n])
        del buf[:2 + n]
        if 0 not in methods:
            self._write(b"\x05\xff")  # RFC 1928 §3: no acceptable method
            self.close()
            return False
        self._write(b"\x05\x00")
        self.state = Conn.REQUEST
        return True

    def _request(self) -> bool:
        buf = self.buf
        if len(buf) < 5:
            return False
        ver, cmd, _rsv, atyp = buf[0], buf[1], buf[2], buf[3]
        if ver != 5:
            return self._refuse(GENERAL_FAILURE)
        if cmd != 1:
            return self._refuse(COMMAND_NOT_SUPPORTED)
        if atyp != 3:
            return self._refuse(ADDRESS_NOT_SUPPORTED)
        end = 5 + buf[4] + 2
        if len(buf) < end:
            return False
        addr = bytes(buf[5:end - 2])
        del buf[:end]
        key = addr.lower()
        if len(key) != 40 or not _HEX.issuperset(key):
            return self._refuse(HOST_UNREACHABLE, addr)  # names no bytestream
        code = self.streams.join(key.decode(), self)
        if code != SUCCEEDED:
            return self._refuse(code, addr)
        self._write(reply(SUCCEEDED, addr))
        self.state = Conn.WAITING
        if len(buf) > EARLY_MAX:
            self.close()
        return False

    def _refuse(self, code: int, addr: bytes = b"") -> bool:
        self._write(reply(code, addr))
        self.close()
        return False

    def _timeout(self) -> None:
        self.timer = None
        if self.state != Conn.ACTIVE:
            log.info("SOCKS5 connection not activated in time: closed")
            self.close()

    # -- the relay ---------------------------------------------------------------------------
    def activated(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.state = Conn.ACTIVE
        early, self.buf = bytes(self.buf), bytearray()
        if early:
            self._relay(early)

    def _relay(self, data: bytes) -> None:
        stream, peer = self.stream, self.peer
        if stream is None or peer is None or peer.transport is None:
            return
        limits = self.streams.limits
        stream.relayed += len(data)
        self.streams.bytes += len(data)
        if limits.max_bytes and stream.relayed > limits.max_bytes:
            log.info("bytestream over %d bytes: closed", limits.max_bytes)
            self.abort()
            peer.abort()
            return
        peer.transport.write(data)
        if limits.rate:
            now = self.streams.monotonic()
            stream.tokens = min(float(limits.rate),
                                stream.tokens + (now - stream.stamp) * limits.rate)
            stream.stamp = now
            stream.tokens -= len(data)
            if stream.tokens < 0:
                for side in (self, peer):
                    side.hold("rate")
                delay = -stream.tokens / limits.rate
                if self.rate_timer is not None:
                    self.rate_timer.cancel()
                self.rate_timer = self.streams.call_later(delay, self._rate_ok)

    def _rate_ok(self) -> None:
        self.rate_timer = None
        peer = self.peer
        for side in (self, peer):
            if side is not None:
                side.release("rate")

    def hold(self, why: str) -> None:
        t = self._reading()
        if not self.holds and t is not None:
            t.pause_reading()
        self.holds.add(why)

    def release(self, why: str) -> None:
        if why not in self.holds:
            return
        self.holds.discard(why)
        t = self._reading()
        if not self.holds and t is not None:
            t.resume_reading()

    def _reading(self) -> asyncio.Transport | None:
        """The transport while its socket is read (not closed, no EOF from it)."""
        if self.state == Conn.CLOSED or self.eof:
            return None
        return self.transport

    # -- ending ------------------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def close(self) -> None:
        """Close after what is queued is written."""
        if self.transport is not None and self.state != Conn.CLOSED:
            self.state = Conn.CLOSED
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.state = Conn.CLOSED
            self.transport.abort()
