"""Fuzz targets: each takes arbitrary bytes and either returns or raises.

What the server answers bad input with is part of the contract, so a target fails (raises
something other than the documented errors) when the code under test does anything else:

* an exception that is not :class:`StreamError`, :class:`SaslFailure` or :class:`JIDError`
  (a crash, which would drop the connection without the RFC's error);
* a broken property: an element the parser produced does not survive serialization and a
  second parse unchanged; a JID's text does not parse back to the same JID; the two framings
  disagree about a stanza.

The targets only use the sans-I/O layers (``hongyan.xmpp``, ``hongyan.irc``): no socket, loop
or clock. The IRC core raises nothing at all: every bad line has its numeric.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Callable

from hongyan.irc.connection import IrcConnection, Login
from hongyan.irc.message import MAX_LINE
from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element
from hongyan.xmpp.errors import StreamError
from hongyan.xmpp.jid import JID, JIDError
from hongyan.xmpp.parser import StreamOpen, parse_element
from hongyan.xmpp.sasl import SaslFailure, ScramCredentials, ScramServer, derive_scram, parse_plain
from hongyan.xmpp.stream import RFC6120, RFC7395, Parsers, Profile, Stream

_PARSERS = Parsers(max_stanza_size=4096, max_depth=16)
_TCP = Profile("localhost", _PARSERS, framing=RFC6120)
_WS = Profile("localhost", _PARSERS, framing=RFC7395)
_CREDS: dict[str, ScramCredentials] = {}
_SECRET = b"fuzz" * 8
_HEADER = (b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/"
           b"streams' to='localhost' version='1.0'>")


def _roundtrip(el: Element) -> None:
    """Serializing a parsed element and parsing it again gives the same bytes. (A top-level
    element in no namespace is left out: the stored form, ``to_str('')``, is for stanzas,
    which are in the stream's content namespace; the c2s session refuses the others with
    ``unsupported-stanza-type`` before anything would store them.)"""
    if not el.xmlns:
        return
    once = el.to_str("")
    again = parse_element(once, max_size=1 << 20).to_str("")
    if once != again:
        raise AssertionError(f"serialization is not stable:\n{once!r}\n{again!r}")


def _check_jids(el: Element) -> None:
    for key in ("to", "from"):
        text = el.attrs.get(key)
        if text is not None:
            jid_text(text)


def _chunks(data: bytes) -> list[bytes]:
    """Split ``data`` at sizes its first byte chooses, so that every boundary is exercised."""
    if not data:
        return []
    step = data[0] % 7 + 1
    body = data[1:]
    return [body[i:i + step] for i in range(0, len(body), step)]


def stream_tcp(data: bytes) -> None:
    """RFC 6120 framing, fed in small pieces; the header is accepted as the server would."""
    stream = Stream(_TCP)
    try:
        for piece in _chunks(data):
            for ev in stream.receive(piece):
                if isinstance(ev, StreamOpen):
                    stream.accept(ev)
                elif isinstance(ev, Element):
                    _check_jids(ev)
                    _roundtrip(ev)
    except StreamError as exc:
        stream.error(exc)  # what the server writes must itself be producible


def stanza(data: bytes) -> None:
    """One stanza after a valid header, in one piece: the parser's element path and the
    serializer, without the header's checks in the way."""
    stream = Stream(_TCP)
    try:
        stream.receive(_HEADER)
        for ev in stream.receive(data):
            if isinstance(ev, Element):
                _check_jids(ev)
                _roundtrip(ev)
    except StreamError:
        pass


def stream_ws(data: bytes) -> None:
    """RFC 7395 framing: the input is split into messages at NUL bytes."""
    stream = Stream(_WS)
    try:
        for message in data.split(b"\0"):
            for ev in stream.receive(message):
                if isinstance(ev, StreamOpen):
                    stream.accept(ev)
                elif isinstance(ev, Element):
                    _roundtrip(ev)
    except StreamError as exc:
        stream.error(exc)


def jid_text(text: str) -> None:
    """A JID that parses prints as text that parses to the same JID."""
    try:
        jid = JID.parse(text)
    except JIDError:
        return
    again = JID.parse(str(jid))
    if again != jid or str(again) != str(jid):
        raise AssertionError(f"JID not stable: {text!r} -> {jid!s} -> {again!s}")


