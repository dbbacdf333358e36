"""XEP-0092: Software Version of the server."""

from __future__ import annotations

import platform

from hongyan.server.module import Iq, Module, iq_handler
from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element

VERSION = "0.1.0"


class Version(Module):
    name = "version"
    xeps = {"0092": "1.1"}
    features = frozenset({NS.VERSION})

    @iq_handler(NS.VERSION, "query", "get", scope="host")
    def on_version(self, iq: Iq) -> Element:
        q = Element("query", NS.VERSION)
        q.add("name", text="Hongyan")
        q.add("version", text=VERSION)
        q.add("os", text=platform.system())
        return iq.result(q)


MODULE = Version
