"""RFC 6120 stream negotiation over real sockets: headers, features, STARTTLS, direct TLS
(XEP-0368), stream restarts, resource binding and closing."""

from __future__ import annotations

import asyncio
import re

from tests.integration.clients import Client, insecure_context
from tests.integration.conftest import Harness
from tests.integration.rawstream import PASSWORD, SASL, RawStream, authed_stream, b64, tls_stream

TLS = "urn:ietf:params:xml:ns:xmpp-tls"
BIND = "urn:ietf:params:xml:ns:xmpp-bind"
MECHS = [b"SCRAM-SHA-256-PLUS", b"SCRAM-SHA-256", b"SCRAM-SHA-1-PLUS", b"SCRAM-SHA-1", b"PLAIN"]


def mechanisms(feats: bytes) -> list[bytes]:
    """The RFC 6120 SASL mechanisms (not SASL2's, XEP-0388, which has its own list)."""
    block = re.search(rb"<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>(.*?)</mechanisms>",
                      feats)
    return re.findall(rb"<mechanism>([^<]+)</mechanism>", block.group(1)) if block else []


def plain_auth(user: str, password: str = PASSWORD) -> str:
    return f"<auth xmlns='{SASL}' mechanism='PLAIN'>{b64(chr(0) + user + chr(0) + password)}</auth>"


# ---- headers and features ------------------------------------------------------------------


async def test_response_header(harness: Harness) -> None:
    s = await RawStream.open(harness.port)
    s.send("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
           "xmlns:stream='http://etherx.jabber.org/streams' to='localhost' "
           "from='someone@localhost' version='1.0' xml:lang='en'>")
    out = await s.read_until(b"</stream:features>")
    m = re.search(rb"<stream:stream [^>]*>", out)
    assert m is not None
    head = m.group(0)
    assert b"xmlns='jabber:client'" in head
    assert b"xmlns:stream='http://etherx.jabber.org/streams'" in head
    assert b"from='localhost'" in head and b"version='1.0'" in head
    assert re.search(rb" id='[^']{8,}'", head)
    assert b"to='someone@localhost'" in head  # RFC 6120 §4.7.2: SHOULD echo the 'from'
    s.close()


async def test_header_to_is_escaped_when_echoed(harness: Harness) -> None:
    s = await RawStream.open(harness.port)
    s.send("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
           "to='localhost' from=\"a'b&amp;c@localhost\" version='1.0'>")
    out = await s.read_until(b"</stream:features>")
    assert b"<stream:features" in out
    assert b"to='a&apos;b&amp;c@localhost'" in out
    s.close()


async def test_features_before_tls(harness: Harness) -> None:
    s = await RawStream.open(harness.port)
    feats = await s.header()
    assert f"<starttls xmlns='{TLS}'><required/></starttls>".encode() in feats
    assert b"<mechanisms" not in feats and mechanisms(feats) == []
    assert b"sasl-channel-binding" not in feats
    assert b"<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'" not in feats
    s.close()


async def test_features_after_starttls(harness: Harness) -> None:
    s = await tls_stream(harness)
    feats = await s.header()
    assert b"starttls" not in feats
    assert mechanisms(feats) == MECHS
    assert re.search(rb"<sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'>"
                     rb"<channel-binding type='tls-exporter'/>"
                     rb"<channel-binding type='tls-server-end-point'/></sasl-channel-binding>",
                     feats), feats
    assert b"<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'" not in feats
    s.close()


async def test_features_on_direct_tls(harness: Harness) -> None:
    assert harness.node is not None
    s = await RawStream.open(harness.node.direct_tls_port, tls=True)
    feats = await s.header()
    assert b"starttls" not in feats
    assert mechanisms(feats) == MECHS
    assert b"<channel-binding type='tls-server-end-point'/>" in feats
    s.close()


async def test_features_after_authentication(harness: Harness) -> None:
    await harness.user("alice")
    s = await tls_stream(harness)
    await s.header()
    s.send(plain_auth("alice"))
    assert b"<success" in await s.read_until(b"success>")
    feats = await s.header()
    assert f"<bind xmlns='{BIND}'/>".encode() in feats
    assert b"<mechanisms" not in feats and b"starttls" not in feats
    s.close()


