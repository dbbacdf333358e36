"""XEP-0352 Client State Indication (urn:xmpp:csi:0).

While a client says ``<inactive/>``, presence updates and chat-state-only messages (XEP-0085,
no body) addressed to it are held back instead of waking the phone's radio:

* only the latest presence per sender full JID is kept (an older one is superseded), and only
  the latest chat state per sender (an older chat state means nothing once a newer one exists,
  as Prosody's mod_csi_simple also drops them);
* presence subscription requests and answers, errors, and every other stanza (a message with a
  body, an IQ, anything that is not presence or a chat state) is urgent: what is held is sent
  first, in order, then that stanza;
* ``<active/>`` sends everything held, in order. More than 500 held stanzas are sent anyway.

Held stanzas are not counted by stream management (XEP-0198) until they are actually sent.
A stream starts active (XEP-0352 §3). On stream resumption the held stanzas are sent after the
stanzas sent again, and the resumed stream is active.
"""

from __future__ import annotations

from hongyan.modules.csi.state import CSIState
from hongyan.server.hooks import Bind2Request, InlineFeatures, StreamFeatures
from hongyan.server.module import Module, hook
from hongyan.server.session import BOUND, ClientSession
from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element
from hongyan.xmpp.errors import StreamError


class ClientStateIndication(Module):
    name = "csi"
    xeps = {"0352": "1.0.0"}

    async def start(self) -> None:
        self.api.nonza(NS.CSI, "active", self.on_active)
        self.api.nonza(NS.CSI, "inactive", self.on_inactive)

    @hook(StreamFeatures)
    def on_features(self, ev: StreamFeatures) -> None:
        ev.features.add("csi", NS.CSI)

    @hook(InlineFeatures)
    def on_inline(self, ev: InlineFeatures) -> None:
        ev.bind2.add("feature", attrs={"var": NS.CSI})

    @hook(Bind2Request)
    def on_bind2(self, ev: Bind2Request) -> None:
        """Bind2 (XEP-0386): a client that comes back in the background says <inactive/>."""
        if ev.request.find("inactive", NS.CSI) is not None and _state(ev.session) is None:
            ev.session.add_filter(CSIState())

    def on_inactive(self, session: ClientSession, el: Element) -> None:
        if session.state != BOUND:
            raise StreamError("unsupported-stanza-type", "client state applies after bind")
        if _state(session) is None:
            session.add_filter(CSIState())

    def on_active(self, session: ClientSession, el: Element) -> None:
        if session.state != BOUND:
            raise StreamError("unsupported-stanza-type", "client state applies after bind")
        csi = _state(session)
        if csi is not None:
            session.remove_filter(csi)  # an active client costs nothing
            csi.flush(session)


def _state(session: ClientSession) -> CSIState | None:
    for f in session.filters:
        if isinstance(f, CSIState):
            return f
    return None


MODULE = ClientStateIndication
