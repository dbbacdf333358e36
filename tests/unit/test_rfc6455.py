"""RFC 6455 without I/O (``transport/rfc6455.py``), as byte tables: the frames a server writes,
what a client's frames read as (in any cut of the bytes), what breaks the protocol and the
close code it gets, and the opening handshake."""

from __future__ import annotations

import pytest

from hongyan.transport.rfc6455 import (
    BINARY,
    CLOSE,
    CONTINUATION,
    PING,
    PONG,
    TEXT,
    FrameReader,
    HandshakeError,
    ProtocolError,
    accept_key,
    check_upgrade,
    client_frame,
    close_frame,
    mask,
    parse_close,
    parse_head,
    ping_frame,
    pong_frame,
    refusal,
    switching_protocols,
    text_frame,
)

KEY = b"\x37\xfa\x21\x3d"


@pytest.mark.parametrize(("built", "wire"), [
    (text_frame(b"<a/>"), b"\x81\x04<a/>"),
    (text_frame(b"x" * 126), b"\x81\x7e\x00\x7e" + b"x" * 126),
    (text_frame(b"x" * 65536), b"\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00" + b"x" * 65536),
    (close_frame(), b"\x88\x02\x03\xe8"),
    (close_frame(1009, "too big"), b"\x88\x09\x03\xf1too big"),
    (close_frame(None), b"\x88\x00"),
    (close_frame(1002, "x" * 200), b"\x88\x7d\x03\xea" + b"x" * 123),  # ≤ 125 in all
    (ping_frame(), b"\x89\x00"),
    (pong_frame(b"hi"), b"\x8a\x02hi"),
])
def test_server_frames(built: bytes, wire: bytes) -> None:
    assert built == wire


def test_masking_is_rfc_6455_s5_7_example() -> None:
    # §5.7: a masked "Hello" from a client
    wire = b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"
    assert client_frame(TEXT, b"Hello", KEY) == wire
    assert FrameReader(100).feed(wire) == [(TEXT, b"Hello")]
    assert mask(mask(b"any length at all", KEY), KEY) == b"any length at all"
    assert mask(b"", KEY) == b""


def _feed_in_cuts(wire: bytes, cut: int, limit: int = 1 << 20) -> list[tuple[int, bytes]]:
    reader = FrameReader(limit)
    out: list[tuple[int, bytes]] = []
    for i in range(0, len(wire), cut):
        out += reader.feed(wire[i:i + cut])
    assert reader.buffered == 0
    return out


@pytest.mark.parametrize("cut", [1, 2, 3, 7, 64, 1 << 20])
def test_messages_in_any_cut(cut: int) -> None:
    big = b"<message>" + b"y" * 70000 + b"</message>"
    wire = b"".join([
        client_frame(TEXT, b"<open/>"),
        client_frame(TEXT, b""),
        client_frame(TEXT, b"x" * 300),  # 16-bit length
        client_frame(TEXT, big),  # 64-bit length
        client_frame(BINARY, b"\x00\xff"),
        client_frame(PING, b"p"),
        client_frame(PONG, b""),
        client_frame(CLOSE, b"\x03\xe8bye"),
    ])
    assert _feed_in_cuts(wire, cut) == [
        (TEXT, b"<open/>"), (TEXT, b""), (TEXT, b"x" * 300), (TEXT, big), (BINARY, b"\x00\xff"),
        (PING, b"p"), (PONG, b""), (CLOSE, b"\x03\xe8bye")]


@pytest.mark.parametrize("cut", [1, 5, 1000])
def test_a_fragmented_message_with_control_frames_between(cut: int) -> None:
    wire = b"".join([
        client_frame(TEXT, b"<message><bo", fin=False),
        client_frame(PING, b"1"),
        client_frame(CONTINUATION, b"dy>h\xc3", fin=False),  # UTF-8 split between frames
        client_frame(PONG, b""),
        client_frame(CONTINUATION, b"\xa9</body></message>"),
        client_frame(TEXT, b"<r/>"),
    ])
    assert _feed_in_cuts(wire, cut) == [
        (PING, b"1"), (PONG, b""), (TEXT, "<message><body>hé</body></message>".encode()),
        (TEXT, b"<r/>")]


def _error(wire: bytes, limit: int = 1000) -> tuple[int, str]:
    with pytest.raises(ProtocolError) as info:
        FrameReader(limit).feed(wire)
    return info.value.code, info.value.reason


