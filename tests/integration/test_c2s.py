"""RFC 6120 client streams over real sockets: TLS, SASL, binding, and every kind of bad input."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import re
import time

import pytest

from hongyan.xmpp.sasl import tls_server_end_point
from tests.integration.clients import Client
from tests.integration.conftest import PASSWORD, Harness
from tests.integration.rawstream import SASL, RawStream, authed_stream, b64, tls_stream


async def test_features_before_and_after_tls(harness: Harness) -> None:
    s = await RawStream.open(harness.port)
    feats = await s.header()
    assert b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>" in feats
    assert b"mechanism" not in feats
    await s.starttls()
    feats = await s.header()
    mechs = re.findall(rb"<mechanism>([^<]+)</mechanism>", feats.split(b"</mechanisms>")[0])
    assert mechs == [b"SCRAM-SHA-256-PLUS", b"SCRAM-SHA-256", b"SCRAM-SHA-1-PLUS",
                     b"SCRAM-SHA-1", b"PLAIN"]
    assert b"<channel-binding type='tls-server-end-point'/>" in feats
    assert b"<register xmlns='http://jabber.org/features/iq-register'/>" in feats
    s.close()


@pytest.mark.parametrize("mech", ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"])
async def test_login_with_each_mechanism(harness: Harness, mech: str) -> None:
    jid = await harness.user("alice")
    c = Client(jid + "/m", PASSWORD)
    c.plugin["feature_mechanisms"].use_mech = mech
    harness.clients.append(c)
    assert await c.login(harness.port)
    assert c.plugin["feature_mechanisms"].mech.name == mech


async def scram_plus(harness: Harness, user: str, password: str, cb_override: bytes | None,
                     flag: str = "p=tls-server-end-point") -> bytes:
    """A hand-written SCRAM-SHA-256-PLUS client; returns the server's final answer."""
    s = await tls_stream(harness)
    await s.header()
    ssl_obj = s.writer.get_extra_info("ssl_object")
    cb = tls_server_end_point(ssl_obj.getpeercert(binary_form=True))
    if cb_override is not None:
        cb = cb_override
    nonce = b64(os.urandom(12))
    gs2 = f"{flag},,"
    first_bare = f"n={user},r={nonce}"
    mech = "SCRAM-SHA-256-PLUS" if flag.startswith("p=") else "SCRAM-SHA-256"
    s.send(f"<auth xmlns='{SASL}' mechanism='{mech}'>{b64(gs2 + first_bare)}</auth>")
    answer = await s.read_until(b">", 5)
    answer += await s.read_until(b">", 5)
    m = re.search(rb"<challenge xmlns='[^']+'>([^<]+)</challenge>", answer)
    if m is None:
        s.close()
        return answer
    server_first = base64.b64decode(m.group(1)).decode()
    attrs = dict(p.split("=", 1) for p in server_first.split(","))
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(attrs["s"]),
                                 int(attrs["i"]))
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored = hashlib.sha256(client_key).digest()
    cbind = gs2.encode() + (cb if flag.startswith("p=") else b"")
    without = f"c={b64(cbind)},r={attrs['r']}"
    auth_msg = f"{first_bare},{server_first},{without}".encode()
    proof = bytes(a ^ b for a, b in zip(client_key, hmac.new(stored, auth_msg, "sha256").digest(),
                                        strict=True))
    s.send(f"<response xmlns='{SASL}'>{b64(without + ',p=' + b64(proof))}</response>")
    out = await s.read_until(b"</success>" if cb_override is None else b"</failure>", 5)
    s.close()
    return out


async def test_scram_plus_with_channel_binding(harness: Harness) -> None:
    await harness.user("carol")
    assert b"<success" in await scram_plus(harness, "carol", PASSWORD, None)


async def test_scram_plus_with_wrong_binding_fails(harness: Harness) -> None:
    await harness.user("carol")
    out = await scram_plus(harness, "carol", PASSWORD, b"\x00" * 32)
    assert b"<not-authorized/>" in out


async def test_downgrade_flag_is_refused(harness: Harness) -> None:
    await harness.user("carol")
    out = await scram_plus(harness, "carol", PASSWORD, None, flag="y")
    assert b"<failure" in out and b"<not-authorized/>" in out


