"""The HTTP listener's front door and the lean WebSocket (``transport/wsfront.py``) against the
real server, at the byte level: a raw socket writes handshakes and frames exactly (unmasked,
oversized, fragmented, control frames, close codes), aiohttp's client checks what a browser-like
client sees, and every request that is not a WebSocket upgrade must reach aiohttp unchanged."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import ssl
from collections.abc import AsyncIterator

import aiohttp
import pytest

from hongyan.transport.rfc6455 import (
    BINARY,
    CLOSE,
    CONTINUATION,
    PING,
    PONG,
    TEXT,
    accept_key,
    client_frame,
)
from hongyan.transport.wsfront import LeanWebSocket
from tests.integration.clients import insecure_context
from tests.integration.conftest import PASSWORD, Harness
from tests.integration.rawstream import SASL, b64
from tests.integration.wsstream import CLOSE as XMPP_CLOSE
from tests.integration.wsstream import OPEN, WsStream, ws_url


class RawWs:
    """A WebSocket client on a bare socket: what it writes is exactly what the test says."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int, *, tls: bool = False) -> RawWs:
        ctx: ssl.SSLContext | None = insecure_context() if tls else None
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
        return cls(reader, writer)

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def response(self) -> tuple[int, dict[str, str], bytes]:
        """The HTTP response: status, headers (lowercased names), body (Content-Length)."""
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 5)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (line.partition(":") for line in lines[1:] if line)}
        n = int(headers.get("content-length", "0"))
        body = await asyncio.wait_for(self.reader.readexactly(n), 5) if n else b""
        return status, headers, body

    async def handshake(self, path: str = "/xmpp-websocket", protocol: str = "xmpp",
                        extra: str = "") -> tuple[int, dict[str, str], bytes]:
        key = base64.b64encode(os.urandom(16)).decode()
        self.send((f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                   f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {protocol}\r\n"
                   f"{extra}\r\n").encode())
        status, headers, body = await self.response()
        if status == 101:
            assert headers["sec-websocket-accept"] == accept_key(key)
        return status, headers, body

    def text(self, message: str | bytes) -> None:
        self.send(client_frame(TEXT, message.encode() if isinstance(message, str) else message))

    async def frame(self, timeout: float = 5.0) -> tuple[int, bytes]:
        """The next frame from the server, which must be unmasked and final."""
        b0, b1 = await asyncio.wait_for(self.reader.readexactly(2), timeout)
        assert b0 & 0x80 and not b0 & 0x70 and not b1 & 0x80, (b0, b1)
        n = b1 & 0x7F
        if n == 126:
            n = int.from_bytes(await self.reader.readexactly(2), "big")
        elif n == 127:
            n = int.from_bytes(await self.reader.readexactly(8), "big")
        return b0 & 0x0F, await asyncio.wait_for(self.reader.readexactly(n), timeout)

    async def message(self) -> str:
        opcode, payload = await self.frame()
        assert opcode == TEXT, (opcode, payload)
        return payload.decode()

    async def until_close(self) -> tuple[list[str], int | None]:
        """Text messages up to the server's close frame, and its code; then the server must
        close the TCP connection."""
        texts: list[str] = []
        while True:
            opcode, payload = await self.frame()
            if opcode == CLOSE:
                code = int.from_bytes(payload[:2], "big") if payload else None
                break
            if opcode == TEXT:
                texts.append(payload.decode())
        with contextlib.suppress(ConnectionError):
            self.send(client_frame(CLOSE, payload[:2]))
            assert await asyncio.wait_for(self.reader.read(), 5) == b""
        return texts, code

    async def login(self, user: str) -> None:
        self.text(OPEN)
        await self.message()
        assert "PLAIN" in await self.message()
        self.text(f"<auth xmlns='{SASL}' mechanism='PLAIN'>"
                  f"{b64(chr(0) + user + chr(0) + PASSWORD)}</auth>")
        assert (await self.message()).startswith("<success")
        self.text(OPEN)
        await self.message()
        await self.message()
        self.text("<iq xmlns='jabber:client' type='set' id='b'><bind "
                  "xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>raw</resource></bind></iq>")
        assert f"{user}@localhost/raw" in await self.message()

    def close(self) -> None:
        self.writer.close()


@pytest.fixture
async def raw(harness: Harness) -> AsyncIterator[list[RawWs]]:
    opened: list[RawWs] = []
    yield opened
    for r in opened:
        r.close()


async def connect(harness: Harness, opened: list[RawWs], *, tls: bool = False) -> RawWs:
    assert harness.node is not None
    r = await RawWs.open(harness.node.https_port if tls else harness.node.http_port, tls=tls)
    opened.append(r)
    return r


