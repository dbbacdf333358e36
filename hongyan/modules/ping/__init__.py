"""XEP-0199: XMPP Ping (to the server, and to an account's bare JID, answered by the server)."""

from __future__ import annotations

from hongyan.server.module import Iq, Module, iq_handler
from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element


class Ping(Module):
    name = "ping"
    xeps = {"0199": "2.0.1"}
    features = frozenset({NS.PING})

    @iq_handler(NS.PING, "ping", "get", scope=("host", "self"))
    def on_ping(self, iq: Iq) -> Element:
        return iq.result()


MODULE = Ping
