"""XEP-0012 Last Activity: the server's uptime, and when a user was last available (to those
the user shares presence with, RFC 6121 subscription ``from`` or ``both``)."""

from __future__ import annotations

from hongyan.modules.roster import Roster
from hongyan.server.hooks import SessionClosed
from hongyan.server.module import Iq, Module, hook, iq_handler
from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element
from hongyan.xmpp.errors import StanzaError


class Last(Module):
    name = "last"
    xeps = {"0012": "2.0"}
    features = frozenset({NS.LAST})
    account_features = frozenset({NS.LAST})
    depends = ("roster",)

    async def start(self) -> None:
        self.roster = self.api.module(Roster)
        self.started = self.api.monotonic()

    @iq_handler(NS.LAST, "query", "get", scope="host")
    def on_server(self, iq: Iq) -> Element:
        seconds = int(self.api.monotonic() - self.started)
        return iq.result(Element("query", NS.LAST, {"seconds": str(seconds)}))

    @iq_handler(NS.LAST, "query", "get", scope=("self", "bare"))
    async def on_user(self, iq: Iq) -> Element:
        username = iq.to.local
        if iq.sender.bare_str != iq.to.bare_str:
            item = (await self.roster.items(username)).get(iq.sender.bare_str)
            if item is None or not item.has_from:
                raise StanzaError("forbidden", "you are not subscribed to this user's presence")
        if self.api.sessions.available(iq.to):
            return iq.result(Element("query", NS.LAST, {"seconds": "0"}))
        stored = await self.api.kv.get(username, NS.LAST)
        if stored is None:
            raise StanzaError("service-unavailable", "no activity recorded")
        stamp, _, status = stored.partition("\n")
        seconds = max(0, int(self.api.now() - float(stamp)))
        q = Element("query", NS.LAST, {"seconds": str(seconds)})
        if status:
            q.children.append(status)
        return iq.result(q)

    @hook(SessionClosed, priority=50)
    async def on_closed(self, ev: SessionClosed) -> None:
        jid = ev.session.jid
        if jid is None or not ev.was_available or self.api.sessions.available(jid.bare):
            return
        status = ""
        if ev.session.presence is not None:
            status = ev.session.presence.find_text("status") or ""
        await self.api.kv.set(jid.local, NS.LAST, "", f"{self.api.now()}\n{status}")


MODULE = Last