async def test_plain_tcp_header_without_version_is_refused(harness: Harness) -> None:
    s = await RawStream.open(harness.port)
    s.send("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
           "to='localhost'>")
    out = await s.read_to_close()
    assert b"<stream:error><unsupported-version" in out


# ---- STARTTLS ------------------------------------------------------------------------------


async def test_starttls_then_login_with_slixmpp(harness: Harness) -> None:
    jid = await harness.user("bob")
    c = await harness.client(jid + "/tcp")
    assert str(c.boundjid) == jid + "/tcp"


async def test_direct_tls_login_with_slixmpp(harness: Harness) -> None:
    jid = await harness.user("bob")
    c = await harness.client(jid + "/tls", direct_tls=True)
    assert str(c.boundjid) == jid + "/tls"
    other = await harness.logged_in("carol")
    other.send_message(mto=jid + "/tls", mbody="over direct TLS", mtype="chat")
    assert (await c.next_message())["body"] == "over direct TLS"


async def test_starttls_on_a_tls_connection_is_refused(harness: Harness) -> None:
    assert harness.node is not None
    s = await RawStream.open(harness.node.direct_tls_port, tls=True)
    await s.header()
    s.send(f"<starttls xmlns='{TLS}'/>")
    out = await s.read_to_close()
    assert b"<proceed" not in out and b"<stream:error>" in out


async def test_plaintext_pipelined_after_starttls_is_not_processed(harness: Harness) -> None:
    """STARTTLS command injection (cf. CVE-2011-0411): bytes sent in the clear after <starttls/>
    must never be handled as if they had come over TLS."""
    s = await RawStream.open(harness.port)
    await s.header()
    s.send(f"<starttls xmlns='{TLS}'/>"
           "<iq type='get' id='injected'><query xmlns='jabber:iq:register'/></iq>")
    got = await s.read_until(b"<proceed")
    assert b"proceed" in got
    try:
        await s.read_until(b">")
        await s.writer.start_tls(insecure_context())
    except (OSError, ConnectionError, asyncio.IncompleteReadError):
        return  # the server dropped the tampered connection: fine
    s.send("<stream:stream xmlns='jabber:client' "
           "xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>")
    try:
        out = await s.read_until(b"</stream:features>", timeout=3)
    except (OSError, ConnectionError):
        out = s.buffer
    assert b"injected" not in out, out
    s.close()


async def test_tls_handshake_garbage_closes_the_connection(harness: Harness) -> None:
    s = await RawStream.open(harness.port)
    await s.header()
    s.send(f"<starttls xmlns='{TLS}'/>")
    await s.read_until(b"<proceed")
    await s.read_until(b">")
    s.send(b"this is not a TLS ClientHello\r\n" * 10)
    out = await s.read_to_close(timeout=5)
    assert b"<stream:" not in out  # closed without answering in the clear


# ---- stream restart and close --------------------------------------------------------------


async def test_client_closes_the_stream(harness: Harness) -> None:
    s = await authed_stream(harness, "dora")
    assert harness.node is not None
    assert len(harness.node.sessions.all()) == 1
    s.send("</stream:stream>")
    out = await s.read_to_close()
    assert out.endswith(b"</stream:stream>")
    for _ in range(50):
        if not harness.node.sessions.all():
            break
        await asyncio.sleep(0.02)
    assert harness.node.sessions.all() == []


async def test_client_close_before_auth(harness: Harness) -> None:
    s = await RawStream.open(harness.port)
    await s.header()
    s.send("</stream:stream>")
    out = await s.read_to_close()
    assert out.endswith(b"</stream:stream>") and b"<stream:error>" not in out


