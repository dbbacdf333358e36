"""The server-to-server role of the stream core (RFC 6120 §9) and dialback keys (XEP-0185),
with bytes alone."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from hongyan.xmpp import dialback
from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element
from hongyan.xmpp.errors import StreamError
from hongyan.xmpp.parser import StreamOpen
from hongyan.xmpp.stream import RFC7395, S2S, Parsers, Profile, Stream

OPEN = (b"<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
        b"xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' "
        b"from='b.test' to='a.test' version='1.0'>")


def s2s_stream() -> Stream:
    return Stream(Profile("a.test", Parsers(max_stanza_size=4096, max_depth=16), role=S2S,
                          domains={"a.test", "conference.a.test"}))


def test_the_header_answers_from_the_name_asked_for() -> None:
    s = s2s_stream()
    [ev] = s.receive(OPEN.replace(b"to='a.test'", b"to='conference.a.test'"))
    assert isinstance(ev, StreamOpen)
    header, wrong = s.accept(ev)
    assert wrong is None
    assert b"xmlns='jabber:server'" in header
    assert b"xmlns:db='jabber:server:dialback'" in header
    assert b"from='conference.a.test'" in header and b"to='b.test'" in header
    assert b"version='1.0'" in header


def test_an_unknown_to_is_host_unknown_after_a_header() -> None:
    s = s2s_stream()
    [ev] = s.receive(OPEN.replace(b"to='a.test'", b"to='c.test'"))
    assert isinstance(ev, StreamOpen)
    header, wrong = s.accept(ev)
    assert header.startswith(b"<?xml version='1.0'?><stream:stream xmlns='jabber:server'")
    assert wrong is not None and wrong.condition == "host-unknown"


def test_a_client_namespace_is_refused() -> None:
    s = s2s_stream()
    with pytest.raises(StreamError) as info:
        s.receive(OPEN.replace(b"xmlns='jabber:server'", b"xmlns='jabber:client'"))
    assert info.value.condition == "invalid-namespace"


def test_stanzas_come_out_in_jabber_client_and_dialback_stays() -> None:
    s = s2s_stream()
    s.receive(OPEN)
    msg, res = s.receive(b"<message from='u@b.test' to='v@a.test'><body>hi</body></message>"
                         b"<db:result from='b.test' to='a.test'>abc</db:result>")
    assert isinstance(msg, Element) and msg.xmlns == NS.CLIENT
    assert msg.find("body") is not None
    assert isinstance(res, Element) and res.xmlns == NS.DIALBACK and res.text == "abc"
    # written back unprefixed: the header's default namespace is jabber:server
    assert msg.to_bytes(NS.CLIENT).startswith(b"<message from=")


def test_initiate_says_our_header() -> None:
    s = s2s_stream()
    head = s.initiate("a.test", "b.test")
    assert b"from='a.test' to='b.test' version='1.0'" in head
    assert s.header_sent
    # the peer's answer header parses on the same stream
    [ev] = s.receive(OPEN.replace(b"from='b.test' to='a.test'", b"from='b.test' id='x1'"))
    assert isinstance(ev, StreamOpen) and ev.attrs["id"] == "x1"


def test_the_role_is_tcp_only() -> None:
    with pytest.raises(ValueError):
        Profile("a.test", Parsers(max_stanza_size=4096, max_depth=16), role=S2S,
                framing=RFC7395)


def test_dialback_keys() -> None:
    # XEP-0185 §2: HMAC-SHA256 keyed with the hex SHA-256 of the secret, over
    # "receiving originating stream-id", hex-encoded
    k = dialback.key(b"s3cr3tf0rd14lb4ck", "example.net", "example.com", "D60000229F")
    hashed = hashlib.sha256(b"s3cr3tf0rd14lb4ck").hexdigest().encode()
    assert k == hmac.new(hashed, b"example.net example.com D60000229F", "sha256").hexdigest()
    assert k != dialback.key(b"s3cr3tf0rd14lb4ck", "example.com", "example.net", "D60000229F")
    assert dialback.valid(b"s3cr3tf0rd14lb4ck", "example.net", "example.com", "D60000229F", k)
    assert not dialback.valid(b"other", "example.net", "example.com", "D60000229F", k)
    assert not dialback.valid(b"s3cr3tf0rd14lb4ck", "example.net", "example.com", "X", k)


def test_dialback_elements_use_the_declared_prefix() -> None:
    assert dialback.result("a.test", "b.test", "k1") == \
        b"<db:result from='a.test' to='b.test'>k1</db:result>"
    assert dialback.verify("b.test", "a.test", "s1", type="valid") == \
        b"<db:verify from='b.test' to='a.test' id='s1' type='valid'/>"
    # and they parse back into the dialback namespace on a server stream
    s = s2s_stream()
    s.receive(OPEN)
    [el] = s.receive(dialback.result("b.test", "a.test", type="invalid"))
    assert isinstance(el, Element) and el.xmlns == NS.DIALBACK and el.attrs["type"] == "invalid"
