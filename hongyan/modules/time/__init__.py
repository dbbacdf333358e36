"""XEP-0202: Entity Time of the server (UTC; the server does not reveal its local zone)."""

from __future__ import annotations

from hongyan.server.module import Iq, Module, iq_handler
from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element
from hongyan.xmpp.stamps import xmpp_datetime


class Time(Module):
    name = "time"
    xeps = {"0202": "2.0"}
    features = frozenset({NS.TIME})

    @iq_handler(NS.TIME, "time", "get", scope="host")
    def on_time(self, iq: Iq) -> Element:
        t = Element("time", NS.TIME)
        t.add("tzo", text="+00:00")
        t.add("utc", text=xmpp_datetime(self.api.now()))
        return iq.result(t)


MODULE = Time
