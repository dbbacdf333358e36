"""Bad input on a client stream, sent as exact bytes: each gets the RFC 6120 stream error (and the
stream is closed) or stanza error (and the stream goes on)."""

from __future__ import annotations

import re

import pytest

from tests.integration.conftest import Harness
from tests.integration.rawstream import SASL, RawStream, authed_stream, b64, tls_stream

STREAMS = b"urn:ietf:params:xml:ns:xmpp-streams"
STANZAS = b"urn:ietf:params:xml:ns:xmpp-stanzas"
OPEN = ("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
        "to='localhost' version='1.0'>")


def stream_error(out: bytes) -> bytes:
    """The condition of the stream error in ``out``; also checks its form and that the stream
    was closed after it."""
    m = re.search(rb"<stream:error><([a-z-]+) xmlns='" + STREAMS + rb"'/>", out)
    assert m is not None, out
    assert out.endswith(b"</stream:stream>"), out
    return m.group(1)


def headed_error(out: bytes) -> bytes:
    """Like :func:`stream_error` for an error answering the client's first bytes: our stream
    header must precede it (RFC 6120 §4.9.1.1)."""
    assert re.match(rb"(<\?xml[^>]*\?>)?<stream:stream [^>]*>", out), out
    return stream_error(out)


def stanza_error(out: bytes) -> bytes:
    m = re.search(rb"<error type='[a-z]+'><([a-z-]+) xmlns='" + STANZAS + rb"'/>", out)
    assert m is not None, out
    return m.group(1)


async def bad_bytes(harness: Harness, data: bytes, *, stage: str) -> bytes:
    """Send ``data`` at ``stage`` (``open``: as the first bytes; ``pre``: after the header;
    ``tls``: after STARTTLS and a new header; ``bound``: after login) and read to the close."""
    if stage == "open":
        s = await RawStream.open(harness.port)
    elif stage == "pre":
        s = await RawStream.open(harness.port)
        await s.header()
    elif stage == "tls":
        s = await tls_stream(harness)
        await s.header()
    else:
        s = await authed_stream(harness, "mallory")
    s.send(data)
    out = await s.read_to_close()
    s.close()
    return out