async def test_no_auth_before_tls(harness: Harness) -> None:
    s = await RawStream.open(harness.port)
    await s.header()
    s.send(f"<auth xmlns='{SASL}' mechanism='PLAIN'>{b64(chr(0) + 'a' + chr(0) + 'b')}</auth>")
    out = await s.read_until(b"</failure>")
    assert b"<encryption-required/>" in out
    s.close()


async def test_plaintext_auth_when_configured(harness: Harness) -> None:
    await harness.stop_node()
    await harness.start(c2s_extra="require_encryption = false\nallow_plaintext_auth = true")
    await harness.user("dave")
    s = await RawStream.open(harness.port)
    feats = await s.header()
    assert b"<mechanism>PLAIN</mechanism>" in feats
    assert b"PLUS" not in feats
    s.send(f"<auth xmlns='{SASL}' mechanism='PLAIN'>"
           f"{b64(chr(0) + 'dave' + chr(0) + PASSWORD)}</auth>")
    assert b"<success" in await s.read_until(b"success")
    s.close()


async def _plain_failure_delay(harness: Harness) -> float:
    s = await tls_stream(harness)
    await s.header()
    t0 = time.monotonic()
    s.send(f"<auth xmlns='{SASL}' mechanism='PLAIN'>{b64(chr(0) + 'eve' + chr(0) + 'bad')}</auth>")
    out = await s.read_until(b"</failure>")
    assert b"<not-authorized/>" in out
    s.close()
    return time.monotonic() - t0


async def test_failures_are_delayed_more_each_time(harness: Harness) -> None:
    await harness.user("eve")
    d1 = await _plain_failure_delay(harness)
    d2 = await _plain_failure_delay(harness)
    d3 = await _plain_failure_delay(harness)
    assert d1 >= 0.04 and d2 >= 0.09 and d3 >= 0.18  # 0.05, 0.1, 0.2 s (config)
    assert d3 > d1


async def test_unknown_user_and_wrong_password_look_alike(harness: Harness) -> None:
    await harness.user("frank")
    for user in ("frank", "nobody"):
        c = Client(f"{user}@localhost/x", "wrong-password")
        harness.clients.append(c)
        assert not await c.login(harness.port)
        assert c.auth_failures, user
        await c.close()


async def test_server_chooses_a_resource(harness: Harness) -> None:
    jid = await harness.user("gina")
    c = await harness.client(jid)
    assert c.boundjid.resource
    assert str(c.boundjid).startswith("gina@localhost/")


async def test_second_login_with_same_resource_replaces_the_first(harness: Harness) -> None:
    jid = await harness.user("hank")
    first = await harness.client(jid + "/phone")
    second = await harness.client(jid + "/phone")
    await asyncio.wait_for(first.gone.wait(), 5)
    assert any(e["condition"] == "conflict" for e in first.stream_errors)
    other = await harness.logged_in("ivy")
    other.send_message(mto=jid + "/phone", mbody="still there?", mtype="chat")
    assert (await second.next_message())["body"] == "still there?"


# ---- bad input: exact bytes, the RFC's stream error ---------------------------------------


@pytest.mark.parametrize(("data", "condition"), [
    (b"<message><body>oops</message>", b"not-well-formed"),
    (b"<!-- a comment -->", b"restricted-xml"),
    (b"<?target instruction?>", b"restricted-xml"),
    (b"<message to='a@localhost'><body>&custom;</body></message>", b"restricted-xml"),
    (b"<foo xmlns='jabber:client'/>", b"unsupported-stanza-type"),
    (b"<x:message xmlns:x='urn:other'/>", b"unsupported-stanza-type"),
    (b"<message><undeclared:body/></message>", b"bad-namespace-prefix"),
])
async def test_bad_xml_after_login(harness: Harness, data: bytes, condition: bytes) -> None:
    s = await authed_stream(harness, "mallory")
    s.send(data)
    out = await s.read_to_close()
    assert b"<stream:error><" + condition in out
    assert out.endswith(b"</stream:stream>")


async def test_dtd_in_header_is_restricted(harness: Harness) -> None:
    s = await RawStream.open(harness.port)
    s.send("<?xml version='1.0'?><!DOCTYPE stream [<!ENTITY x 'y'>]><stream:stream "
           "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
           "to='localhost' version='1.0'>")
    out = await s.read_to_close()
    assert b"<restricted-xml" in out


