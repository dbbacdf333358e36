"""Per-session XEP-0352 state: stanzas held back while the client says it is inactive."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element

if TYPE_CHECKING:
    from hongyan.server.session import Session

#: more held stanzas than this and we flush anyway (a client inactive for a day in a large
#: MUC must not cost unbounded memory)
MAX_HELD = 500
SUBSCRIPTION = frozenset({"subscribe", "subscribed", "unsubscribe", "unsubscribed", "error"})


def chat_state_only(el: Element) -> bool:
    """A message whose only payload is a XEP-0085 chat state (no body)."""
    if el.attrs.get("type") == "error":
        return False
    seen = False
    for c in el.elements:
        if c.xmlns != NS.CHATSTATES:
            return False
        seen = True
    return seen


class CSIState:
    """The send filter of a session whose client said it is inactive (it exists only then)."""

    __slots__ = ("_seq", "held")

    order: ClassVar[int] = 10  # before stream management: what is held is not yet sent

    def __init__(self) -> None:
        # key -> serialized stanza; insertion order is send order. A newer presence from the
        # same full JID (or a newer chat state from the same sender) replaces the older one and
        # takes its place at the end.
        self.held: dict[tuple[str, str], bytes] = {}
        self._seq = 0

    def outgoing(self, session: Session, data: bytes, el: Element | None) -> bytes | None:
        """Hold ``data`` back (None), or let what is held go first and pass ``data`` on."""
        key = self._key(el) if el is not None else self._fanout_key(data)
        if key is None:
            self.flush(session)
            return data
        held = self.held
        held.pop(key, None)
        held[key] = data
        if len(held) > MAX_HELD:
            self.flush(session)
        return None

    def _key(self, el: Element) -> tuple[str, str] | None:
        name = el.name
        if name == "presence" and el.attrs.get("type") not in SUBSCRIPTION:
            return ("p", el.attrs.get("from", ""))
        if name == "message" and chat_state_only(el):
            return ("c", el.attrs.get("from", ""))
        return None

    def _fanout_key(self, data: bytes) -> tuple[str, str] | None:
        # a fan-out's pre-serialized stanza (MUC): its presence is held, in order
        if data.startswith(b"<presence") and b"type='error'" not in data:
            self._seq += 1
            return ("b", str(self._seq))
        return None

    def drain(self) -> list[bytes]:
        out = list(self.held.values())
        self.held = {}
        return out

    def flush(self, session: Session) -> None:
        """Send what is held, through the filters after this one (stream management counts it)."""
        if self.held:
            for data in self.drain():
                session.send(data, after=self)
