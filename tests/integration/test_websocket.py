"""XMPP over WebSocket (RFC 7395) against the real server: aiohttp's WebSocket client on one side,
slixmpp over TCP on the other. The session is the TCP one, so SASL, bind, stream management and
MUC work unchanged; what is checked here is what the WebSocket adds: the handshake, the
``<open/>``/``<close/>`` framing (one element per message, each declaring its namespace),
restarts, and bad input."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hongyan.server.node import Node
from tests.integration.conftest import PASSWORD, Harness
from tests.integration.rawstream import SASL, b64
from tests.integration.test_auth import scram
from tests.integration.wsstream import CLOSE, FRAMING, OPEN, WsStream, ws_url

SM = "urn:xmpp:sm:3"


class AiohttpHarness(Harness):
    """A harness whose nodes serve WebSockets through aiohttp (``websocket_lean = false``)."""

    async def start(self, extra: str | None = None, c2s_extra: str | None = None,
                    http_extra: str | None = None, server_extra: str | None = None) -> Node:
        if http_extra is not None:
            self.http_extra = http_extra
        if "websocket_lean" not in self.http_extra:
            self.http_extra += "\nwebsocket_lean = false"
        return await super().start(extra, c2s_extra, None, server_extra)


@pytest.fixture(params=["lean", "aiohttp"])
async def harness(request: pytest.FixtureRequest, tmp_path: Path,
                  storage_url: str) -> AsyncIterator[Harness]:
    """Every test here runs on both ways in: the lean front door (the default) and aiohttp's
    WebSocketResponse (the fallback)."""
    h = Harness(tmp_path, storage_url) if request.param == "lean" else \
        AiohttpHarness(tmp_path, storage_url)
    await h.start()
    try:
        yield h
    finally:
        await h.stop_node()


async def wss(harness: Harness, tls: bool = True, **kw: Any) -> WsStream:
    """A WebSocket to the node (HTTPS port; ``tls=False``: HTTP), closed with the node."""
    assert harness.node is not None
    node = harness.node
    s = await WsStream.connect(ws_url(node.https_port if tls else node.http_port, tls), **kw)
    harness.clients.append(s)  # type: ignore[arg-type]
    return s


async def ws(harness: Harness, **kw: Any) -> WsStream:
    return await wss(harness, False, **kw)


def mechanisms(features: bytes) -> list[bytes]:
    """The RFC 6120 SASL mechanisms (not SASL2's, XEP-0388, which has its own list)."""
    block = re.search(rb"<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>(.*?)</mechanisms>",
                      features)
    return re.findall(rb"<mechanism>([^<]+)</mechanism>", block.group(1)) if block else []


async def test_login_bind_and_chat_both_ways_with_a_tcp_user(harness: Harness) -> None:
    await harness.user("alice")
    bob = await harness.logged_in("bob")
    s = await wss(harness)
    assert s.ws.protocol == "xmpp"
    s.send(OPEN)
    opened = await s.message()
    assert opened.startswith(f"<open xmlns='{FRAMING}' ") and opened.endswith("/>"), opened
    assert "from='localhost'" in opened and "version='1.0'" in opened
    features = await s.message()  # its own message, declaring the stream prefix
    assert features.startswith("<stream:features xmlns:stream='http://etherx.jabber.org/"
                               "streams'>"), features
    assert "starttls" not in features  # RFC 7395: TLS is the WebSocket's
    assert mechanisms(features.encode()) == [b"SCRAM-SHA-256-PLUS", b"SCRAM-SHA-256",
                                             b"SCRAM-SHA-1-PLUS", b"SCRAM-SHA-1", b"PLAIN"]
    s.send(f"<auth xmlns='{SASL}' mechanism='PLAIN'>{b64(chr(0) + 'alice' + chr(0) + PASSWORD)}"
           "</auth>")
    assert (await s.message()).startswith(f"<success xmlns='{SASL}'")
    # the restart is a new <open/>, answered by a new <open/> with a new id
    s.send(OPEN)
    reopened = await s.message()
    assert reopened.startswith("<open ") and reopened != opened
    assert "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>" in await s.message()
    bound = await s.bind("web")
    assert "<jid>alice@localhost/web</jid>" in bound
    assert bound.startswith("<iq xmlns='jabber:client' ")
    s.send("<presence xmlns='jabber:client'/>")
    s.send("<message xmlns='jabber:client' to='bob@localhost' type='chat'><body>from the web"
           "</body></message>")
    m = await bob.next_message()
    assert (m["body"], str(m["from"])) == ("from the web", "alice@localhost/web")
    bob.send_message(mto="alice@localhost/web", mbody="to the web", mtype="chat")
    got = await s.until("to the web")
    assert got.startswith("<message xmlns='jabber:client' "), got
    assert "from='bob@localhost/test'" in got
    # every message received was one complete element
    assert all(re.fullmatch(r"<([\w:]+)[^>]*(/>|>.*</\1>)", msg, re.S) for msg in s.messages)
    await s.close()


@pytest.mark.parametrize("hash_name", ["sha256", "sha1"])
async def test_scram_over_websocket(harness: Harness, hash_name: str) -> None:
    await harness.user("carol")
    s = await wss(harness)
    await s.header()
    result = await scram(s, "carol", PASSWORD, hash_name=hash_name)
    assert result.answer.startswith(b"<success") and result.verified
    feats = await s.header()
    assert b"<bind " in feats
    assert b"carol@localhost/ws" in (await s.bind()).encode()
    await s.close()


async def test_plain_websocket_offers_no_authentication_and_no_starttls(harness: Harness) -> None:
    s = await ws(harness)
    s.send(OPEN)
    await s.message()
    # nothing to negotiate but the stream's limits (XEP-0478)
    assert await s.message() == ("<stream:features xmlns:stream='http://etherx.jabber.org/"
                                 "streams'><limits xmlns='urn:xmpp:stream-limits:0'><max-bytes>"
                                 "16384</max-bytes><idle-seconds>30</idle-seconds></limits>"
                                 "</stream:features>")
    s.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    assert b"<policy-violation" in await s.read_to_close()
    await s.close()


async def test_client_close_is_answered_and_ends_the_websocket(harness: Harness) -> None:
    await harness.user("dave")
    s = await wss(harness)
    await s.login("dave")
    s.send(CLOSE)
    rest = await s.read_to_close()
    assert rest == CLOSE.encode()
    assert s.close_code == 1000
    await s.close()


async def test_stream_error_then_close(harness: Harness) -> None:
    s = await wss(harness)
    s.send(OPEN.replace("localhost", "elsewhere.example"))
    assert (await s.message()).startswith("<open ")
    error = await s.message()
    assert error.startswith("<stream:error xmlns:stream='http://etherx.jabber.org/streams'>")
    assert "<host-unknown" in error
    assert await s.message() == CLOSE
    await s.read_to_close()
    await s.close()


async def test_two_elements_in_one_message_is_not_well_formed(harness: Harness) -> None:
    s = await wss(harness)
    await s.header()
    s.send("<presence xmlns='jabber:client'/><presence xmlns='jabber:client'/>")
    assert b"<not-well-formed" in await s.read_to_close()
    await s.close()


async def test_oversized_messages(harness: Harness) -> None:
    """The stanza limit applies: over it, policy-violation and close code 1009; far over it
    (twice the limit) the message itself is refused (1009) before it is buffered."""
    await harness.stop_node()
    await harness.start(c2s_extra="max_stanza_size = 10000")
    await harness.user("erin")
    s = await wss(harness)
    await s.login("erin")
    s.send("<message xmlns='jabber:client' to='erin@localhost'><body>" + "x" * 15000 +
           "</body></message>")
    out = await s.read_to_close()
    assert b"<policy-violation" in out and out.endswith(CLOSE.encode()), out
    assert s.close_code == 1009
    await s.close()
    s = await wss(harness)
    await s.login("erin")
    s.send("<message xmlns='jabber:client'><body>" + "x" * 30000 + "</body></message>")
    await s.read_to_close()
    # 1009, unless the kernel reset the connection over the bytes the server left unread
    assert s.close_code in (1009, 1006)
    await s.close()
    s = await wss(harness)  # the server goes on
    assert "erin@localhost/ws" in await s.login("erin")


async def test_binary_message_is_refused(harness: Harness) -> None:
    s = await wss(harness)
    await s.header()
    await s.ws.send_bytes(b"<presence xmlns='jabber:client'/>")
    await s.read_to_close()
    assert s.close_code == 1003
    await s.close()


async def test_handshake_without_the_xmpp_subprotocol_is_refused(harness: Harness) -> None:
    for protocols in ((), ("chat", "mqtt")):
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await wss(harness, protocols=protocols)
        assert info.value.status == 400


async def test_origin_check_when_configured(harness: Harness) -> None:
    await harness.stop_node()
    await harness.start(http_extra='websocket_origins = ["https://chat.example.org"]')
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await wss(harness, headers={"Origin": "https://evil.example"})
    assert info.value.status == 403
    for headers in ({"Origin": "https://chat.example.org"}, {"Origin": "HTTPS://Chat.Example.Org/"},
                    {}):  # a client that is not a browser sends none
        s = await wss(harness, headers=headers)
        assert b"<mechanisms" in await s.header()
        await s.close()


async def test_stream_management_enable_and_resume(harness: Harness) -> None:
    await harness.user("frank")
    bob = await harness.logged_in("bob")
    s = await wss(harness)
    await s.login("frank", "phone")
    s.send(f"<enable xmlns='{SM}' resume='true'/>")
    enabled = (await s.read_element(b"<enabled")).decode()
    m = re.search(r"id='([^']+)'", enabled)
    assert m is not None and "resume='true'" in enabled, enabled
    sid = m.group(1)
    s.send("<presence xmlns='jabber:client'/>")
    bob.send_message(mto="frank@localhost/phone", mbody="one", mtype="chat")
    await s.until("<body>one")
    await s.drop()  # no <close/>: the session waits for a resumption
    await s.close()
    await asyncio.sleep(0.2)
    bob.send_message(mto="frank@localhost/phone", mbody="two", mtype="chat")
    await asyncio.sleep(0.2)
    s2 = await wss(harness)
    await s2.authenticate("frank")
    s2.send(f"<resume xmlns='{SM}' previd='{sid}' h='1'/>")
    resumed = (await s2.read_element(b"<resumed")).decode()
    assert f"previd='{sid}'" in resumed, resumed
    again = await s2.until("<body>two")
    assert again.startswith("<message xmlns='jabber:client' ")
    # the resumed session works both ways
    s2.send("<message xmlns='jabber:client' to='bob@localhost' type='chat'><body>back</body>"
            "</message>")
    assert (await bob.next_message())["body"] == "back"
    await s2.close()


async def test_muc_join_over_websocket(harness: Harness) -> None:
    await harness.user("gina")
    s = await wss(harness)
    await s.login("gina")
    s.send("<presence xmlns='jabber:client' to='lobby@conference.localhost/gina'>"
           "<x xmlns='http://jabber.org/protocol/muc'/></presence>")
    me = await s.until("code='110'")
    assert me.startswith("<presence xmlns='jabber:client' ")
    assert "from='lobby@conference.localhost/gina'" in me
    s.send("<message xmlns='jabber:client' to='lobby@conference.localhost' type='groupchat'>"
           "<body>hello room</body></message>")
    echo = await s.until("hello room")
    assert "type='groupchat'" in echo and "from='lobby@conference.localhost/gina'" in echo
    await s.close()


async def test_behind_a_trusted_proxy_that_terminates_tls(harness: Harness) -> None:
    """ws:// from a trusted proxy that says the client came over https is secure: SASL is
    offered (without -PLUS: the client saw the proxy's certificate, not ours). The same
    headers from anyone else change nothing."""
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
    s = await ws(harness, headers=headers)
    s.send(OPEN)
    await s.message()
    assert "<mechanism>" not in await s.message()
    await harness.stop_node()
    await harness.start(http_extra='trusted_proxies = ["127.0.0.1"]')
    await harness.user("hank")
    s = await ws(harness, headers=headers)
    s.send(OPEN)
    await s.message()
    assert mechanisms((await s.message()).encode()) == [b"SCRAM-SHA-256", b"SCRAM-SHA-1",
                                                        b"PLAIN"]
    await s.close()
    s = await ws(harness, headers=headers)
    assert "hank@localhost/ws" in await s.login("hank")


async def test_node_stop_ends_websocket_sessions(harness: Harness) -> None:
    await harness.user("ivy")
    s = await wss(harness)
    await s.login("ivy")
    assert harness.node is not None
    await asyncio.wait_for(harness.node.stop(), 10)
    harness.node = None
    out = await s.read_to_close()
    assert b"<system-shutdown" in out and out.endswith(CLOSE.encode())


async def test_carbons_reach_a_websocket_resource(harness: Harness) -> None:
    await harness.logged_in("bob")
    jack_tcp = await harness.logged_in("jack", resource="desk")
    s = await wss(harness)
    await s.login("jack", "browser")
    s.send("<iq xmlns='jabber:client' type='set' id='c'><enable xmlns='urn:xmpp:carbons:2'/>"
           "</iq>")
    await s.until("id='c'")
    jack_tcp.send_message(mto="bob@localhost", mbody="sent from the desk", mtype="chat")
    copy = await s.until("sent from the desk")
    assert copy.startswith("<message xmlns='jabber:client' ")
    assert "<sent xmlns='urn:xmpp:carbons:2'>" in copy


async def test_each_way_in_is_the_one_configured(harness: Harness) -> None:
    s = await wss(harness)
    await s.header()
    assert harness.node is not None and harness.node.ws_endpoint is not None
    lean = len(harness.node.ws_endpoint.keepalive)
    assert lean == (0 if isinstance(harness, AiohttpHarness) else 1)
    assert harness.node.connections.websocket == 1
    await s.close()
