"""Byte tables for the sans-I/O stream parser and element serializer."""

from __future__ import annotations

import pytest

from hongyan.xmpp.element import Element
from hongyan.xmpp.errors import StreamError
from hongyan.xmpp.parser import StreamClose, StreamOpen, StreamParser

HEADER = (b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
          b"xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>")


def parse_all(*chunks: bytes, **kw: int) -> list[object]:
    p = StreamParser(**kw)
    out: list[object] = []
    for c in chunks:
        out.extend(p.feed(c))
    return out


def test_header_then_stanza_then_close() -> None:
    evs = parse_all(HEADER, b"<message to='a@b'><body>hi</body></message>", b"</stream:stream>")
    assert isinstance(evs[0], StreamOpen) and evs[0].to == "localhost" and evs[0].version == "1.0"
    assert isinstance(evs[1], Element) and evs[1].name == "message"
    assert evs[1].xmlns == "jabber:client"
    assert evs[1].find_text("body") == "hi"
    assert isinstance(evs[2], StreamClose)


@pytest.mark.parametrize("split", [1, 2, 3, 7, 64])
def test_any_split_gives_the_same_events(split: int) -> None:
    data = HEADER + "<message to='a@b'><body>héllo &amp; 鸿雁</body></message>".encode()
    chunks = [data[i:i + split] for i in range(0, len(data), split)]
    evs = parse_all(*chunks)
    assert len(evs) == 2
    msg = evs[1]
    assert isinstance(msg, Element)
    assert msg.find_text("body") == "héllo & 鸿雁"


def test_whitespace_keepalive_between_stanzas_is_ignored() -> None:
    evs = parse_all(HEADER, b" \n ", b"<presence/>", b"\t")
    assert [type(e).__name__ for e in evs] == ["StreamOpen", "Element"]


def test_xml_lang_and_namespaced_payload() -> None:
    evs = parse_all(HEADER, b"<iq type='get' id='1' xml:lang='fr'><ping xmlns='urn:xmpp:ping'/>"
                    b"</iq>")
    iq = evs[1]
    assert isinstance(iq, Element)
    assert iq.attrs["{http://www.w3.org/XML/1998/namespace}lang"] == "fr"
    child = iq.first
    assert child is not None and child.xmlns == "urn:xmpp:ping" and child.name == "ping"


@pytest.mark.parametrize(("data", "condition"), [
    (b"<message><body>x</message>", "not-well-formed"),
    (b"<message to='a' to='b'/>", "not-well-formed"),
    (b"<!-- hello --><presence/>", "restricted-xml"),
    (b"<?pi target?><presence/>", "restricted-xml"),
    (b"<message><body>&foo;</body></message>", "restricted-xml"),
    (b"<x:message/>", "bad-namespace-prefix"),
    (b"some text", "bad-format"),
])
def test_violations_after_header(data: bytes, condition: str) -> None:
    p = StreamParser()
    p.feed(HEADER)
    with pytest.raises(StreamError) as exc:
        p.feed(data)
    assert exc.value.condition == condition


@pytest.mark.parametrize(("data", "condition"), [
    (b"<!DOCTYPE foo [<!ENTITY a 'b'>]><stream:stream xmlns='jabber:client' "
     b"xmlns:stream='http://etherx.jabber.org/streams'>", "restricted-xml"),
    (b"<stream:stream xmlns='jabber:client' xmlns:stream='urn:wrong'>", "invalid-namespace"),
    (b"<stream:stream xmlns='jabber:server' "
     b"xmlns:stream='http://etherx.jabber.org/streams'>", "invalid-namespace"),
    (b"<?xml version='1.0' encoding='ISO-8859-1'?><stream:stream/>", "unsupported-encoding"),
    (b"<a b", "not-well-formed"),
    (b"\xff\xfe<", "not-well-formed"),
])
def test_bad_stream_headers(data: bytes, condition: str) -> None:
    p = StreamParser()
    with pytest.raises(StreamError) as exc:
        p.feed(data)
        p.feed(b">")
    assert exc.value.condition == condition