@pytest.mark.parametrize(("wire", "code", "why"), [
    (b"\x81\x05Hello", 1002, "unmasked"),  # §5.1: a client masks every frame
    (client_frame(TEXT, b"a", rsv=4), 1002, "reserved bits"),  # permessage-deflate's RSV1
    (client_frame(TEXT, b"a", rsv=1), 1002, "reserved bits"),
    (client_frame(0x3, b"a"), 1002, "unknown opcode 3"),
    (client_frame(0xB, b""), 1002, "unknown opcode 11"),
    (client_frame(PING, b"", fin=False), 1002, "fragmented control frame"),
    (client_frame(PING, b"x" * 126), 1002, "over 125 bytes"),
    (client_frame(CONTINUATION, b"a"), 1002, "continuation frame outside"),
    (client_frame(TEXT, b"a", fin=False) + client_frame(TEXT, b"b"), 1002,
     "new message inside"),
    (client_frame(TEXT, b"\xff\xfe"), 1007, "not UTF-8"),
    (client_frame(TEXT, b"\xc3", fin=False) + client_frame(CONTINUATION, b"("), 1007,
     "not UTF-8"),
    (client_frame(CLOSE, b"\x03"), 1002, "one byte"),
    (client_frame(CLOSE, b"\x03\xed"), 1002, "close code 1005"),  # never on the wire
    (client_frame(CLOSE, b"\x03\xee"), 1002, "close code 1006"),
    (client_frame(CLOSE, b"\x00\x01"), 1002, "close code 1"),
    (client_frame(CLOSE, b"\x07\xd0"), 1002, "close code 2000"),  # not assigned
    (client_frame(CLOSE, b"\x03\xe8\xff"), 1007, "reason that is not UTF-8"),
    (b"\x81\xff\x80" + b"\x00" * 7 + KEY, 1002, "top bit"),
])
def test_broken_frames(wire: bytes, code: int, why: str) -> None:
    got_code, reason = _error(wire)
    assert got_code == code and why in reason, reason


def test_a_message_over_the_bound_is_refused_from_its_header() -> None:
    # the 64-bit header alone (no payload yet) is enough: nothing of it is buffered
    assert _error(b"\x81\xff" + (1 << 40).to_bytes(8, "big"), 1000)[0] == 1009
    assert _error(b"\x81\xfe" + (1001).to_bytes(2, "big"), 1000)[0] == 1009
    assert FrameReader(1000).feed(client_frame(TEXT, b"x" * 1000)) == [(TEXT, b"x" * 1000)]
    # fragments count together
    wire = client_frame(TEXT, b"x" * 600, fin=False) + client_frame(CONTINUATION, b"x" * 401)
    assert _error(wire, 1000)[0] == 1009
    # control frames are bounded by 125 only
    assert FrameReader(10).feed(client_frame(PING, b"x" * 100)) == [(PING, b"x" * 100)]


def test_valid_close_codes() -> None:
    assert parse_close(b"") == (None, "")
    for code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000,
                 4999):
        assert parse_close(code.to_bytes(2, "big") + "é".encode()) == (code, "é")
    for code in (999, 1004, 1005, 1006, 1015, 1016, 2999, 5000):
        with pytest.raises(ProtocolError):
            parse_close(code.to_bytes(2, "big"))


HEAD = (b"GET /xmpp-websocket?x=1 HTTP/1.1\r\nHost: localhost\r\nUpgrade: WebSocket\r\n"
        b"Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat\r\n"
        b"Sec-WebSocket-Protocol: xmpp\r\nOrigin: https://a.example")


def test_handshake() -> None:
    head = parse_head(HEAD)
    assert (head.method, head.target, head.path) == ("GET", "/xmpp-websocket?x=1",
                                                     "/xmpp-websocket")
    assert head.headers["sec-websocket-protocol"] == "chat, xmpp"  # repeated: joined
    assert head.tokens("connection") == ["keep-alive", "upgrade"]
    key = check_upgrade(head)
    # §1.3's example
    assert accept_key(key) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert switching_protocols(key, "xmpp") == (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: xmpp"
        b"\r\n\r\n")


@pytest.mark.parametrize(("change", "status"), [
    ((b"GET /xmpp-websocket?x=1 HTTP/1.1", b"GET /xmpp-websocket HTTP/1.0"), 505),
    ((b"GET /xmpp-websocket?x=1 HTTP/1.1", b"GET  /xmpp-websocket HTTP/1.1"), 400),
    ((b"GET /xmpp-websocket?x=1 HTTP/1.1", b"POST /xmpp-websocket HTTP/1.1"), 405),
    ((b"Host: localhost\r\n", b""), 400),
    ((b"Upgrade: WebSocket", b"Upgrade: h2c"), 400),
    ((b"keep-alive, Upgrade", b"keep-alive"), 400),
    ((b"Version: 13", b"Version: 8"), 426),
    ((b"dGhlIHNhbXBsZSBub25jZQ==", b"dGhlIHNhbXBsZQ=="), 400),  # 11 bytes, not 16
    ((b"dGhlIHNhbXBsZSBub25jZQ==", b"not base64!"), 400),
    ((b"Host: localhost\r\n", b"Host: localhost\r\n folded\r\n"), 400),  # obs-fold
    ((b"Host: localhost\r\n", b"Ho st: localhost\r\n"), 400),
    ((b"Host: localhost\r\n", b"Host localhost\r\n"), 400),
])
def test_bad_handshakes(change: tuple[bytes, bytes], status: int) -> None:
    with pytest.raises(HandshakeError) as info:
        check_upgrade(parse_head(HEAD.replace(*change)))
    assert info.value.status == status
    if status == 426:
        assert info.value.headers == (("Sec-WebSocket-Version", "13"),)


def test_refusal() -> None:
    assert refusal(426, "version 13 only", (("Sec-WebSocket-Version", "13"),)) == (
        b"HTTP/1.1 426 Upgrade Required\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: 16\r\nConnection: close\r\nSec-WebSocket-Version: 13\r\n\r\n"
        b"version 13 only\n")