def lean_sessions(harness: Harness) -> list[LeanWebSocket]:
    """The node's open lean WebSockets."""
    assert harness.node is not None and harness.node.ws_endpoint is not None
    return list(harness.node.ws_endpoint.keepalive)


@pytest.mark.parametrize("tls", [False, True])
async def test_a_raw_handshake_login_and_chat_keeps_no_aiohttp_object(
        harness: Harness, raw: list[RawWs], tls: bool) -> None:
    if not tls:
        await harness.stop_node()
        await harness.start(c2s_extra="require_encryption = false\n"
                                      "allow_plaintext_auth = true")
    await harness.user("alice")
    bob = await harness.logged_in("bob")
    r = await connect(harness, raw, tls=tls)
    status, headers, _ = await r.handshake()
    assert status == 101 and headers["sec-websocket-protocol"] == "xmpp"
    assert headers["upgrade"].lower() == "websocket"
    await r.login("alice")
    r.text("<presence xmlns='jabber:client'/>")
    r.text("<message xmlns='jabber:client' to='bob@localhost' type='chat'><body>raw</body>"
           "</message>")
    assert (await bob.next_message())["body"] == "raw"
    bob.send_message(mto="alice@localhost/raw", mbody="back", mtype="chat")
    while "<body>back</body>" not in (msg := await r.message()):
        pass
    assert msg.startswith("<message xmlns='jabber:client' ")
    # the session's transport is the lean one, and aiohttp holds nothing of the connection
    assert harness.node is not None and harness.node._http is not None
    [ws] = lean_sessions(harness)
    assert ws.secure is tls and ws.peer_host == "127.0.0.1"
    assert (ws.channel_binding() is not None) is tls  # tls-server-end-point, over our TLS
    assert harness.node._http.server.connections == []
    assert harness.node.connections.websocket == 1
    r.text(XMPP_CLOSE)
    texts, code = await r.until_close()
    assert texts == [XMPP_CLOSE] and code == 1000
    await asyncio.sleep(0.05)
    assert harness.node.connections.websocket == 0


async def test_bad_handshakes_get_http_errors(harness: Harness, raw: list[RawWs]) -> None:
    async def refused(request: bytes) -> tuple[int, dict[str, str], bytes]:
        r = await connect(harness, raw)
        r.send(request)
        got = await r.response()
        assert await asyncio.wait_for(r.reader.read(), 5) == b""  # and closed
        return got

    base = (b"GET /xmpp-websocket HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: xmpp\r\n\r\n")
    status, _, body = await refused(base.replace(b"xmpp\r\n", b"chat, mqtt\r\n"))
    assert status == 400 and b"'xmpp' subprotocol" in body
    status, _, _ = await refused(base.replace(b"Sec-WebSocket-Protocol: xmpp\r\n", b""))
    assert status == 400
    status, headers, _ = await refused(base.replace(b"Version: 13", b"Version: 8"))
    assert status == 426 and headers["sec-websocket-version"] == "13"
    status, _, body = await refused(base.replace(b"dGhlIHNhbXBsZSBub25jZQ==", b"short"))
    assert status == 400 and b"Key" in body
    status, _, _ = await refused(base.replace(b"Host: localhost\r\n", b""))
    assert status == 400
    status, _, _ = await refused(base.replace(b"HTTP/1.1", b"HTTP/1.0"))
    assert status == 505
    status, _, _ = await refused(base.replace(b"Host: localhost\r\n",
                                              b"Host: localhost\r\n folded: x\r\n"))
    assert status == 400
    # a head that never ends: refused once it is over 16 KiB, not buffered on
    status, _, body = await refused(base[:-2] + b"X-Pad: " + b"a" * 20000 + b"\r\n\r\n")
    assert status == 431
    # after all that, a good one
    r = await connect(harness, raw)
    assert (await r.handshake())[0] == 101


async def test_a_slow_head_is_dropped_at_the_deadline(harness: Harness,
                                                      raw: list[RawWs]) -> None:
    r = await connect(harness, raw)
    r.send(b"GET /xmpp-websocket HTTP/1.1\r\nHost: loc")
    await asyncio.sleep(0.1)
    await harness.clock.advance(31)
    status, _, _ = await r.response()
    assert status == 408
    assert await asyncio.wait_for(r.reader.read(), 5) == b""


async def test_origin_check(harness: Harness, raw: list[RawWs]) -> None:
    await harness.stop_node()
    await harness.start(http_extra='websocket_origins = ["https://chat.example.org"]')
    r = await connect(harness, raw)
    status, _, body = await r.handshake(extra="Origin: https://evil.example\r\n")
    assert status == 403 and b"origin" in body
    r = await connect(harness, raw)
    assert (await r.handshake(extra="Origin: https://Chat.Example.org/\r\n"))[0] == 101


