"""One XMPP stream as the receiving entity (the server) sees it, sans-I/O.

Bytes go in (:meth:`Stream.receive`), events come out (:class:`StreamOpen`, stanzas and other
top-level elements, :class:`StreamClose`), and every byte the stream itself must say goes out
as the return value of a method: the response header (:meth:`Stream.accept`), a stream error
(:meth:`Stream.error`), the closing (:meth:`Stream.closing`). Nothing here does I/O, reads a
clock of its own or knows about sessions; the negotiation deadline is computed from the clock
the owner injects. Two framings (:data:`RFC6120` and :data:`RFC7395`) and two roles: a client's
stream (:data:`C2S`), an external component's (:data:`COMPONENT`, XEP-0114) and another
server's (:data:`S2S`, RFC 6120 §9), which this server may also initiate (:meth:`Stream.initiate`).

* RFC 6120 framing: one XML document per stream, ``<stream:stream>`` … ``</stream:stream>``,
  restarted (a new parser) after STARTTLS and after SASL; an idle stream between stanzas may
  drop its expat parser and resume it on the next byte (:meth:`Stream.rest`).
* The component role (XEP-0114, ``jabber:component:accept``): the initiating entity's ``to`` is
  the component's own name, which the response header's ``from`` repeats; no version, no
  features. Its stanzas come out of :meth:`Stream.receive` in ``jabber:client``, like every
  other stream's, and what the server writes to it (serialized as on a client stream, without
  an ``xmlns`` of its own) is in the header's default namespace, ``jabber:component:accept``.
* The server-to-server role (``jabber:server``): the header declares the dialback prefix
  (XEP-0220) and answers from the name the peer asked for (one of the domains this server
  serves: its own and its services'); stanzas come out in ``jabber:client`` and are written
  unprefixed under the header's ``jabber:server``, as on a component's stream. The same parser
  reads the answer header of a stream this server initiated.
* RFC 7395 framing (WebSocket): each message is one complete element with its namespaces
  declared; ``<open/>`` and ``<close/>`` in ``urn:ietf:params:xml:ns:xmpp-framing`` stand for
  the stream header and its end; a restart is a new ``<open/>`` on the same parser.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Container
from typing import Final

from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element, escape_attr
from hongyan.xmpp.errors import StreamError
from hongyan.xmpp.parser import Event, StreamClose, StreamOpen, StreamParser

RFC6120: Final = "rfc6120"  # TCP and TLS: <stream:stream>
RFC7395: Final = "rfc7395"  # WebSocket: <open/> and <close/>, one element per message
C2S: Final = "c2s"
COMPONENT: Final = "component"  # XEP-0114: an external component connecting to the server
S2S: Final = "s2s"  # RFC 6120 §9: another server, in either direction
#: the default namespace of each role's stream
_CONTENT_NS = {C2S: NS.CLIENT, COMPONENT: NS.COMPONENT, S2S: NS.SERVER}

# The root a WebSocket stream's parser is given once, so that every message parses as a child
_WS_ROOT = (f"<stream:stream xmlns='{NS.CLIENT}' xmlns:stream='{NS.STREAM}'>").encode()
_WS_CLOSE = f"<close xmlns='{NS.FRAMING}'/>".encode()
_TCP_CLOSE = b"</stream:stream>"
_ROOT_TAG = re.compile(rb"<([A-Za-z_][\w.:-]*)([\s/>])")
# A tag of well-formed XML: "<" never occurs in text or attribute values, ">" only quoted
_TAG = re.compile(rb"<[^>'\"]*(?:(?:'[^']*'|\"[^\"]*\")[^>'\"]*)*>")

RootNS = tuple[tuple[str | None, str], ...]


class Parsers:
    """The parser limits of every stream of one listener, and the interned stream-header
    namespace tuples that resting streams keep (nearly every stream has the same one)."""

    __slots__ = ("_interned", "max_depth", "max_stanza_size")

    def __init__(self, *, max_stanza_size: int, max_depth: int) -> None:
        self.max_stanza_size = max_stanza_size
        self.max_depth = max_depth
        self._interned: dict[RootNS, RootNS] = {}

    def new(self, content_ns: str = NS.CLIENT) -> StreamParser:
        return StreamParser(max_stanza_size=self.max_stanza_size, max_depth=self.max_depth,
                            content_ns=content_ns)

    def resume(self, root_ns: RootNS, content_ns: str = NS.CLIENT) -> StreamParser:
        return StreamParser.resume(root_ns, max_stanza_size=self.max_stanza_size,
                                   max_depth=self.max_depth, content_ns=content_ns)

    def intern(self, root_ns: RootNS) -> RootNS:
        return self._interned.setdefault(root_ns, root_ns)


class Profile:
    """What every stream of one listener shares: the served ``domain`` (and ``domains``, the
    names a ``to`` may carry, else ``host-unknown``), the framing, the role, the parser limits,
    and the negotiation deadline's ``clock`` and ``timeout``. Held once per listener, so that a
    stream costs only its own few fields. ``preauth``: the (smaller) parser limits of a stream
    until SASL succeeds (default: ``parsers``)."""

    __slots__ = ("clock", "domain", "domains", "framing", "parsers", "preauth", "role",
                 "timeout")

    def __init__(self, domain: str, parsers: Parsers, *, framing: str = RFC6120,
                 role: str = C2S, domains: Container[str] | None = None,
                 clock: Callable[[], float] | None = None, timeout: float = 0.0,
                 preauth: Parsers | None = None) -> None:
        if framing not in (RFC6120, RFC7395):
            raise ValueError(f"unknown framing {framing!r}")
        if role not in _CONTENT_NS or (role != C2S and framing != RFC6120):
            raise ValueError(f"unknown role {role!r} for framing {framing!r}")
        self.domain = domain
        self.domains: Container[str] = domains if domains is not None else (domain,)
        self.framing = framing
        self.role = role
        self.parsers = parsers
        self.preauth = preauth if preauth is not None else parsers
        self.clock = clock
        self.timeout = timeout


class Stream:
    """A server's side of one stream of the listener ``profile``. The negotiation deadline
    (:attr:`deadline`, from the profile's clock and timeout) is pushed back by every read until
    :meth:`established`."""

    __slots__ = ("_root_ns", "deadline", "header_sent", "id", "parser", "profile")

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.id = ""
        self.header_sent = False
        self._root_ns: RootNS = ()
        clock = profile.clock
        self.deadline = clock() + profile.timeout if clock is not None else 0.0
        self.parser: StreamParser | None = None
        self._new_parser(profile.preauth)

    def _new_parser(self, parsers: Parsers) -> None:
        profile = self.profile
        parser = self.parser = parsers.new(_CONTENT_NS[profile.role])
        if self.profile.framing == RFC7395:
            parser.feed(_WS_ROOT)

    # -- input ----------------------------------------------------------------------------------
    def receive(self, data: bytes) -> list[Event]:
        """The events ``data`` completes (for RFC 7395: ``data`` is one whole message).
        Raises :class:`StreamError` with the RFC 6120 condition."""
        if self.deadline:
            profile = self.profile
            if profile.clock is not None:
                self.deadline = profile.clock() + profile.timeout
        parser = self.parser
        if parser is None:
            parser = self.parser = self.profile.parsers.resume(
                self._root_ns, _CONTENT_NS[self.profile.role])
        events = parser.feed(data)
        if self.profile.framing == RFC7395:
            return self._framed(parser, events)
        return events

    @staticmethod
    def _framed(parser: StreamParser, events: list[Event]) -> list[Event]:
        # RFC 7395 §3.3.3: a message holds exactly one complete element
        if len(events) != 1 or not parser.at_rest:
            raise StreamError("not-well-formed", "a WebSocket message must hold exactly one "
                                                 "complete XML element (RFC 7395)")
        el = events[0]
        if isinstance(el, Element) and el.xmlns == NS.FRAMING:
            if el.name == "open":
                return [StreamOpen(el.attrs)]
            if el.name == "close":
                return [StreamClose()]
            raise StreamError("invalid-xml", f"unknown framing element <{el.name}/>")
        return events

    # -- negotiation ----------------------------------------------------------------------------
    def accept(self, ev: StreamOpen) -> tuple[bytes, StreamError | None]:
        """The response header to the initiating entity's header ``ev``, and what is wrong with
        ``ev`` (RFC 6120 §4.7, §4.9.3): the header must be sent before that error."""
        self.id = secrets.token_urlsafe(12)
        to = ev.to
        name = to.lower().rstrip(".") if to is not None else None
        known = name is not None and name in self.profile.domains
        role = self.profile.role
        component = role == COMPONENT
        # a component's stream, and a server's, come from the name they asked for (XEP-0114
        # §3, RFC 6120 §4.7.1)
        header = self._header(ev.attrs.get("from"), name if role != C2S and known else None)
        self.header_sent = True
        if not known:
            if component:
                return header, StreamError("host-unknown", "no component of that name is "
                                                           "configured here")
            return header, StreamError("host-unknown", f"this server serves "
                                                       f"{self.profile.domain}")
        if component:
            return header, None
        if ev.version is None or not ev.version.startswith("1."):
            return header, StreamError("unsupported-version", "XMPP 1.0 streams only")
        return header, None

    def _header(self, to: str | None, name: str | None = None) -> bytes:
        # RFC 6120 §4.7.2: the response's 'to' is the initiating entity's 'from'
        to_attr = f" to='{escape_attr(to)}'" if to else ""
        domain = self.profile.domain
        if self.profile.role == COMPONENT:
            return (f"<?xml version='1.0'?><stream:stream xmlns='{NS.COMPONENT}' "
                    f"xmlns:stream='{NS.STREAM}' id='{self.id}' "
                    f"from='{escape_attr(name or domain)}'>").encode()
        if self.profile.role == S2S:
            return (f"<?xml version='1.0'?><stream:stream xmlns='{NS.SERVER}' "
                    f"xmlns:stream='{NS.STREAM}' xmlns:db='{NS.DIALBACK}' id='{self.id}' "
                    f"from='{escape_attr(name or domain)}'{to_attr} version='1.0'>").encode()
        if self.profile.framing == RFC7395:
            return (f"<open xmlns='{NS.FRAMING}' id='{self.id}' from='{domain}'"
                    f"{to_attr} version='1.0' xml:lang='en'/>").encode()
        return (f"<?xml version='1.0'?><stream:stream xmlns='{NS.CLIENT}' "
                f"xmlns:stream='{NS.STREAM}' id='{self.id}' from='{domain}'"
                f"{to_attr} version='1.0' xml:lang='en'>").encode()

    def initiate(self, frm: str, to: str) -> bytes:
        """The header of a server-to-server stream this server opens, from its domain ``frm``
        to the peer's ``to`` (RFC 6120 §4.7; the peer's answer header carries the id)."""
        self.header_sent = True
        return (f"<?xml version='1.0'?><stream:stream xmlns='{NS.SERVER}' "
                f"xmlns:stream='{NS.STREAM}' xmlns:db='{NS.DIALBACK}' "
                f"from='{escape_attr(frm)}' to='{escape_attr(to)}' version='1.0'>").encode()

    def restart(self, authenticated: bool = False) -> None:
        """After STARTTLS or SASL success (RFC 6120 §4.3.3): the next header opens a new
        stream, with the profile's full parser limits once ``authenticated``. Over WebSocket
        the parser stays (each message is a document of its own; it keeps its limits)."""
        self.header_sent = False
        if self.profile.framing == RFC6120:
            old = self.parser
            profile = self.profile
            self._new_parser(profile.parsers if authenticated else profile.preauth)
            if old is not None:
                old.close()

    def opened(self) -> None:
        """This stream was opened and authenticated elsewhere (another worker read its header
        and its SASL2 exchange): the next bytes are its stanzas, read with the full limits."""
        self.header_sent = True
        if self.profile.framing == RFC6120:
            if self.parser is not None:
                self.parser.close()
            self.parser = None
            self._root_ns = self.profile.parsers.intern(((None, NS.CLIENT), ("stream", NS.STREAM)))

    def upgrade(self) -> None:
        """SASL2 succeeded (no stream restart): the profile's full parser limits from now on.
        A parser in the middle of an element keeps its limits until it next rests (and
        :meth:`rest` resumes a full one)."""
        parser = self.parser
        if self.profile.framing != RFC6120 or parser is None or not parser.at_rest:
            return
        self._root_ns = self.profile.parsers.intern(parser.resume_state())
        self.parser = self.profile.parsers.resume(self._root_ns, _CONTENT_NS[self.profile.role])
        parser.close()

    def established(self) -> None:
        """Negotiation is over (a resource is bound): no more deadline."""
        self.deadline = 0.0

    def expired(self) -> bool:
        """The negotiation deadline passed (see ``clock`` and ``timeout``)."""
        clock = self.profile.clock
        return bool(self.deadline) and clock is not None and clock() >= self.deadline

    # -- output ---------------------------------------------------------------------------------
    @property
    def content_ns(self) -> str:
        """The namespace stanzas are serialized under: ``jabber:client`` on a TCP stream
        (declared by the header), none over WebSocket (each message declares it)."""
        return NS.CLIENT if self.profile.framing == RFC6120 else ""

    def frame(self, data: bytes) -> bytes:
        """A stanza serialized for a TCP stream, as this stream must carry it."""
        if self.profile.framing == RFC6120:
            return data
        return declare(data)

    def error(self, exc: StreamError) -> bytes:
        """A stream error and the end of the stream (with a header first if none was sent:
        RFC 6120 §4.9.1.1)."""
        head = b""
        if not self.header_sent:
            self.id = self.id or secrets.token_urlsafe(12)
            head = self._header(None)
            self.header_sent = True
        return head + self.frame(exc.to_bytes()) + self.closing()

    def closing(self) -> bytes:
        return _WS_CLOSE if self.profile.framing == RFC7395 else _TCP_CLOSE

    # -- resting --------------------------------------------------------------------------------
    def rest(self) -> bool:
        """Drop the parser of a stream that sits between stanzas (an expat parser costs about
        14 KB); the next :meth:`receive` resumes a fresh one. True when it dropped it."""
        parser = self.parser
        if parser is None or not parser.at_rest:
            return False
        self._root_ns = self.profile.parsers.intern(parser.resume_state())
        self.parser = None
        parser.close()
        return True

    def release(self) -> None:
        """The connection is gone: free the parser now (it holds a reference cycle)."""
        if self.parser is not None:
            self.parser.close()
            self.parser = None


def declare(data: bytes) -> bytes:
    """One element serialized for a TCP stream (its namespace, ``jabber:client`` or the
    ``stream:`` prefix, declared by the stream header), declaring it itself, as a WebSocket
    message must (RFC 7395 §3.3.3)."""
    if data[:1] != b"<":
        return data
    m = _ROOT_TAG.match(data)
    if m is None:
        return data
    tag = m.group(1)
    head = data[:data.find(b">")]
    if tag.startswith(b"stream:"):
        if b" xmlns:stream=" in head:
            return data
        decl = b" xmlns:stream='" + NS.STREAM.encode() + b"'"
    else:
        if b" xmlns=" in head:
            return data
        decl = b" xmlns='" + NS.CLIENT.encode() + b"'"
    return b"<" + tag + decl + data[m.end(1):]


def websocket_messages(data: bytes) -> list[bytes]:
    """What a session wrote in one pass (whole elements serialized for a TCP stream, one after
    another: a stanza and an XEP-0198 ``<r/>``, a stream error and ``<close/>``) as RFC 7395
    messages: one per top-level element, each declaring its namespace."""
    return [declare(el) for el in split_elements(data)]


def split_elements(data: bytes) -> list[bytes]:
    """The top-level elements of ``data``: complete, well-formed elements one after another (as
    this server serializes them: no comments, CDATA or processing instructions), with perhaps
    whitespace between them. Text with no element, or an element left open, ends the list
    as one piece of its own (it never happens with what the server writes)."""
    out: list[bytes] = []
    depth = 0
    start = -1
    for m in _TAG.finditer(data):
        a, b = m.span()
        if start < 0:
            start = a
        if data[a + 1] == 0x2F:  # </name>
            depth -= 1
        elif data[b - 2] != 0x2F:  # <name ...> (not <name .../>)
            depth += 1
        if depth <= 0:
            out.append(data[start:b])
            depth = 0
            start = -1
    if start >= 0:
        out.append(data[start:])
    return out


__all__ = ["C2S", "COMPONENT", "RFC6120", "RFC7395", "S2S", "Element", "Parsers", "Profile",
           "Stream", "StreamClose", "StreamOpen", "declare", "split_elements", "websocket_messages"]
