"""Per-session XEP-0352 state: stanzas held back while the client says it is inactive."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element

if TYPE_CHECKING:
    from hongyan.server.c2s import C2SSession

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
    __slots__ = ("_seq", "held", "inactive")

    def __init__(self) -> None:
        self.inactive = False
        # key -> serialized stanza; insertion order is send order. A newer presence from the
        # same full JID (or a newer chat state from the same sender) replaces the older one and
        # takes its place at the end.
        self.held: dict[tuple[str, str], bytes] = {}
        self._seq = 0

    def hold(self, session: C2SSession, el: Element) -> bool:
        """Hold ``el`` back (True), or flush what is held so that ``el`` follows it (False)."""
        name = el.name
        if name == "presence" and el.attrs.get("type") not in SUBSCRIPTION:
            key = ("p", el.attrs.get("from", ""))
        elif name == "message" and chat_state_only(el):
            key = ("c", el.attrs.get("from", ""))
        else:
            self.flush(session)
            return False
        held = self.held
        held.pop(key, None)
        held[key] = el.to_bytes(NS.CLIENT)
        if len(held) > MAX_HELD:
            self.flush(session)
        return True

    def hold_bytes(self, session: C2SSession, data: bytes) -> bool:
        """A fan-out's pre-serialized stanza (MUC): its presence is held, in order."""
        if data.startswith(b"<presence") and b"type='error'" not in data:
            self._seq += 1
            self.held[("b", str(self._seq))] = data
            if len(self.held) > MAX_HELD:
                self.flush(session)
            return True
        self.flush(session)
        return False

    def take(self) -> list[bytes]:
        out = list(self.held.values())
        self.held = {}
        return out

    def flush(self, session: C2SSession) -> None:
        if self.held:
            for data in self.take():
                session.emit(data)