async def test_oversized_stanza_is_a_policy_violation(harness: Harness) -> None:
    await harness.stop_node()
    await harness.start(c2s_extra="max_stanza_size = 10000")
    s = await authed_stream(harness, "mallory")
    s.send(b"<message to='x@localhost'><body>" + b"a" * 20000 + b"</body></message>")
    out = await s.read_to_close()
    assert b"<policy-violation" in out


async def test_unknown_host(harness: Harness) -> None:
    s = await RawStream.open(harness.port)
    s.send("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
           "xmlns:stream='http://etherx.jabber.org/streams' to='elsewhere.example' "
           "version='1.0'>")
    out = await s.read_to_close()
    assert b"<stream:stream" in out and b"<host-unknown" in out


async def test_wrong_stream_namespace(harness: Harness) -> None:
    s = await RawStream.open(harness.port)
    s.send("<stream:stream xmlns='jabber:client' xmlns:stream='urn:not-streams' to='localhost'"
           " version='1.0'>")
    out = await s.read_to_close()
    assert b"<invalid-namespace" in out


async def test_silent_connection_times_out(harness: Harness) -> None:
    await harness.stop_node()
    await harness.start(c2s_extra="auth_timeout = 0.5")
    s = await RawStream.open(harness.port)
    await s.header()
    t0 = time.monotonic()
    out = await s.read_to_close(timeout=5)
    assert b"<connection-timeout" in out
    assert 0.3 < time.monotonic() - t0 < 3


async def test_stanza_before_auth_is_not_authorized(harness: Harness) -> None:
    s = await tls_stream(harness)
    await s.header()
    s.send("<message to='a@localhost'><body>hi</body></message>")
    out = await s.read_to_close()
    assert b"<not-authorized" in out


async def test_unknown_iq_gets_service_unavailable_and_the_stream_goes_on(
        harness: Harness) -> None:
    s = await authed_stream(harness, "mallory")
    s.send("<iq type='get' id='u1' to='localhost'><query xmlns='urn:example:unknown'/></iq>")
    out = await s.read_until(b"</iq>")
    assert b"type='error'" in out and b"<service-unavailable" in out
    s.send("<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
    out = await s.read_until(b"/>")
    assert b"id='p1'" in out and b"type='result'" in out


async def test_iq_without_id_is_a_bad_request(harness: Harness) -> None:
    s = await authed_stream(harness, "mallory")
    s.send("<iq type='get' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
    out = await s.read_until(b"</iq>")
    assert b"<bad-request" in out


async def test_forged_from_is_replaced(harness: Harness) -> None:
    bob = await harness.logged_in("bob")
    s = await authed_stream(harness, "mallory")
    s.send("<message to='bob@localhost' from='admin@localhost/x' type='chat'>"
           "<body>trust me</body></message>")
    msg = await bob.next_message()
    assert str(msg["from"]) == "mallory@localhost/raw"


async def test_message_to_remote_domain_and_unknown_user(harness: Harness) -> None:
    s = await authed_stream(harness, "mallory")
    s.send("<message to='someone@remote.example' id='r1'><body>x</body></message>")
    out = await s.read_until(b"</message>")
    assert b"<remote-server-not-found" in out
    s.send("<message to='nobody@localhost' id='r2' type='chat'><body>x</body></message>")
    out = await s.read_until(b"</message>")
    assert b"id='r2'" in out and b"<service-unavailable" in out


async def test_bad_to_is_jid_malformed(harness: Harness) -> None:
    s = await authed_stream(harness, "mallory")
    s.send("<message to='a b@localhost' id='j1'><body>x</body></message>")
    out = await s.read_until(b"</message>")
    assert b"<jid-malformed" in out


async def test_idle_sessions_release_their_parser(harness: Harness) -> None:
    await harness.stop_node()
    await harness.start(c2s_extra="idle_parser_release = 0.1")
    romeo = await harness.logged_in("romeo")
    juliet = await harness.logged_in("juliet")
    assert harness.node is not None
    await asyncio.sleep(0.5)
    sessions = harness.node.sessions.all()
    assert len(sessions) == 2 and all(s.stream.parser is None for s in sessions)
    romeo.send_message(mto="juliet@localhost", mbody="wake up", mtype="chat")
    assert (await juliet.next_message())["body"] == "wake up"
    juliet.send_message(mto="romeo@localhost", mbody="I am", mtype="chat")
    assert (await romeo.next_message())["body"] == "I am"
