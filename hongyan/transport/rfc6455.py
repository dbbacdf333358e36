"""The WebSocket protocol (RFC 6455) as a server speaks it, without I/O: the opening handshake
(§4.2) read from an HTTP/1.1 request head, the frames a client sends (§5: masked, possibly
fragmented, with control frames between the fragments) read into whole messages, and the frames
a server writes (unmasked). Extensions are never negotiated (no permessage-deflate), so every
reserved bit must be clear.

:class:`FrameReader` is fed the bytes as they arrive and returns what they complete: whole text
or binary messages and control frames, each ``(opcode, payload)``. What breaks the protocol
raises :class:`ProtocolError` with the close code to send (§7.4.1): 1002 for a broken frame
(an unmasked one among them: a client must mask, §5.1), 1007 for a text message that is not
UTF-8, 1009 for a message over the reader's bound, refused from its frame header, before its
payload is buffered.
"""

from __future__ import annotations

import base64
import hashlib

#: opcodes (§5.2)
CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

#: close codes (§7.4.1) a server sends
NORMAL, GOING_AWAY, PROTOCOL_ERROR, UNSUPPORTED_DATA = 1000, 1001, 1002, 1003
INVALID_DATA, POLICY, TOO_BIG, INTERNAL_ERROR = 1007, 1008, 1009, 1011

#: §1.3: what the server appends to the client's key before hashing it
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class ProtocolError(Exception):
    """The peer broke the protocol: close the connection with ``code``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


# -- frames a server writes ----------------------------------------------------------------------
def frame(opcode: int, payload: bytes) -> bytes:
    """One final, unmasked frame (§5.2)."""
    n = len(payload)
    b0 = 0x80 | opcode
    if n < 126:
        return bytes((b0, n)) + payload
    if n < 65536:
        return bytes((b0, 126)) + n.to_bytes(2, "big") + payload
    return bytes((b0, 127)) + n.to_bytes(8, "big") + payload


def text_frame(payload: bytes) -> bytes:
    """One unmasked, final text frame, as a server sends a message."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return b"\x81\x7e" + n.to_bytes(2, "big") + payload
    return b"\x81\x7f" + n.to_bytes(8, "big") + payload


def close_frame(code: int | None = NORMAL, reason: str = "") -> bytes:
    """A close frame with ``code`` and a reason (at most 123 bytes of it: a control frame's
    payload is at most 125); ``code=None``: an empty one."""
    if code is None:
        return frame(CLOSE, b"")
    return frame(CLOSE, code.to_bytes(2, "big") + reason.encode()[:123])


def ping_frame(payload: bytes = b"") -> bytes:
    return frame(PING, payload[:125])


def pong_frame(payload: bytes) -> bytes:
    return frame(PONG, payload[:125])


def mask(payload: bytes, key: bytes) -> bytes:
    """``payload`` XOR the 4-byte ``key`` repeated (§5.3): masks and unmasks."""
    n = len(payload)
    if n == 0:
        return b""
    keys = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(keys, "little")).to_bytes(
        n, "little")


