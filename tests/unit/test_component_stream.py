"""The stream's component role (XEP-0114, jabber:component:accept): byte tables in, events and
bytes out."""

from __future__ import annotations

import pytest

from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element
from hongyan.xmpp.errors import StreamError
from hongyan.xmpp.stream import COMPONENT, RFC7395, Parsers, Profile, Stream, StreamOpen

OPEN = (b"<stream:stream xmlns='jabber:component:accept' "
        b"xmlns:stream='http://etherx.jabber.org/streams' to='irc.localhost'>")


def component_stream() -> Stream:
    return Stream(Profile("localhost", Parsers(max_stanza_size=4096, max_depth=16),
                          role=COMPONENT, domains=frozenset({"irc.localhost"})))


# (the component's header, the error the server must answer, the header's 'from')
OPENS = [
    (OPEN, None, b"irc.localhost"),
    (OPEN.replace(b"irc.localhost", b"IRC.LocalHost."), None, b"irc.localhost"),
    (OPEN.replace(b"'>", b"' version='1.0'>"), None, b"irc.localhost"),  # version: ignored
    (OPEN.replace(b"irc.localhost", b"localhost"), "host-unknown", b"localhost"),
    (OPEN.replace(b"irc.localhost", b"other.localhost"), "host-unknown", b"localhost"),
    (OPEN.replace(b" to='irc.localhost'", b""), "host-unknown", b"localhost"),
]


@pytest.mark.parametrize(("data", "condition", "frm"), OPENS)
def test_accept(data: bytes, condition: str | None, frm: bytes) -> None:
    s = component_stream()
    [ev] = s.receive(data)
    assert isinstance(ev, StreamOpen)
    header, err = s.accept(ev)
    assert (err.condition if err else None) == condition
    assert header.startswith(b"<?xml version='1.0'?><stream:stream "
                             b"xmlns='jabber:component:accept' ")
    assert f"id='{s.id}'".encode() in header and b"from='" + frm + b"'" in header
    assert b" version=" not in header.split(b"?>")[1]


def test_a_client_namespace_is_refused() -> None:
    s = component_stream()
    with pytest.raises(StreamError) as exc:
        s.receive(OPEN.replace(b"jabber:component:accept", b"jabber:client"))
    assert exc.value.condition == "invalid-namespace"


def test_stanzas_come_out_in_jabber_client() -> None:
    s = component_stream()
    s.receive(OPEN)
    [hs, msg] = s.receive(b"<handshake>ab12</handshake><message from='a@irc.localhost' "
                          b"to='u@localhost'><body>hi</body><x xmlns='urn:x'><y/></x>"
                          b"</message>")
    assert isinstance(hs, Element) and (hs.name, hs.xmlns, hs.text) == (
        "handshake", NS.CLIENT, "ab12")
    assert isinstance(msg, Element) and msg.xmlns == NS.CLIENT
    body, x = list(msg.elements)
    assert body.xmlns == NS.CLIENT and x.xmlns == "urn:x"
    # written back as on a client stream: in the header's namespace, jabber:component:accept
    assert msg.to_bytes(s.content_ns).startswith(b"<message from=")
    assert b"<body>hi</body>" in msg.to_bytes(s.content_ns)


def test_errors_and_closing() -> None:
    s = component_stream()
    out = s.error(StreamError("not-authorized"))
    assert out.startswith(b"<?xml version='1.0'?><stream:stream xmlns='jabber:component:"
                          b"accept' ")
    assert out.endswith(b"<stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:"
                        b"xmpp-streams'/></stream:error></stream:stream>")


def test_the_component_role_is_tcp_only() -> None:
    with pytest.raises(ValueError):
        Profile("localhost", Parsers(max_stanza_size=4096, max_depth=16), role=COMPONENT,
                framing=RFC7395)
    with pytest.raises(ValueError):
        Profile("localhost", Parsers(max_stanza_size=4096, max_depth=16), role="bogus")


def test_rest_and_resume_keep_the_namespace() -> None:
    s = component_stream()
    s.receive(OPEN)
    assert s.rest()
    [msg] = s.receive(b"<presence from='a@irc.localhost' to='u@localhost'/>")
    assert isinstance(msg, Element) and msg.xmlns == NS.CLIENT
