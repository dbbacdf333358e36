"""The sans-I/O stream (hongyan.xmpp.stream): byte tables in, events and bytes out."""

from __future__ import annotations

import pytest

from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element
from hongyan.xmpp.errors import StreamError
from hongyan.xmpp.stream import (
    RFC6120,
    RFC7395,
    Parsers,
    Profile,
    Stream,
    StreamClose,
    StreamOpen,
    split_elements,
    websocket_messages,
)

TCP_OPEN = (b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
            b"xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>")
WS_OPEN = b"<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def stream(framing: str = RFC6120, **kw: object) -> Stream:
    return Stream(Profile("localhost", Parsers(max_stanza_size=4096, max_depth=16),
                          framing=framing, **kw))  # type: ignore[arg-type]


# -- opening the stream: (framing, the client's header, the error the server must answer) ------
OPENS = [
    (RFC6120, TCP_OPEN, None),
    (RFC6120, TCP_OPEN.replace(b"localhost", b"LocalHost."), None),
    (RFC6120, TCP_OPEN.replace(b"localhost", b"example.org"), "host-unknown"),
    (RFC6120, TCP_OPEN.replace(b" to='localhost'", b""), "host-unknown"),
    (RFC6120, TCP_OPEN.replace(b" version='1.0'>", b">"), "unsupported-version"),
    (RFC6120, TCP_OPEN.replace(b"'1.0'>", b"'2.0'>"), "unsupported-version"),
    (RFC7395, WS_OPEN, None),
    (RFC7395, WS_OPEN.replace(b"localhost", b"example.org"), "host-unknown"),
    (RFC7395, WS_OPEN.replace(b" version='1.0'", b""), "unsupported-version"),
]