def client_frame(opcode: int, payload: bytes, key: bytes = b"\x37\xfa\x21\x3d", *,
                 fin: bool = True, rsv: int = 0) -> bytes:
    """A masked frame as a client sends it (tests and the bench write these)."""
    n = len(payload)
    b0 = (0x80 if fin else 0) | rsv << 4 | opcode
    if n < 126:
        head = bytes((b0, 0x80 | n))
    elif n < 65536:
        head = bytes((b0, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((b0, 0x80 | 127)) + n.to_bytes(8, "big")
    return head + key + mask(payload, key)


# -- frames a client sends -----------------------------------------------------------------------
def _valid_close_code(code: int) -> bool:
    # §7.4.1-7.4.2: 1004-1006 and 1015 are never sent; 1016-2999 are not assigned; 3000-4999
    # are for libraries and applications
    return (1000 <= code <= 1014 and code not in (1004, 1005, 1006)) or 3000 <= code <= 4999


def parse_close(payload: bytes) -> tuple[int | None, str]:
    """A close frame's code and reason (code None: it had none, §7.1.5)."""
    if not payload:
        return None, ""
    if len(payload) == 1:
        raise ProtocolError(PROTOCOL_ERROR, "a close frame of one byte")
    code = int.from_bytes(payload[:2], "big")
    if not _valid_close_code(code):
        raise ProtocolError(PROTOCOL_ERROR, f"close code {code}")
    try:
        reason = payload[2:].decode()
    except UnicodeDecodeError:
        raise ProtocolError(INVALID_DATA, "a close reason that is not UTF-8") from None
    return code, reason


class FrameReader:
    """A client's frames into messages. ``max_message``: the largest message (its fragments
    together) accepted; one larger ends the connection (1009) as soon as a frame header says
    so. An idle reader holds nothing but its slots."""

    __slots__ = ("_buf", "_opcode", "_parts", "_size", "max_message")

    def __init__(self, max_message: int) -> None:
        self.max_message = max_message
        self._buf = b""
        self._opcode = 0  # of the fragmented message under way (0: none)
        self._parts: list[bytes] | None = None
        self._size = 0

    @property
    def buffered(self) -> int:
        """Bytes held: of an incomplete frame and of a fragmented message's earlier frames."""
        return len(self._buf) + self._size

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """What ``data`` completes: ``(TEXT or BINARY, whole message)`` and ``(CLOSE, PING or
        PONG, payload)``, in order. Raises :class:`ProtocolError`."""
        buf = self._buf + data if self._buf else data
        out: list[tuple[int, bytes]] = []
        off, end = 0, len(buf)
        while end - off >= 2:
            b0, b1 = buf[off], buf[off + 1]
            if b0 & 0x70:
                raise ProtocolError(PROTOCOL_ERROR, "reserved bits set (no extension was "
                                                    "negotiated)")
            if not b1 & 0x80:
                raise ProtocolError(PROTOCOL_ERROR, "an unmasked frame from a client")
            opcode, fin, n = b0 & 0x0F, b0 & 0x80, b1 & 0x7F
            if opcode >= CLOSE:
                if opcode > PONG:
                    raise ProtocolError(PROTOCOL_ERROR, f"unknown opcode {opcode}")
                if not fin:
                    raise ProtocolError(PROTOCOL_ERROR, "a fragmented control frame")
                if n > 125:
                    raise ProtocolError(PROTOCOL_ERROR, "a control frame over 125 bytes")
            elif opcode > BINARY:
                raise ProtocolError(PROTOCOL_ERROR, f"unknown opcode {opcode}")
            elif opcode == CONTINUATION:
                if not self._opcode:
                    raise ProtocolError(PROTOCOL_ERROR, "a continuation frame outside a "
                                                        "fragmented message")
            elif self._opcode:
                raise ProtocolError(PROTOCOL_ERROR, "a new message inside a fragmented one")
            pos = off + 2
            if n == 126:
                if end - pos < 2:
                    break
                n = int.from_bytes(buf[pos:pos + 2], "big")
                pos += 2
            elif n == 127:
                if end - pos < 8:
                    break
                n = int.from_bytes(buf[pos:pos + 8], "big")
                if n >> 63:
                    raise ProtocolError(PROTOCOL_ERROR, "a 64-bit length with its top bit set")
                pos += 8
            if opcode < CLOSE and self._size + n > self.max_message:
                raise ProtocolError(TOO_BIG, f"a message over {self.max_message} bytes")
            if end - pos < 4 + n:
                break
            key = buf[pos:pos + 4]
            pos += 4
            payload = mask(buf[pos:pos + n], key)
            off = pos + n
            if opcode >= CLOSE:
                if opcode == CLOSE:
                    parse_close(payload)  # (raises when broken)
                out.append((opcode, payload))
                continue
            if not fin:
                if self._parts is None:
                    self._parts = []
                    self._opcode = opcode
                self._parts.append(payload)
                self._size += n
                continue
            if self._parts is not None:
                self._parts.append(payload)
                payload = b"".join(self._parts)
                opcode = self._opcode
                self._parts, self._opcode, self._size = None, 0, 0
            if opcode == TEXT:
                try:
                    payload.decode()
                except UnicodeDecodeError:
                    raise ProtocolError(INVALID_DATA, "a text message that is not "
                                                      "UTF-8") from None
            out.append((opcode, payload))
        self._buf = buf[off:] if off < end else b""
        return out


# -- the opening handshake -----------------------------------------------------------------------
class HandshakeError(Exception):
    """A request that cannot be upgraded: answer ``status`` (with ``headers``) and close."""

    def __init__(self, status: int, text: str, headers: tuple[tuple[str, str], ...] = ()
                 ) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.headers = headers


class RequestHead:
    """An HTTP/1.1 request line and its header fields (names lowercased; a repeated field's
    values joined with ``,``, RFC 9110 §5.3)."""

    __slots__ = ("headers", "method", "target")

    def __init__(self, method: str, target: str, headers: dict[str, str]) -> None:
        self.method = method
        self.target = target
        self.headers = headers

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]

    def tokens(self, name: str) -> list[str]:
        """A comma-separated field's items, stripped and lowercased."""
        return [t.strip().lower() for t in self.headers.get(name, "").split(",") if t.strip()]


_TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
                   b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def parse_head(head: bytes) -> RequestHead:
    """``head``: the request up to and without its blank line. Raises :class:`HandshakeError`
    (400) when it is not HTTP/1.1 as RFC 9112 writes it."""
    lines = head.split(b"\r\n")
    try:
        method, target, version = lines[0].decode("ascii").split(" ")
    except (UnicodeDecodeError, ValueError):
        raise HandshakeError(400, "bad request line") from None
    if version != "HTTP/1.1":
        raise HandshakeError(400 if not version.startswith("HTTP/") else 505,
                             "a WebSocket handshake is HTTP/1.1")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or not _TCHAR.issuperset(name):
            raise HandshakeError(400, "bad header field")  # (obs-fold among them)
        try:
            text = value.strip(b" \t").decode("latin-1")
        except UnicodeDecodeError:  # pragma: no cover (latin-1 decodes any byte)
            raise HandshakeError(400, "bad header field") from None
        key = name.decode("ascii").lower()
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return RequestHead(method, target, headers)


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for the client's ``Sec-WebSocket-Key`` (§4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def check_upgrade(head: RequestHead) -> str:
    """The checks of §4.2.1 on an upgrade request; returns its ``Sec-WebSocket-Key``. Raises
    :class:`HandshakeError`: 400, or 426 with the version we speak (§4.4)."""
    if head.method != "GET":
        raise HandshakeError(405, "a WebSocket handshake is a GET", (("Allow", "GET"),))
    if "host" not in head.headers:
        raise HandshakeError(400, "no Host")
    if "websocket" not in head.tokens("upgrade") or "upgrade" not in head.tokens("connection"):
        raise HandshakeError(400, "not a WebSocket handshake")
    if head.headers.get("sec-websocket-version", "").strip() != "13":
        raise HandshakeError(426, "WebSocket version 13 only",
                             (("Sec-WebSocket-Version", "13"),))
    key = head.headers.get("sec-websocket-key", "").strip()
    try:
        ok = len(base64.b64decode(key, validate=True)) == 16
    except ValueError:
        ok = False
    if not ok:
        raise HandshakeError(400, "bad Sec-WebSocket-Key")
    return key


def switching_protocols(key: str, protocol: str) -> bytes:
    """The 101 response that completes the handshake."""
    return (f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept_key(key)}\r\nSec-WebSocket-Protocol: {protocol}\r\n"
            "\r\n").encode()


REASONS = {400: "Bad Request", 403: "Forbidden", 405: "Method Not Allowed",
           408: "Request Timeout", 426: "Upgrade Required",
           431: "Request Header Fields Too Large", 503: "Service Unavailable",
           505: "HTTP Version Not Supported"}


def refusal(status: int, text: str, headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    """A complete HTTP/1.1 error response that closes the connection."""
    body = (text.rstrip("\n") + "\n").encode()
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers)
    return (f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n{extra}\r\n").encode() + body


__all__ = [
    "BINARY",
    "CLOSE",
    "CONTINUATION",
    "PING",
    "PONG",
    "TEXT",
    "FrameReader",
    "HandshakeError",
    "ProtocolError",
    "RequestHead",
    "accept_key",
    "check_upgrade",
    "client_frame",
    "close_frame",
    "frame",
    "mask",
    "parse_close",
    "parse_head",
    "ping_frame",
    "pong_frame",
    "refusal",
    "switching_protocols",
    "text_frame",
]