async def test_other_requests_reach_aiohttp_unchanged(harness: Harness,
                                                      raw: list[RawWs]) -> None:
    """A GET of the WebSocket path without Upgrade, another method on it, other paths, a
    request cut in one-byte pieces and two pipelined on one connection all get aiohttp's
    answers."""
    assert harness.node is not None
    port = harness.node.http_port
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/xmpp-websocket") as resp:
            assert resp.status == 400 and "aiohttp" in resp.headers["Server"]
        async with http.get(f"http://127.0.0.1:{port}/xmpp-websocket",
                            headers={"Sec-WebSocket-Protocol": "xmpp"}) as resp:
            assert resp.status == 400 and "not a WebSocket handshake" in await resp.text()
        async with http.post(f"http://127.0.0.1:{port}/xmpp-websocket", data=b"x") as resp:
            assert resp.status == 405
        async with http.get(f"http://127.0.0.1:{port}/xmpp-websocketX") as resp:
            assert resp.status == 404
        async with http.get(f"http://127.0.0.1:{port}/health") as resp:
            assert resp.status == 200 and (await resp.json())["status"] == "ok"
    r = await connect(harness, raw)
    request = b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n"
    for byte in request:
        r.send(bytes((byte,)))
        await r.writer.drain()
    status, _, body = await r.response()
    assert status == 200 and b'"ok"' in body
    r.send(b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await r.response())[0] == 404
    assert (await r.response())[0] == 200
    # a GET of the path, in pieces, not an upgrade: still aiohttp's
    r = await connect(harness, raw)
    r.send(b"GET /xmpp-websock")
    await asyncio.sleep(0.05)
    r.send(b"et?a=b HTTP/1.1\r\nHost: x\r\n\r\n")
    status, headers, _ = await r.response()
    assert status == 400 and "aiohttp" in headers["server"]


async def test_unmasked_frame_closes_with_1002(harness: Harness, raw: list[RawWs]) -> None:
    r = await connect(harness, raw)
    assert (await r.handshake())[0] == 101
    r.send(b"\x81\x07" + OPEN.encode()[:7])  # unmasked
    texts, code = await r.until_close()
    assert texts == [] and code == 1002
    r = await connect(harness, raw)  # the server goes on
    assert (await r.handshake())[0] == 101


@pytest.mark.parametrize(("wire", "code"), [
    (client_frame(TEXT, b"<open/>", rsv=4), 1002),  # a compressed frame: never negotiated
    (client_frame(0x3, b""), 1002),
    (client_frame(CONTINUATION, b"<open/>"), 1002),
    (client_frame(PING, b"x" * 126), 1002),
    (client_frame(TEXT, b"\xff"), 1007),
    (client_frame(BINARY, OPEN.encode()), 1003),  # RFC 7395 §3.2: text only
    (client_frame(CLOSE, b"\x03\xed"), 1002),
])
async def test_broken_frames_get_their_close_codes(harness: Harness, raw: list[RawWs],
                                                   wire: bytes, code: int) -> None:
    r = await connect(harness, raw)
    assert (await r.handshake())[0] == 101
    r.send(wire)
    assert (await r.until_close())[1] == code


async def test_oversized_frame_is_refused_from_its_header(harness: Harness,
                                                          raw: list[RawWs]) -> None:
    """Over twice the stanza limit, the frame header alone gets 1009: the payload is never
    sent, so nothing of it was buffered."""
    await harness.stop_node()
    await harness.start(c2s_extra="max_stanza_size = 10000")
    r = await connect(harness, raw)
    assert (await r.handshake())[0] == 101
    r.text(OPEN)
    await r.message()
    await r.message()
    r.send(b"\x81\xfe" + (20001).to_bytes(2, "big") + b"\x00\x00\x00\x00")
    _, code = await r.until_close()
    assert code == 1009
    # fragments count together
    r = await connect(harness, raw)
    assert (await r.handshake())[0] == 101
    r.send(client_frame(TEXT, b"<m>" + b"x" * 15000, fin=False))
    r.send(b"\x00\xfe" + (6000).to_bytes(2, "big") + b"\x00\x00\x00\x00")
    assert (await r.until_close())[1] == 1009