async def ping_ok(s: RawStream, iq_id: str = "alive") -> None:
    """The stream still works: a ping to the server gets its result."""
    s.send(f"<iq type='get' id='{iq_id}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
    out = await s.read_element(f"id='{iq_id}'".encode())
    assert b"type='result'" in out, out


# ---- XML that is not XMPP ------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["pre", "tls", "bound"])
@pytest.mark.parametrize("data", [
    b"<message><body>oops</message>",
    b"<message to='a@localhost'><body>x</body></message></oops>",
    b"<message to='a@localhost' to='b@localhost'/>",
    b"<message a='1' b=2/>",
    b"<<>>",
])
async def test_malformed_xml_is_not_well_formed(harness: Harness, data: bytes, stage: str) -> None:
    assert stream_error(await bad_bytes(harness, data, stage=stage)) == b"not-well-formed"


async def test_malformed_stream_header(harness: Harness) -> None:
    out = await bad_bytes(harness, b"<stream:stream xmlns='jabber:client' to='localhost'<<",
                          stage="open")
    assert headed_error(out) in (b"not-well-formed", b"bad-namespace-prefix")


@pytest.mark.parametrize("stage", ["pre", "bound"])
@pytest.mark.parametrize("data", [
    b"<!-- a comment -->",
    b"<message to='a@localhost'><body>x</body><!-- inside --></message>",
    b"<?target some instruction?>",
    b"<message to='a@localhost'><?pi inside?></message>",
    b"<message to='a@localhost'><body>&custom;</body></message>",
    b"<message to='a@localhost' id='&custom;'/>",
])
async def test_restricted_xml(harness: Harness, data: bytes, stage: str) -> None:
    assert stream_error(await bad_bytes(harness, data, stage=stage)) == b"restricted-xml"


async def test_dtd_inside_the_stream(harness: Harness) -> None:
    # not even well-formed XML there; either condition tells the client what it did wrong
    out = await bad_bytes(harness, b"<!DOCTYPE message [<!ENTITY x 'y'>]>", stage="bound")
    assert stream_error(out) in (b"restricted-xml", b"not-well-formed")


@pytest.mark.parametrize("prolog", [
    b"<!DOCTYPE stream:stream>",
    b"<!DOCTYPE stream [<!ENTITY lol 'lol'><!ENTITY lol2 '&lol;&lol;&lol;'>]>",
    b"<!-- hello -->",
    b"<?xml-stylesheet href='x'?>",
])
async def test_restricted_xml_before_the_stream_header(harness: Harness, prolog: bytes) -> None:
    out = await bad_bytes(harness, b"<?xml version='1.0'?>" + prolog + OPEN.encode(),
                          stage="open")
    assert headed_error(out) == b"restricted-xml"


async def test_predefined_entities_and_character_references_are_fine(harness: Harness) -> None:
    victim = await harness.logged_in("bob")
    s = await authed_stream(harness, "mallory")
    s.send("<message to='bob@localhost' type='chat'><body>&lt;3 &amp; &#x263A; &#65;"
           "&quot;&apos;&gt;</body></message>")
    msg = await victim.next_message()
    assert msg["body"] == "<3 & \u263a A\"'>"
    await ping_ok(s)
    s.close()


async def test_non_utf8_encoding_is_refused(harness: Harness) -> None:
    out = await bad_bytes(harness, b"<?xml version='1.0' encoding='ISO-8859-1'?>" +
                          OPEN.encode(), stage="open")
    assert headed_error(out) == b"unsupported-encoding"


async def test_invalid_utf8_is_an_error(harness: Harness) -> None:
    out = await bad_bytes(harness, b"<message to='a@localhost'><body>\xff\xfe</body></message>",
                          stage="bound")
    assert stream_error(out) in (b"not-well-formed", b"unsupported-encoding")


async def test_undeclared_prefix(harness: Harness) -> None:
    out = await bad_bytes(harness, b"<message><x:body/></message>", stage="bound")
    assert stream_error(out) == b"bad-namespace-prefix"


# ---- limits -------------------------------------------------------------------------------


@pytest.fixture
async def small(harness: Harness) -> Harness:
    await harness.stop_node()
    await harness.start(c2s_extra="max_stanza_size = 10000\nmax_depth = 16")
    return harness


@pytest.mark.parametrize("shape", ["text", "attribute", "children", "chunked"])
async def test_stanza_over_max_size_is_a_policy_violation(small: Harness, shape: str) -> None:
    s = await authed_stream(small, "mallory")
    if shape == "text":
        s.send(b"<message to='x@localhost'><body>" + b"a" * 20000 + b"</body></message>")
    elif shape == "attribute":
        s.send(b"<message to='x@localhost' id='" + b"a" * 20000 + b"'/>")
    elif shape == "children":
        s.send(b"<message to='x@localhost'>" + b"<x xmlns='urn:x'/>" * 2000 + b"</message>")
    else:  # many small writes that never finish the stanza
        s.send(b"<message to='x@localhost'><body>")
        for _ in range(30):
            s.send(b"b" * 1000)
            await s.writer.drain()
    out = await s.read_to_close()
    assert stream_error(out) == b"policy-violation"


async def test_stanzas_under_the_limit_pass(small: Harness) -> None:
    bob = await small.logged_in("bob")
    s = await authed_stream(small, "mallory")
    body = "b" * 8000
    for _ in range(5):  # together far over the limit, each under it
        s.send(f"<message to='bob@localhost' type='chat'><body>{body}</body></message>")
    for _ in range(5):
        assert (await bob.next_message())["body"] == body
    await ping_ok(s)
    s.close()


async def test_oversized_before_auth(small: Harness) -> None:
    out = await bad_bytes(small, b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' "
                          b"mechanism='PLAIN'>" + b"A" * 20000 + b"</auth>", stage="tls")
    assert stream_error(out) == b"policy-violation"


async def test_too_deep_is_a_policy_violation(small: Harness) -> None:
    data = b"<message to='x@localhost'>" + b"<a xmlns='urn:x'>" * 20 + b"</a>" * 20 + b"</message>"
    out = await bad_bytes(small, data, stage="bound")
    assert stream_error(out) == b"policy-violation"


# ---- stream headers -----------------------------------------------------------------------


@pytest.mark.parametrize("to", ["unknown.example", "localhost.example", "user@localhost"])
async def test_unknown_host(harness: Harness, to: str) -> None:
    s = await RawStream.open(harness.port)
    s.send(OPEN.replace("to='localhost'", f"to='{to}'"))
    out = await s.read_to_close()
    assert headed_error(out) == b"host-unknown"
    assert b"<stream:features" not in out


async def test_host_is_case_insensitive(harness: Harness) -> None:
    s = await RawStream.open(harness.port)
    feats = await s.header(to="LocalHost")
    assert b"<stream:features>" in feats
    s.close()


@pytest.mark.parametrize("header", [
    "<stream:stream xmlns='jabber:client' xmlns:stream='urn:not-streams' to='localhost' "
    "version='1.0'>",
    "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' "
    "to='localhost' version='1.0'>",
    "<stream:stream xmlns='urn:other' xmlns:stream='http://etherx.jabber.org/streams' "
    "to='localhost' version='1.0'>",
    "<stream xmlns='jabber:client' to='localhost' version='1.0'>",
])
async def test_wrong_stream_namespace(harness: Harness, header: str) -> None:
    out = await bad_bytes(harness, header.encode(), stage="open")
    assert headed_error(out) == b"invalid-namespace"


async def test_wrong_namespace_on_the_restarted_stream(harness: Harness) -> None:
    s = await tls_stream(harness)
    s.send("<stream:stream xmlns='jabber:client' xmlns:stream='urn:nope' to='localhost' "
           "version='1.0'>")
    out = await s.read_to_close()
    assert stream_error(out) == b"invalid-namespace"


# ---- timeouts -----------------------------------------------------------------------------


@pytest.fixture
async def quick(harness: Harness) -> Harness:
    await harness.stop_node()
    await harness.start(c2s_extra="auth_timeout = 1.0")
    return harness


@pytest.mark.parametrize("stage", ["nothing", "header", "tls", "authenticated"])
async def test_silent_unauthenticated_connection_times_out(quick: Harness, stage: str) -> None:
    s = await RawStream.open(quick.port)
    if stage == "header":
        await s.header()
    elif stage == "tls":
        await s.header()
        await s.starttls()
        await s.header()
    elif stage == "authenticated":  # authenticated but never binds a resource
        await quick.user("slow")
        await s.header()
        await s.starttls()
        await s.header()
        s.send(f"<auth xmlns='{SASL}' mechanism='PLAIN'>"
               f"{b64(chr(0) + 'slow' + chr(0) + 'secret-password')}</auth>")
        await s.read_until(b"success>")
        await s.header()
    await quick.clock.advance(0.7)  # not yet
    with pytest.raises(TimeoutError):
        await s.read_until(b"connection-timeout", timeout=0.1)
    await quick.clock.advance(0.4)  # past the deadline (1 s after the last read)
    out = await s.read_to_close(timeout=6)
    assert stream_error(out) == b"connection-timeout"


async def test_bound_connection_does_not_time_out(quick: Harness) -> None:
    s = await authed_stream(quick, "patient")
    await quick.clock.advance(1.6)  # past the negotiation deadline
    await ping_ok(s)
    s.close()


# ---- before authentication ----------------------------------------------------------------


@pytest.mark.parametrize("stage", ["pre", "tls"])
@pytest.mark.parametrize("data", [
    b"<message to='a@localhost'><body>hi</body></message>",
    b"<presence/>",
    b"<iq type='get' id='1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
    b"<iq type='get' id='2'><query xmlns='jabber:iq:roster'/></iq>",
])
async def test_stanza_before_authentication_is_not_authorized(harness: Harness, data: bytes,
                                                              stage: str) -> None:
    assert stream_error(await bad_bytes(harness, data, stage=stage)) == b"not-authorized"


async def test_stanza_before_the_stream_header(harness: Harness) -> None:
    out = await bad_bytes(harness, b"<message to='a@localhost'><body>hi</body></message>",
                          stage="open")
    assert headed_error(out) in (b"invalid-namespace", b"not-authorized", b"not-well-formed")


# ---- unknown elements ---------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["tls", "bound"])
@pytest.mark.parametrize("data", [
    b"<foo xmlns='jabber:client'/>",
    b"<foo/>",
    b"<x:message xmlns:x='urn:other'/>",
    b"<enable xmlns='urn:example:unknown'/>",
])
async def test_unknown_top_level_element(harness: Harness, data: bytes, stage: str) -> None:
    out = await bad_bytes(harness, data, stage=stage)
    assert stream_error(out) == b"unsupported-stanza-type"


# ---- stanza errors: the stream goes on ----------------------------------------------------


def from_of(out: bytes) -> bytes | None:
    """The ``from`` of the top-level element in ``out`` (None: it has none)."""
    m = re.match(rb"<[a-z]+((?: [a-z]+='[^']*')*)", out)
    assert m is not None, out
    attr = re.search(rb" from='([^']*)'", m.group(1))
    return None if attr is None else attr.group(1)


#: (to of the request, the from its error may have: RFC 6120 §8.1.2.1 — an IQ with no to, or
#: to the account's bare JID, is answered on the account's behalf: no from, or the bare JID)
IQ_ADDRESSES = [
    (None, {None, b"mallory@localhost"}),
    ("localhost", {b"localhost"}),
    ("mallory@localhost", {None, b"mallory@localhost"}),
    ("bob@localhost", {b"bob@localhost"}),
    ("mallory@localhost/nope", {b"mallory@localhost/nope"}),
    ("bob@localhost/nope", {b"bob@localhost/nope"}),
]


@pytest.mark.parametrize(("to", "froms"), IQ_ADDRESSES)
async def test_unknown_iq_payload_is_service_unavailable(harness: Harness, to: str | None,
                                                         froms: set[bytes | None]) -> None:
    await harness.user("bob")
    s = await authed_stream(harness, "mallory")
    to_attr = f" to='{to}'" if to else ""
    s.send(f"<iq type='get' id='u1'{to_attr}><query xmlns='urn:example:unknown'/></iq>")
    out = await s.read_element(b"id='u1'")
    assert b"type='error'" in out and stanza_error(out) == b"service-unavailable"
    assert from_of(out) in froms, out
    s.send(f"<iq type='set' id='u2'{to_attr}><query xmlns='urn:example:unknown'/></iq>")
    out = await s.read_element(b"id='u2'")
    assert stanza_error(out) == b"service-unavailable"
    assert from_of(out) in froms, out
    # two payloads, and none: bad-request, from the same address
    s.send(f"<iq type='get' id='u3'{to_attr}><a xmlns='urn:example:a'/><b xmlns='urn:x:b'/>"
           "</iq>")
    out = await s.read_element(b"id='u3'")
    assert stanza_error(out) in (b"bad-request", b"service-unavailable")
    assert from_of(out) in froms, out
    await ping_ok(s)
    s.close()


async def test_iq_without_id_is_a_bad_request(harness: Harness) -> None:
    s = await authed_stream(harness, "mallory")
    s.send("<iq type='get' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
    out = await s.read_until(b"</iq>")
    assert b"type='error'" in out and stanza_error(out) == b"bad-request"
    await ping_ok(s)
    s.close()


@pytest.mark.parametrize("iq", [
    "<iq type='get' id='bad' to='localhost'/>",
    "<iq type='get' id='bad' to='localhost'><ping xmlns='urn:xmpp:ping'/>"
    "<ping xmlns='urn:xmpp:ping'/></iq>",
    "<iq type='fetch' id='bad' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
    "<iq id='bad' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
])
async def test_malformed_iq_is_a_bad_request(harness: Harness, iq: str) -> None:
    s = await authed_stream(harness, "mallory")
    s.send(iq)
    out = await s.read_element(b"id='bad'")
    assert b"type='error'" in out and stanza_error(out) == b"bad-request"
    await ping_ok(s)
    s.close()


async def test_results_and_errors_are_never_answered(harness: Harness) -> None:
    s = await authed_stream(harness, "mallory")
    s.send("<iq type='result' id='stray' to='localhost'/>")
    s.send("<iq type='error' id='stray2' to='localhost'><error type='cancel'>"
           "<service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>")
    s.send("<message type='error' id='stray3' to='nobody@localhost'/>")
    s.send("<message type='error' id='stray4' to='x@remote.example'/>")
    s.send("<iq type='get' id='last' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
    out = await s.read_element(b"id='last'")
    assert b"stray" not in out, out
    s.close()


async def test_forged_from_is_replaced_by_the_full_jid(harness: Harness) -> None:
    bob = await harness.logged_in("bob")
    s = await authed_stream(harness, "mallory")
    s.send("<message to='bob@localhost' from='admin@localhost/x' type='chat'>"
           "<body>trust me</body></message>")
    msg = await bob.next_message()
    assert str(msg["from"]) == "mallory@localhost/raw"
    assert msg["body"] == "trust me"
    s.send("<message to='bob@localhost/test' from='bob@localhost' type='chat'>"
           "<body>it is me</body></message>")
    msg = await bob.next_message()
    assert str(msg["from"]) == "mallory@localhost/raw"


async def test_forged_from_between_raw_streams(harness: Harness) -> None:
    victim = await authed_stream(harness, "victim")
    s = await authed_stream(harness, "mallory")
    s.send("<message to='victim@localhost/raw' from='localhost' id='f1'><body>x</body>"
           "</message>")
    out = await victim.read_element(b"id='f1'")
    assert b"from='mallory@localhost/raw'" in out and b"from='localhost'" not in out
    victim.close()
    s.close()


async def test_message_to_a_remote_domain(harness: Harness) -> None:
    s = await authed_stream(harness, "mallory")
    s.send("<message to='someone@remote.example' id='r1' type='chat'><body>x</body></message>")
    out = await s.read_element(b"id='r1'")
    assert b"type='error'" in out and stanza_error(out) == b"remote-server-not-found"
    assert b"from='someone@remote.example'" in out
    await ping_ok(s)
    s.close()


async def test_message_to_a_nonexistent_local_user(harness: Harness) -> None:
    s = await authed_stream(harness, "mallory")
    s.send("<message to='nobody@localhost' id='r2' type='chat'><body>x</body></message>")
    out = await s.read_element(b"id='r2'")
    assert b"type='error'" in out and stanza_error(out) == b"service-unavailable"
    await ping_ok(s)
    s.close()


@pytest.mark.parametrize(("to", "sent"), [
    ("a b@localhost", None), ("@localhost", None), ("x@", None), ("x@localhost/", None),
    ("x@[bad", None),
    # room nicks that are no resourcepart (RFC 7622): empty, a control character
    ("coven@conference.localhost/", None),
    ("coven@conference.localhost/a\u0085b", "coven@conference.localhost/a&#x85;b"),
])
@pytest.mark.parametrize("stanza", [
    "<message to='{to}' id='j1' type='chat'><body>x</body></message>",
    "<presence to='{to}' id='j1'><x xmlns='http://jabber.org/protocol/muc'/></presence>",
    "<iq to='{to}' id='j1' type='get'><ping xmlns='urn:xmpp:ping'/></iq>",
])
async def test_malformed_to_is_jid_malformed(harness: Harness, to: str, sent: str | None,
                                             stanza: str) -> None:
    """The error comes from the address the stanza was sent to (RFC 6120 §8.3.3.8), so that
    the client can match it (a join, an IQ) to its request."""
    s = await authed_stream(harness, "mallory")
    s.send(stanza.format(to=sent or to))
    out = await s.read_element(b"id='j1'")
    assert stanza_error(out) == b"jid-malformed"
    assert from_of(out) == to.encode(), out
    await ping_ok(s)
    s.close()