def jid(data: bytes) -> None:
    jid_text(data.decode("utf-8", "replace"))


def sasl_plain(data: bytes) -> None:
    with contextlib.suppress(SaslFailure):
        parse_plain(data)


def sasl_scram(data: bytes) -> None:
    """A SCRAM-SHA-256 exchange with the two client messages from the input (split at the
    first NUL), for an account that exists and one that does not."""
    first, _, final = data.partition(b"\0")
    server = ScramServer("sha256", False, None, False, _SECRET, nonce="server-nonce")
    try:
        user = server.client_first(first)
        creds = _CREDS.get("sha256") if len(user) % 2 else None
        if creds is None and len(user) % 2:
            creds = _CREDS["sha256"] = derive_scram("pencil", "sha256", b"salt" * 4, 4096)
        server.server_first(creds)
        server.client_final(final)
    except SaslFailure:
        pass


def irc(data: bytes) -> None:
    """IRC lines fed in small pieces, any credentials accepted: every line written back ends
    in CRLF, holds no other line break and is at most 512 bytes after its tags."""
    conn = IrcConnection("irc.example")
    out = bytearray()
    for chunk in _chunks(data):
        for ev in conn.receive_data(chunk, budget=1000):
            if isinstance(ev, Login):
                conn.logged_in("fuzz")
        out += conn.data_to_send()
    for line in bytes(out).split(b"\r\n")[:-1]:
        if b"\r" in line or b"\n" in line:
            raise AssertionError(f"a line break inside a line: {line!r}")
        body = line.split(b" ", 1)[1] if line.startswith(b"@") else line
        if len(body) + 2 > MAX_LINE:
            raise AssertionError(f"a line of {len(body) + 2} bytes")
    if out and not out.endswith(b"\r\n"):
        raise AssertionError("output that does not end a line")


TARGETS: dict[str, Callable[[bytes], None]] = {
    "stream_tcp": stream_tcp,
    "stanza": stanza,
    "stream_ws": stream_ws,
    "jid": jid,
    "sasl_plain": sasl_plain,
    "sasl_scram": sasl_scram,
    "irc": irc,
}

#: inputs a run starts from (the fuzzer mutates them), per target
SEEDS: dict[str, list[bytes]] = {
    "irc": [b"\x05CAP LS 302\r\nCAP REQ :sasl server-time\r\nAUTHENTICATE PLAIN\r\n"
            b"AUTHENTICATE AGEAYg==\r\nNICK a\r\nUSER a 0 * :A\r\nCAP END\r\n"
            b"@+t=x\\sy :p JOIN #r\r\nPRIVMSG #r :hi\nPING :x\r\nQUIT :bye\r\n",
            b"\x02PASS a:b\nNICK a\nUSER a 0 * :A\nMODE #r +ov a b\nTOPIC #r :\xff\xfe\n"],
    "stream_tcp": [b"\x03" + _HEADER + b"<message to='a@localhost/r' type='chat'><body>hi"
                   b"</body></message><iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>"
                   b"</stream:stream>"],
    "stanza": [b"<message to='a@localhost/r' from='b@example.org' xml:lang='en'><body>h&amp;i"
               b"</body><x xmlns='jabber:x:data' type='submit'/></message>",
               b"<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' "
               b"node='n' ver='v'/></presence>"],
    "stream_ws": [f"<open xmlns='{NS.FRAMING}' to='localhost' version='1.0'/>\0"
                  f"<message xmlns='jabber:client' to='a@localhost'><body>x</body></message>\0"
                  f"<close xmlns='{NS.FRAMING}'/>".encode()],
    "jid": [b"juliet@capulet.example/balcony", b"[::1]", "fußball@例え.jp/é".encode()],
    "sasl_plain": [b"\0juliet\0pencil", b"admin\0juliet\0pencil"],
    "sasl_scram": [b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL\0c=biws,r=fyko+d2lbbFgONRv9qkxdawL"
                   b"server-nonce,p=" + base64.b64encode(b"x" * 32)],
}