async def test_fragmented_stanza_with_ping_between(harness: Harness, raw: list[RawWs]) -> None:
    await harness.user("carol")
    r = await connect(harness, raw, tls=True)
    assert (await r.handshake())[0] == 101
    opening = OPEN.encode()
    r.send(client_frame(TEXT, opening[:10], fin=False))
    r.send(client_frame(PING, b"are you there"))
    assert await r.frame() == (PONG, b"are you there")  # answered between the fragments
    r.send(client_frame(CONTINUATION, opening[10:20], fin=False))
    r.send(client_frame(PONG, b"unasked"))  # allowed, ignored
    r.send(client_frame(CONTINUATION, opening[20:]))
    assert (await r.message()).startswith("<open ")
    assert "<mechanisms" in await r.message()
    # a whole login in frames of 3 bytes, one byte per write
    auth = (f"<auth xmlns='{SASL}' mechanism='PLAIN'>{b64(chr(0) + 'carol' + chr(0) + PASSWORD)}"
            "</auth>").encode()
    wire = b"".join(client_frame(CONTINUATION if i else TEXT, auth[i:i + 3],
                                 fin=i + 3 >= len(auth)) for i in range(0, len(auth), 3))
    for i in range(0, len(wire), 7):
        r.send(wire[i:i + 7])
    assert (await r.message()).startswith("<success")


async def test_close_handshake_from_the_client(harness: Harness, raw: list[RawWs]) -> None:
    """A client's close frame is answered with its code and the TCP connection closed."""
    r = await connect(harness, raw)
    assert (await r.handshake())[0] == 101
    r.text(OPEN)
    await r.message()
    await r.message()
    r.send(client_frame(CLOSE, (4001).to_bytes(2, "big") + b"leaving"))
    assert await r.frame() == (CLOSE, (4001).to_bytes(2, "big"))
    assert await asyncio.wait_for(r.reader.read(), 5) == b""
    r = await connect(harness, raw)
    assert (await r.handshake())[0] == 101
    r.send(client_frame(CLOSE, b""))  # no code: answered with 1000
    assert await r.frame() == (CLOSE, b"\x03\xe8")


async def test_keepalive_pings_and_a_dead_client(harness: Harness) -> None:
    """websocket_ping = 30: a client silent for 30-45 s gets a ping; one that answers stays,
    one that does not is dropped 15 s later. One sweep timer serves every connection."""
    await harness.user("dave")
    await harness.user("erin")
    assert harness.node is not None
    alive = await WsStream.connect(ws_url(harness.node.https_port, True), autoping=False)
    mute = await WsStream.connect(ws_url(harness.node.https_port, True), autoping=False)
    harness.clients += [alive, mute]  # type: ignore[list-item]
    await alive.login("dave")
    await mute.login("erin")
    pinged = [asyncio.ensure_future(c.ws.receive()) for c in (alive, mute)]
    await harness.clock.advance(15)
    await harness.clock.advance(15)
    await asyncio.sleep(0.1)
    assert not any(p.done() for p in pinged)
    await harness.clock.advance(15)
    for p in pinged:
        assert (await asyncio.wait_for(p, 5)).type == aiohttp.WSMsgType.PING
    await alive.ws.pong()
    await asyncio.sleep(0.2)
    await harness.clock.advance(15)
    await asyncio.sleep(0.2)
    assert (await asyncio.wait_for(mute.ws.receive(), 5)).type in (
        aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.ERROR)
    # the one that answered is still there, and works
    alive.send("<iq xmlns='jabber:client' type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert "id='p'" in await alive.until("id='p'")
    assert [ws.peer_host for ws in lean_sessions(harness)] == ["127.0.0.1"]


async def test_x_forwarded_for_from_a_trusted_proxy(harness: Harness, raw: list[RawWs]) -> None:
    await harness.stop_node()
    await harness.start(http_extra='trusted_proxies = ["127.0.0.1"]')
    await harness.user("frank")
    r = await connect(harness, raw)
    status, _, _ = await r.handshake(
        extra="X-Forwarded-For: 198.51.100.7, 203.0.113.9\r\nX-Forwarded-Proto: https\r\n")
    assert status == 101
    r.text(OPEN)
    await r.message()
    features = await r.message()
    # secure (the proxy's TLS): SASL offered, without -PLUS (not our certificate)
    sasl = re.search(r"<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>(.*?)</mechanisms>",
                     features)
    assert sasl is not None, features
    assert re.findall(r"<mechanism>([^<]+)</mechanism>", sasl.group(1)) == [
        "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]
    [ws] = lean_sessions(harness)
    assert ws.peer_host == "203.0.113.9" and ws.secure
    # from anyone else the same headers change nothing
    await harness.stop_node()
    await harness.start(http_extra="")
    r = await connect(harness, raw)
    status, _, _ = await r.handshake(
        extra="X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\n")
    [ws] = lean_sessions(harness)
    assert ws.peer_host == "127.0.0.1" and not ws.secure
