"""Incremental XMPP stream parser on expat (stdlib ``pyexpat``), sans-I/O.

Bytes go in with :meth:`StreamParser.feed`; out come events: :class:`StreamOpen`, complete
stanzas (:class:`~hongyan.xmpp.element.Element`, one per top-level child of the stream) and
:class:`StreamClose`. Every protocol violation raises :class:`~hongyan.xmpp.errors.StreamError`
with the RFC 6120 condition:

* malformed XML → ``not-well-formed``;
* DTDs, entity declarations or references, comments, processing instructions → ``restricted-xml``
  (RFC 6120 §11.1);
* a stanza (or anything between stanzas) larger than ``max_stanza_size`` bytes, or nested deeper
  than ``max_depth`` → ``policy-violation``, checked as the bytes arrive;
* a wrong stream or content namespace → ``invalid-namespace``; an undeclared prefix →
  ``bad-namespace-prefix``.

We do not use expat's ``buffer_text``: it costs an 8 KiB buffer per parser, i.e. per connection.
Adjacent character data is merged by hand instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.parsers import expat

from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element
from hongyan.xmpp.errors import StreamError

_SEP = " "
_STREAM_TAG = NS.STREAM + _SEP + "stream"
_ERR = expat.errors.codes
_RESTRICTED_CODES = {
    _ERR[expat.errors.XML_ERROR_UNDEFINED_ENTITY],
    _ERR[expat.errors.XML_ERROR_RECURSIVE_ENTITY_REF],
    _ERR[expat.errors.XML_ERROR_EXTERNAL_ENTITY_HANDLING],
    _ERR[expat.errors.XML_ERROR_BINARY_ENTITY_REF],
    _ERR[expat.errors.XML_ERROR_ATTRIBUTE_EXTERNAL_ENTITY_REF],
}
_PREFIX_CODES = {_ERR[expat.errors.XML_ERROR_UNBOUND_PREFIX]}
_ENCODING_CODES = {
    _ERR[expat.errors.XML_ERROR_UNKNOWN_ENCODING],
    _ERR[expat.errors.XML_ERROR_INCORRECT_ENCODING],
}


@dataclass(frozen=True, slots=True)
class StreamOpen:
    """The opening ``<stream:stream>`` tag: its attributes (``xml:lang`` as ``{ns}lang``)."""

    attrs: dict[str, str]

    @property
    def to(self) -> str | None:
        return self.attrs.get("to")

    @property
    def version(self) -> str | None:
        return self.attrs.get("version")

    @property
    def lang(self) -> str | None:
        return self.attrs.get(f"{{{NS.XML}}}lang")


@dataclass(frozen=True, slots=True)
class StreamClose:
    """The closing ``</stream:stream>`` tag."""


Event = StreamOpen | StreamClose | Element


_HANDLERS = ("StartElementHandler", "EndElementHandler", "CharacterDataHandler",
             "StartNamespaceDeclHandler", "StartDoctypeDeclHandler", "EntityDeclHandler",
             "CommentHandler", "ProcessingInstructionHandler", "XmlDeclHandler")


def _attr_name(name: str) -> str:
    if _SEP in name:
        uri, _, local = name.partition(_SEP)
        return "{" + uri + "}" + local
    return name


def _restricted(*_args: object) -> None:
    raise StreamError("restricted-xml", "DTDs, comments, processing instructions and entity "
                      "declarations are not allowed in XMPP")


class StreamParser:
    """One XML stream (create a new one at each stream restart)."""

    __slots__ = (
        "_content_ns",
        "_default_ns",
        "_depth",
        "_events",
        "_fed",
        "_mark",
        "_max_depth",
        "_max_size",
        "_opened",
        "_parser",
        "_renamed",
        "_rest",
        "_root_ns",
        "_stack",
    )

    def __init__(self, *, max_stanza_size: int = 262144, max_depth: int = 64,
                 content_ns: str = NS.CLIENT) -> None:
        """``content_ns``: the stream's default namespace. Stanzas of a stream whose default
        is not ``jabber:client`` (a component's, XEP-0114) come out in ``jabber:client``, as
        the server handles every stanza, whatever stream it came on."""
        p = expat.ParserCreate("UTF-8", _SEP)
        p.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        p.StartElementHandler = self._start
        # (a handler of its own, so that a client stream's elements pay nothing for it)
        self._renamed = ("", "")
        if content_ns != NS.CLIENT:
            self._renamed = (content_ns + _SEP, NS.CLIENT + _SEP)
            p.StartElementHandler = self._start_renamed
        p.EndElementHandler = self._end
        p.CharacterDataHandler = self._chars
        p.StartNamespaceDeclHandler = self._nsdecl
        p.StartDoctypeDeclHandler = _restricted
        p.EntityDeclHandler = _restricted
        p.CommentHandler = _restricted
        p.ProcessingInstructionHandler = _restricted
        p.XmlDeclHandler = self._xmldecl
        self._parser = p
        self._content_ns = content_ns
        self._default_ns: str | None = None
        self._max_size = max_stanza_size
        self._max_depth = max_depth
        self._stack: list[Element] = []
        self._depth = 0
        self._fed = 0
        self._mark = 0
        self._opened = False
        self._rest = False
        self._root_ns: list[tuple[str | None, str]] = []
        self._events: list[Event] = []

    def feed(self, data: bytes) -> list[Event]:
        """Parse ``data``; return the events it completes. Raises :class:`StreamError`."""
        events: list[Event] = []
        self._events = events
        self._fed += len(data)
        try:
            self._parser.Parse(data, False)
        except expat.ExpatError as exc:
            raise self._map_error(exc) from None
        if self._fed - self._mark > self._max_size:
            raise StreamError("policy-violation", f"stanza larger than {self._max_size} bytes")
        if self._depth == 1:
            tail = data.rstrip(b" \t\r\n")
            if tail:
                self._rest = tail[-1:] == b">"
        else:
            self._rest = False
        return events

    def close(self) -> None:
        """Release the expat parser now: its handlers are bound methods of this object, a
        reference cycle that would otherwise wait for the cyclic garbage collector."""
        p = self._parser
        for name in _HANDLERS:
            setattr(p, name, None)
        self._stack.clear()

    @property
    def at_rest(self) -> bool:
        """Inside the stream, between stanzas, with no partial markup buffered: this parser
        can be dropped and later replaced by :meth:`resume` without losing anything."""
        return self._rest and self._depth == 1

    def resume_state(self) -> tuple[tuple[str | None, str], ...]:
        """What :meth:`resume` needs: the namespace declarations of the stream header."""
        return tuple(self._root_ns)

    @classmethod
    def resume(cls, root_ns: tuple[tuple[str | None, str], ...], *, max_stanza_size: int,
               max_depth: int, content_ns: str = NS.CLIENT) -> StreamParser:
        """A new parser positioned where an at-rest parser with these stream-header namespace
        declarations was: inside the stream, between stanzas."""
        p = cls(max_stanza_size=max_stanza_size, max_depth=max_depth, content_ns=content_ns)
        decls = "".join(f" xmlns='{uri}'" if prefix is None else f" xmlns:{prefix}='{uri}'"
                        for prefix, uri in root_ns)
        p.feed(f"<stream:stream{decls}>".encode())
        return p

    @staticmethod
    def _map_error(exc: expat.ExpatError) -> StreamError:
        code = exc.code
        if code in _RESTRICTED_CODES:
            return StreamError("restricted-xml", "entity references are not allowed in XMPP")
        if code in _PREFIX_CODES:
            return StreamError("bad-namespace-prefix", str(exc))
        if code in _ENCODING_CODES:
            return StreamError("unsupported-encoding", "XMPP streams are UTF-8")
        return StreamError("not-well-formed", str(exc))

    # -- expat callbacks ------------------------------------------------------------------------
    def _xmldecl(self, version: str | None, encoding: str | None, standalone: int) -> None:
        if encoding is not None and encoding.lower().replace("_", "-") != "utf-8":
            raise StreamError("unsupported-encoding", "XMPP streams are UTF-8")

    def _nsdecl(self, prefix: str | None, uri: str | None) -> None:
        if self._depth == 0:
            self._root_ns.append((prefix, uri or ""))
            if prefix is None:
                self._default_ns = uri

    def _start(self, name: str, attrs: dict[str, str]) -> None:
        depth = self._depth + 1
        self._depth = depth
        if depth == 1:
            if name != _STREAM_TAG:
                raise StreamError("invalid-namespace", "the root element must be "
                                  "<stream:stream xmlns:stream='" + NS.STREAM + "'>")
            if self._default_ns != self._content_ns:
                raise StreamError("invalid-namespace",
                                  f"the stream's default namespace must be {self._content_ns}")
            self._opened = True
            self._events.append(StreamOpen({_attr_name(k): v for k, v in attrs.items()}))
            self._mark = self._parser.CurrentByteIndex
            return
        if depth > self._max_depth:
            raise StreamError("policy-violation", f"elements nested deeper than {self._max_depth}")
        uri, sep, local = name.rpartition(_SEP)
        if not sep:
            uri = ""
        if attrs:
            # expat names a namespaced attribute "uri local"; most stanzas have none, and then
            # expat's own fresh dict is used as is
            for k in attrs:
                if _SEP in k:
                    attrs = {_attr_name(k): v for k, v in attrs.items()}
                    break
            el = Element(local, uri, attrs)
        else:
            el = Element(local, uri)
        if depth == 2:
            self._mark = self._parser.CurrentByteIndex
        else:
            self._check_size()
            self._stack[-1].children.append(el)
        self._stack.append(el)

    def _start_renamed(self, name: str, attrs: dict[str, str]) -> None:
        theirs, ours = self._renamed
        if name.startswith(theirs):
            name = ours + name[len(theirs):]
        self._start(name, attrs)

    def _end(self, name: str) -> None:
        depth = self._depth
        self._depth = depth - 1
        if depth == 1:
            self._events.append(StreamClose())
            return
        el = self._stack.pop()
        if depth == 2:
            self._check_size()
            self._mark = self._parser.CurrentByteIndex
            self._events.append(el)

    def _chars(self, data: str) -> None:
        if self._depth < 2:
            if data.strip(" \t\r\n"):
                raise StreamError("bad-format", "text is not allowed between stanzas")
            return
        if self._parser.CurrentByteIndex + len(data) - self._mark > self._max_size:
            raise StreamError("policy-violation", f"stanza larger than {self._max_size} bytes")
        children = self._stack[-1].children
        if children and isinstance(children[-1], str):
            children[-1] += data
        else:
            children.append(data)

    def _check_size(self) -> None:
        if self._parser.CurrentByteIndex - self._mark > self._max_size:
            raise StreamError("policy-violation", f"stanza larger than {self._max_size} bytes")


_WRAP = ("<stream:stream xmlns='jabber:client' "
         "xmlns:stream='" + NS.STREAM + "'>").encode()


def parse_element(xml: str | bytes, max_size: int = 1 << 24) -> Element:
    """Parse one stored stanza (serialized with ``to_str('')``) back into an element."""
    data = xml.encode() if isinstance(xml, str) else xml
    for ev in StreamParser(max_stanza_size=max_size).feed(_WRAP + data):
        if isinstance(ev, Element):
            return ev
    raise StreamError("not-well-formed", "no element in stored XML")