def test_stanza_size_limit_in_one_chunk() -> None:
    p = StreamParser(max_stanza_size=1000)
    p.feed(HEADER)
    p.feed(b"<message><body>" + b"a" * 900 + b"</body></message>")
    with pytest.raises(StreamError) as exc:
        p.feed(b"<message><body>" + b"a" * 2000 + b"</body></message>")
    assert exc.value.condition == "policy-violation"


def test_stanza_size_limit_across_chunks_without_markup() -> None:
    p = StreamParser(max_stanza_size=1000)
    p.feed(HEADER)
    p.feed(b"<message><body>")
    with pytest.raises(StreamError) as exc:
        for _ in range(20):
            p.feed(b"b" * 100)
    assert exc.value.condition == "policy-violation"


def test_unfinished_start_tag_counts_toward_the_limit() -> None:
    p = StreamParser(max_stanza_size=1000)
    p.feed(HEADER)
    with pytest.raises(StreamError) as exc:
        p.feed(b"<message " + b"a" * 2000)
    assert exc.value.condition == "policy-violation"


def test_depth_limit() -> None:
    p = StreamParser(max_depth=10)
    p.feed(HEADER)
    with pytest.raises(StreamError) as exc:
        p.feed(b"<message>" + b"<a>" * 20)
    assert exc.value.condition == "policy-violation"


@pytest.mark.parametrize(("el", "parent", "expected"), [
    (Element("message", attrs={"to": "a@b"}), "jabber:client", "<message to='a@b'/>"),
    (Element("message"), "", "<message xmlns='jabber:client'/>"),
    (Element("x", "urn:x", {"a": "<'&\">"}), "jabber:client",
     "<x xmlns='urn:x' a='&lt;&apos;&amp;&quot;&gt;'/>"),
    (Element("body", children=["a<b>&c"]), "jabber:client", "<body>a&lt;b&gt;&amp;c</body>"),
    (Element("q", "urn:q", {"{http://www.w3.org/XML/1998/namespace}lang": "en"}), "urn:q",
     "<q xml:lang='en'/>"),
])
def test_serializer(el: Element, parent: str, expected: str) -> None:
    assert el.to_str(parent) == expected


def test_roundtrip_parse_serialize() -> None:
    src = (b"<message to='a@b' type='chat'><body>1 &lt; 2</body>"
           b"<x xmlns='urn:y'><z/></x></message>")
    msg = parse_all(HEADER, src)[1]
    assert isinstance(msg, Element)
    assert msg.to_bytes() == src


def test_resume_after_rest() -> None:
    p = StreamParser()
    p.feed(HEADER)
    p.feed(b"<message>")
    assert not p.at_rest
    p.feed(b"</message><presence/>")
    assert p.at_rest
    p.feed(b"  ")
    assert p.at_rest  # whitespace keepalives keep it at rest
    p.feed(b"<message><bo")
    assert not p.at_rest
    p.feed(b"dy>x</body></message>")
    assert p.at_rest
    q = StreamParser.resume(p.resume_state(), max_stanza_size=1000, max_depth=10)
    evs = q.feed(b"<message to='a@b'><body>again</body></message></stream:stream>")
    assert isinstance(evs[0], Element) and evs[0].find_text("body") == "again"
    assert evs[0].xmlns == "jabber:client"
    assert isinstance(evs[1], StreamClose)


def test_resume_keeps_header_prefixes() -> None:
    p = StreamParser()
    p.feed(HEADER[:-1] + b" xmlns:x='urn:x'>")
    p.feed(b"<presence/>")
    q = StreamParser.resume(p.resume_state(), max_stanza_size=1000, max_depth=10)
    evs = q.feed(b"<message><x:y/></message>")
    el = evs[0]
    assert isinstance(el, Element) and el.first is not None and el.first.xmlns == "urn:x"
