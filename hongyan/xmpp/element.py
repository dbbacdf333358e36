"""A light XML element model and serializer for stanzas.

Stanzas are small trees; we need fast construction from expat events, cheap attribute access and a
serializer that writes namespace declarations only where the namespace changes. Namespaced
attributes other than ``xml:*`` are rare in XMPP; they are stored as ``{ns}name`` and serialized
with generated prefixes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from hongyan.xmpp import ns as NS

_XML_PREFIX = "{" + NS.XML + "}"
_STREAM_NS = NS.STREAM

_TEXT_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
_ATTR_ESCAPES = str.maketrans(
    {"&": "&amp;", "<": "&lt;", ">": "&gt;", "'": "&apos;", '"': "&quot;", "\n": "&#10;",
     "\r": "&#13;", "\t": "&#9;"}
)


_TEXT_SPECIAL = re.compile(r"[&<>]").search
_ATTR_SPECIAL = re.compile(r"[&<>'\"\n\r\t]").search


def escape_text(text: str) -> str:
    # Most text needs no escaping; one C-level scan is cheaper than always translating.
    return text.translate(_TEXT_ESCAPES) if _TEXT_SPECIAL(text) else text


def escape_attr(text: str) -> str:
    return text.translate(_ATTR_ESCAPES) if _ATTR_SPECIAL(text) else text


class Element:
    """An XML element: local name, namespace, attributes and children (elements or text)."""

    __slots__ = ("attrs", "children", "name", "xmlns")

    def __init__(
        self,
        name: str,
        xmlns: str = NS.CLIENT,
        attrs: dict[str, str] | None = None,
        children: list[Element | str] | None = None,
    ) -> None:
        self.name = name
        self.xmlns = xmlns
        self.attrs: dict[str, str] = attrs if attrs is not None else {}
        self.children: list[Element | str] = children if children is not None else []

    # -- construction -------------------------------------------------------------------------
    def append(self, child: Element | str) -> Element | str:
        self.children.append(child)
        return child

    def add(self, name: str, xmlns: str | None = None, attrs: dict[str, str] | None = None,
            text: str | None = None) -> Element:
        """Append and return a new child element (inheriting the namespace when not given)."""
        child = Element(name, self.xmlns if xmlns is None else xmlns, attrs)
        if text is not None:
            child.children.append(text)
        self.children.append(child)
        return child

    def remove(self, child: Element) -> None:
        self.children.remove(child)

    def copy(self) -> Element:
        return Element(
            self.name,
            self.xmlns,
            dict(self.attrs),
            [c.copy() if isinstance(c, Element) else c for c in self.children],
        )

    # -- access -------------------------------------------------------------------------------
    def get(self, key: str, default: str | None = None) -> str | None:
        return self.attrs.get(key, default)

    def __getitem__(self, key: str) -> str:
        return self.attrs[key]

    def __setitem__(self, key: str, value: str) -> None:
        self.attrs[key] = value

    @property
    def text(self) -> str:
        return "".join(c for c in self.children if isinstance(c, str))

    @text.setter
    def text(self, value: str) -> None:
        self.children = [c for c in self.children if isinstance(c, Element)]
        if value:
            self.children.append(value)

    @property
    def elements(self) -> Iterator[Element]:
        for c in self.children:
            if isinstance(c, Element):
                yield c

    def find(self, name: str, xmlns: str | None = None) -> Element | None:
        """First child with this name (and namespace; the parent's when not given)."""
        want = self.xmlns if xmlns is None else xmlns
        for c in self.children:
            if isinstance(c, Element) and c.name == name and c.xmlns == want:
                return c
        return None

    def find_all(self, name: str, xmlns: str | None = None) -> list[Element]:
        want = self.xmlns if xmlns is None else xmlns
        return [
            c for c in self.children
            if isinstance(c, Element) and c.name == name and c.xmlns == want
        ]

    def find_ns(self, xmlns: str) -> Element | None:
        """First child in the given namespace, whatever its name."""
        for c in self.children:
            if isinstance(c, Element) and c.xmlns == xmlns:
                return c
        return None

    def find_text(self, name: str, xmlns: str | None = None) -> str | None:
        el = self.find(name, xmlns)
        return None if el is None else el.text

    @property
    def first(self) -> Element | None:
        for c in self.children:
            if isinstance(c, Element):
                return c
        return None

    # -- serialization ------------------------------------------------------------------------
    def to_str(self, parent_ns: str = NS.CLIENT) -> str:
        out: list[str] = []
        self._write(out, parent_ns)
        return "".join(out)

    def to_bytes(self, parent_ns: str = NS.CLIENT) -> bytes:
        return self.to_str(parent_ns).encode()

    def __str__(self) -> str:
        return self.to_str("")

    def __repr__(self) -> str:
        return f"<Element {self.to_str('')[:200]}>"

    def _write(self, out: list[str], parent_ns: str) -> None:
        name = self.name
        default_ns = self.xmlns
        if default_ns == _STREAM_NS:
            # The stream header binds the ``stream`` prefix; the default namespace inside
            # stream-level elements stays the parent's.
            name = "stream:" + name
            default_ns = parent_ns
        head = "<" + name if default_ns == parent_ns else \
            f"<{name} xmlns='{escape_attr(default_ns)}'"
        if self.attrs:
            attrs = []
            extra = 0
            special = _ATTR_SPECIAL  # escape_attr, inlined: this runs for every attribute sent
            for k, v in self.attrs.items():
                if k[0] == "{":
                    if k.startswith(_XML_PREFIX):
                        k = "xml:" + k[len(_XML_PREFIX):]
                    else:
                        uri, _, local = k[1:].partition("}")
                        extra += 1
                        attrs.append(f" xmlns:a{extra}='{escape_attr(uri)}'")
                        k = f"a{extra}:{local}"
                attrs.append(f" {k}='{v.translate(_ATTR_ESCAPES) if special(v) else v}'")
            head += "".join(attrs)
        children = self.children
        if not children:
            out.append(head + "/>")
            return
        out.append(head + ">")
        for c in children:
            if c.__class__ is str:
                # escape_text, inlined: this runs for every text node sent
                out.append(c.translate(_TEXT_ESCAPES) if _TEXT_SPECIAL(c) else c)
            else:
                c._write(out, default_ns)  # type: ignore[union-attr]
        out.append(f"</{name}>")


class Rendered(Element):
    """An element whose serialization is written once, when it is made: for a child added to
    every routed message (the archive's ``<stanza-id/>``), where the generic serializer would
    cost more than the rest of the message. It declares its namespace itself, so it reads the
    same under any parent. Do not change it after making it (its text would not follow)."""

    __slots__ = ("_xml",)

    def __init__(self, name: str, xmlns: str, attrs: dict[str, str], xml: str) -> None:
        """``xml`` is the element as the serializer would write it with its ``xmlns``
        (attribute values escaped): the caller, who knows its values, writes it cheaply."""
        self.name = name
        self.xmlns = xmlns
        self.attrs = attrs
        self.children = []
        self._xml = xml

    def _write(self, out: list[str], parent_ns: str) -> None:
        out.append(self._xml)