@pytest.mark.parametrize(("framing", "data", "condition"), OPENS)
def test_accept(framing: str, data: bytes, condition: str | None) -> None:
    s = stream(framing)
    [ev] = s.receive(data)
    assert isinstance(ev, StreamOpen)
    header, err = s.accept(ev)
    assert (err.condition if err else None) == condition
    assert s.header_sent and len(s.id) >= 16
    assert f"id='{s.id}'".encode() in header and b"from='localhost'" in header
    if framing == RFC6120:
        assert header.startswith(b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' ")
    else:
        assert header.startswith(b"<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' ")
        assert header.endswith(b"/>")


def test_header_answers_from_with_to() -> None:
    s = stream()
    [ev] = s.receive(TCP_OPEN.replace(b" to=", b" from='a@localhost' to="))
    header, _ = s.accept(ev)
    assert b" to='a@localhost'" in header


# -- malformed input: (framing, bytes after the header, the stream error) -----------------------
BAD = [
    (RFC6120, b"<message><body>x</message>", "not-well-formed"),
    (RFC6120, b"<!DOCTYPE x>", "not-well-formed"),  # a DTD inside the document
    (RFC6120, b"<message><?pi x?></message>", "restricted-xml"),
    (RFC6120, b"<message><!-- c --></message>", "restricted-xml"),
    (RFC6120, b"<message>&ent;</message>", "restricted-xml"),
    (RFC6120, b"<x:message/>", "bad-namespace-prefix"),
    (RFC6120, b"<message>" + b"a" * 5000 + b"</message>", "policy-violation"),
    (RFC6120, b"<a>" * 20, "policy-violation"),
    (RFC7395, b"<message xmlns='jabber:client'><body>", "not-well-formed"),
    (RFC7395, b"<message xmlns='jabber:client'/><presence xmlns='jabber:client'/>",
     "not-well-formed"),
    (RFC7395, b"<reopen xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>", "invalid-xml"),
]


@pytest.mark.parametrize(("framing", "data", "condition"), BAD)
def test_bad_input(framing: str, data: bytes, condition: str) -> None:
    s = stream(framing)
    s.receive(TCP_OPEN if framing == RFC6120 else WS_OPEN)
    with pytest.raises(StreamError) as exc:
        s.receive(data)
    assert exc.value.condition == condition


def test_error_before_header_sends_a_header_first() -> None:
    for framing, start, end in ((RFC6120, b"<?xml", b"</stream:stream>"),
                                (RFC7395, b"<open ", b"<close xmlns='" + NS.FRAMING.encode()
                                 + b"'/>")):
        s = stream(framing)
        out = s.error(StreamError("not-well-formed"))
        assert out.startswith(start) and out.endswith(end)
        assert b"<not-well-formed xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in out
        # once the header went out, an error is the error and the close only
        again = s.error(StreamError("conflict"))
        assert again.startswith(b"<stream:error")


def test_websocket_error_declares_the_stream_prefix() -> None:
    s = stream(RFC7395)
    s.receive(WS_OPEN)
    out = s.error(StreamError("policy-violation"))
    assert out.startswith(b"<open ")  # not accepted yet: a header first
    s.header_sent = True
    out = s.error(StreamError("policy-violation"))
    assert out.startswith(f"<stream:error xmlns:stream='{NS.STREAM}'>".encode())


# -- stanzas and framing ------------------------------------------------------------------------
def test_tcp_stanzas_and_close() -> None:
    s = stream()
    evs = s.receive(TCP_OPEN + b"<message to='b@localhost'><body>hi</body></message><pres")
    assert isinstance(evs[0], StreamOpen)
    assert isinstance(evs[1], Element) and evs[1].name == "message" \
        and evs[1].xmlns == NS.CLIENT and evs[1].find_text("body") == "hi"
    evs = s.receive(b"ence/></stream:stream>")
    assert [type(e) for e in evs] == [Element, StreamClose]
    assert s.closing() == b"</stream:stream>"


def test_websocket_messages() -> None:
    s = stream(RFC7395)
    [ev] = s.receive(WS_OPEN)
    assert isinstance(ev, StreamOpen) and ev.to == "localhost"
    [el] = s.receive(b"<iq xmlns='jabber:client' type='get' id='1'><ping xmlns='urn:xmpp:ping'/>"
                     b"</iq>")
    assert isinstance(el, Element) and el.name == "iq" and el.xmlns == NS.CLIENT
    [el] = s.receive(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
                     b"AGEAYg==</auth>")
    assert isinstance(el, Element) and el.xmlns == NS.SASL
    s.restart()  # the parser stays: the next <open/> is a message like the others
    [ev] = s.receive(WS_OPEN)
    assert isinstance(ev, StreamOpen) and not s.header_sent
    [ev] = s.receive(b"<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>")
    assert isinstance(ev, StreamClose)


FRAMES = [
    (b"<message to='a'/>", b"<message xmlns='jabber:client' to='a'/>"),
    (b"<presence/>", b"<presence xmlns='jabber:client'/>"),
    (b"<iq id='1'><query xmlns='q'/></iq>", b"<iq xmlns='jabber:client' id='1'><query "
     b"xmlns='q'/></iq>"),
    (b"<enabled xmlns='urn:xmpp:sm:3'/>", b"<enabled xmlns='urn:xmpp:sm:3'/>"),
    (b"<stream:features><bind xmlns='b'/></stream:features>",
     b"<stream:features xmlns:stream='" + NS.STREAM.encode() + b"'><bind xmlns='b'/>"
     b"</stream:features>"),
]


@pytest.mark.parametrize(("tcp", "ws"), FRAMES)
def test_frame(tcp: bytes, ws: bytes) -> None:
    assert stream().frame(tcp) == tcp
    assert stream(RFC7395).frame(tcp) == ws
    assert stream(RFC7395).frame(ws) == ws  # already framed
    assert stream().content_ns == NS.CLIENT and stream(RFC7395).content_ns == ""


# what a session writes in one pass -> the WebSocket messages (RFC 7395 §3.3.3)
SM_R = b"<r xmlns='urn:xmpp:sm:3'/>"
MESSAGES = [
    (b"", []),
    (b"<presence/>", [b"<presence xmlns='jabber:client'/>"]),
    # a stanza and the XEP-0198 request stream management puts after it
    (b"<message to='a'><body>1 &lt; 2 &gt; 0</body></message>" + SM_R,
     [b"<message xmlns='jabber:client' to='a'><body>1 &lt; 2 &gt; 0</body></message>", SM_R]),
    # '>' and '/' are allowed unescaped in attribute values and text
    (b"<iq id='a/>b'><q xmlns='q' v=\"x>\">t/>t</q></iq><presence type='x/'/>",
     [b"<iq xmlns='jabber:client' id='a/>b'><q xmlns='q' v=\"x>\">t/>t</q></iq>",
      b"<presence xmlns='jabber:client' type='x/'/>"]),
    # nested elements of the same name; a self-closing tag with a space before '/>'
    (b"<message><x><x/><x></x></x></message><a xmlns='urn:xmpp:sm:3' h='1' />",
     [b"<message xmlns='jabber:client'><x><x/><x></x></x></message>",
      b"<a xmlns='urn:xmpp:sm:3' h='1' />"]),
    # a stream error and the close (Stream.error's output once the header went out)
    (b"<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"
     b"<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>",
     [b"<stream:error xmlns:stream='" + NS.STREAM.encode() + b"'><conflict "
      b"xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>",
      b"<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>"]),
    # the header and the features of one pass
    (b"<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' id='x' from='localhost' "
     b"version='1.0'/><stream:features><bind xmlns='b'/></stream:features>",
     [b"<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' id='x' from='localhost' "
      b"version='1.0'/>",
      b"<stream:features xmlns:stream='" + NS.STREAM.encode() + b"'><bind xmlns='b'/>"
      b"</stream:features>"]),
    # whitespace between elements is not a message; pre-serialized stanzas keep their bytes
    (b"<message xmlns='jabber:client' to='a'/>\n <presence/>",
     [b"<message xmlns='jabber:client' to='a'/>", b"<presence xmlns='jabber:client'/>"]),
    # UTF-8 passes untouched
    ("<message><body>红雁 ✓</body></message>".encode(),
     ["<message xmlns='jabber:client'><body>红雁 ✓</body></message>".encode()]),
]


@pytest.mark.parametrize(("written", "messages"), MESSAGES)
def test_websocket_messages_of_one_pass(written: bytes, messages: list[bytes]) -> None:
    assert websocket_messages(written) == messages


def test_split_leaves_what_is_not_whole_as_one_piece() -> None:
    assert split_elements(b"<a/><b><c/>") == [b"<a/>", b"<b><c/>"]
    assert split_elements(b"text") == []


def test_websocket_stream_rests_and_resumes() -> None:
    s = stream(RFC7395)
    s.receive(WS_OPEN)
    assert s.rest() and s.parser is None
    [el] = s.receive(b"<presence xmlns='jabber:client'/>")
    assert isinstance(el, Element) and el.name == "presence" and el.xmlns == NS.CLIENT
    [el] = s.receive(b"<message to='a@localhost'/>")  # no xmlns: jabber:client all the same
    assert isinstance(el, Element) and el.xmlns == NS.CLIENT


# -- restarts, rest, the deadline ---------------------------------------------------------------
def test_restart_takes_a_new_header() -> None:
    s = stream()
    s.receive(TCP_OPEN + b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    s.restart()
    assert not s.header_sent
    [ev] = s.receive(TCP_OPEN)
    assert isinstance(ev, StreamOpen)


def test_rest_and_resume() -> None:
    s = stream()
    s.receive(TCP_OPEN + b"<presence/>")
    assert s.rest() and s.parser is None
    assert not s.rest()
    [el] = s.receive(b"<message><body>again</body></message>")
    assert isinstance(el, Element) and el.find_text("body") == "again"
    s.receive(b"<message><body>half")
    assert not s.rest()  # partial markup buffered: the parser must stay
    s.release()
    assert s.parser is None


def test_deadline_moves_with_reads_until_established() -> None:
    clock = Clock()
    s = stream(clock=clock, timeout=30.0)
    assert s.deadline == 130.0 and not s.expired()
    clock.now = 120.0
    s.receive(TCP_OPEN)
    assert s.deadline == 150.0
    clock.now = 150.0
    assert s.expired()
    s.established()
    assert s.deadline == 0.0 and not s.expired()
    s.receive(b"<presence/>")
    assert s.deadline == 0.0


def test_unknown_framing() -> None:
    with pytest.raises(ValueError, match="framing"):
        stream("bosh")