async def test_whitespace_keepalives_are_ignored(harness: Harness) -> None:
    s = await authed_stream(harness, "dora")
    s.send(" \n \t ")
    s.send("<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
    out = await s.read_element(b"id='p'")
    assert b"type='result'" in out
    s.close()


# ---- resource binding ----------------------------------------------------------------------


async def _bind(s: RawStream, resource: str | None, iq_id: str = "b") -> bytes:
    inner = f"<resource>{resource}</resource>" if resource is not None else ""
    s.send(f"<iq type='set' id='{iq_id}'><bind xmlns='{BIND}'>{inner}</bind></iq>")
    return await s.read_element(f"id='{iq_id}'".encode())


async def _authed_unbound(harness: Harness, user: str) -> RawStream:
    s = await tls_stream(harness)
    await s.header()
    s.send(plain_auth(user))
    await s.read_until(b"success>")
    await s.header()
    return s


async def test_server_chooses_the_resource_when_none_is_asked(harness: Harness) -> None:
    await harness.user("erin")
    s = await _authed_unbound(harness, "erin")
    out = await _bind(s, None)
    m = re.search(rb"<jid>erin@localhost/([^<]+)</jid>", out)
    assert m is not None and len(m.group(1)) >= 8, out
    s2 = await _authed_unbound(harness, "erin")
    out2 = await _bind(s2, "")
    m2 = re.search(rb"<jid>erin@localhost/([^<]+)</jid>", out2)
    assert m2 is not None and m2.group(1) != m.group(1)
    s.close()
    s2.close()
    # and through slixmpp
    c = await harness.client("erin@localhost")
    assert c.boundjid.resource and str(c.boundjid).startswith("erin@localhost/")


async def test_requested_resource_is_bound(harness: Harness) -> None:
    await harness.user("erin")
    s = await _authed_unbound(harness, "erin")
    out = await _bind(s, "laptop")
    assert b"type='result'" in out and b"<jid>erin@localhost/laptop</jid>" in out
    s.close()


async def test_invalid_resource_is_a_bad_request(harness: Harness) -> None:
    await harness.user("erin")
    s = await _authed_unbound(harness, "erin")
    out = await _bind(s, "x" * 1100)  # longer than 1023 bytes (RFC 7622 §3.4)
    assert b"type='error'" in out and b"<bad-request" in out
    out = await _bind(s, "fine", "b2")  # the stream goes on
    assert b"<jid>erin@localhost/fine</jid>" in out
    s.close()


async def test_same_resource_twice_raw(harness: Harness) -> None:
    await harness.user("fred")
    first = await _authed_unbound(harness, "fred")
    assert b"type='result'" in await _bind(first, "desk")
    second = await _authed_unbound(harness, "fred")
    assert b"<jid>fred@localhost/desk</jid>" in await _bind(second, "desk")
    out = await first.read_to_close()
    assert b"<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in out
    assert out.endswith(b"</stream:stream>")
    second.send("<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert b"type='result'" in await second.read_element(b"id='p'")
    assert harness.node is not None
    assert len(harness.node.sessions.all()) == 1
    second.close()


async def test_same_resource_twice_with_slixmpp(harness: Harness) -> None:
    jid = await harness.user("hank")
    first = await harness.client(jid + "/phone")
    second = await harness.client(jid + "/phone")
    await asyncio.wait_for(first.gone.wait(), 5)
    assert any(e["condition"] == "conflict" for e in first.stream_errors)
    other = await harness.logged_in("ivy")
    other.send_message(mto=jid + "/phone", mbody="still there?", mtype="chat")
    assert (await second.next_message())["body"] == "still there?"


async def test_two_resources_both_work(harness: Harness) -> None:
    jid = await harness.user("jack")
    a = await harness.client(jid + "/a")
    b = await harness.client(jid + "/b")
    other = await harness.logged_in("kim")
    other.send_message(mto=jid + "/a", mbody="to a", mtype="chat")
    other.send_message(mto=jid + "/b", mbody="to b", mtype="chat")
    assert (await a.next_message())["body"] == "to a"
    assert (await b.next_message())["body"] == "to b"


async def test_session_establishment_is_accepted(harness: Harness) -> None:
    await harness.user("liz")
    s = await _authed_unbound(harness, "liz")
    await _bind(s, "r")
    s.send("<iq type='set' id='sess'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>")
    out = await s.read_element(b"id='sess'")
    assert b"type='result'" in out
    s.close()


async def test_stanza_after_auth_before_bind_is_refused(harness: Harness) -> None:
    await harness.user("liz")
    s = await _authed_unbound(harness, "liz")
    s.send("<message to='liz@localhost'><body>x</body></message>")
    out = await s.read_to_close()
    assert b"<stream:error><not-authorized" in out


async def test_wrong_password_client_is_not_bound(harness: Harness) -> None:
    jid = await harness.user("mia")
    c = Client(jid + "/x", PASSWORD + "-wrong")
    harness.clients.append(c)
    assert not await c.login(harness.port)
    assert harness.node is not None
    assert harness.node.sessions.all() == []
