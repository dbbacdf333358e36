"""RFC 6120 stream and stanza errors, as exceptions that know how to render themselves."""

from __future__ import annotations

from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element

STREAM_CONDITIONS = frozenset({
    "bad-format", "bad-namespace-prefix", "conflict", "connection-timeout", "host-gone",
    "host-unknown", "improper-addressing", "internal-server-error", "invalid-from",
    "invalid-namespace", "invalid-xml", "not-authorized", "not-well-formed", "policy-violation",
    "remote-connection-failed", "reset", "resource-constraint", "restricted-xml", "see-other-host",
    "system-shutdown", "undefined-condition", "unsupported-encoding", "unsupported-feature",
    "unsupported-stanza-type", "unsupported-version",
})

# RFC 6120 §8.3.3: condition -> default error type
STANZA_CONDITIONS: dict[str, str] = {
    "bad-request": "modify", "conflict": "cancel", "feature-not-implemented": "cancel",
    "forbidden": "auth", "gone": "cancel", "internal-server-error": "cancel",
    "item-not-found": "cancel", "jid-malformed": "modify", "not-acceptable": "modify",
    "not-allowed": "cancel", "not-authorized": "auth", "policy-violation": "modify",
    "recipient-unavailable": "wait", "redirect": "modify", "registration-required": "auth",
    "remote-server-not-found": "cancel", "remote-server-timeout": "wait",
    "resource-constraint": "wait", "service-unavailable": "cancel", "subscription-required": "auth",
    "undefined-condition": "cancel", "unexpected-request": "wait",
}


class StreamError(Exception):
    """A condition that ends the stream (RFC 6120 §4.9)."""

    def __init__(self, condition: str, text: str = "") -> None:
        assert condition in STREAM_CONDITIONS, condition
        super().__init__(f"{condition}: {text}" if text else condition)
        self.condition = condition
        self.text = text

    def element(self) -> Element:
        err = Element("error", NS.STREAM)
        err.add(self.condition, NS.STREAMS)
        if self.text:
            err.add("text", NS.STREAMS, {f"{{{NS.XML}}}lang": "en"}, self.text)
        return err

    def to_bytes(self) -> bytes:
        return self.element().to_bytes(NS.CLIENT)


class StanzaError(Exception):
    """A stanza-level error (RFC 6120 §8.3); the stream goes on."""

    def __init__(self, condition: str, text: str = "", type: str | None = None,
                 app: Element | None = None) -> None:
        assert condition in STANZA_CONDITIONS, condition
        super().__init__(f"{condition}: {text}" if text else condition)
        self.condition = condition
        self.text = text
        self.type = type or STANZA_CONDITIONS[condition]
        self.app = app

    def element(self, by: str | None = None) -> Element:
        err = Element("error", NS.CLIENT, {"type": self.type})
        if by:
            err.attrs["by"] = by
        err.add(self.condition, NS.STANZAS)
        if self.text:
            err.add("text", NS.STANZAS, {f"{{{NS.XML}}}lang": "en"}, self.text)
        if self.app is not None:
            err.append(self.app)
        return err


def error_reply(stanza: Element, error: StanzaError, by: str | None = None) -> Element:
    """The error bounce of ``stanza``: addresses swapped, payload kept (RFC 6120 §8.3.1)."""
    reply = Element(stanza.name, stanza.xmlns, dict(stanza.attrs))
    reply.attrs["type"] = "error"
    to, frm = stanza.attrs.get("to"), stanza.attrs.get("from")
    reply.attrs.pop("to", None)
    reply.attrs.pop("from", None)
    if frm is not None:
        reply.attrs["to"] = frm
    if to is not None:
        reply.attrs["from"] = to
    if stanza.name != "iq":
        reply.children = [c for c in stanza.children if isinstance(c, Element)
                          and c.name != "error"]
    else:
        first = stanza.first
        if first is not None:
            reply.children = [first]
    reply.children.append(error.element(by))
    return reply
