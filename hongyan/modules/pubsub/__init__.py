"""XEP-0060 Publish-Subscribe: the engine every pubsub front end shares, and the generic
service at ``pubsub.<domain>`` (``[pubsub] host``) for applications that need one.

The engine (:mod:`.engine`: nodes, items, configuration, affiliations, subscriptions, with
the tables of :mod:`.store`) is public API for the ``pep`` module, which puts one service on
each account's bare JID (XEP-0163). Here the service domain is hosted as a component: any
server administrator (``server.admins``; every local user with ``[pubsub] create_nodes =
"users"``) may create nodes there, becoming their owner; access models open and whitelist.
"""

from __future__ import annotations

from hongyan.modules.pubsub.engine import PUBSUB, PubSub, Service
from hongyan.modules.pubsub.options import PubSubOptions
from hongyan.modules.pubsub.protocol import FEATURES, INSTANT_NODES, PUBSUB_OWNER, Protocol
from hongyan.modules.pubsub.store import MIGRATIONS, PubSubStore
from hongyan.server.hooks import AccountDeleted
from hongyan.server.module import Module, hook
from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element
from hongyan.xmpp.errors import StanzaError
from hongyan.xmpp.jid import JID

__all__ = ["PUBSUB", "PubSub", "PubSubModule", "Service"]


class PubSubModule(Module):
    name = "pubsub"
    xeps = {"0060": "1.26.0"}
    migrations = MIGRATIONS

    async def start(self) -> None:
        cfg = self.api.options(PubSubOptions)
        self.engine = PubSub(PubSubStore(self.api.db), self.api.route,
                             max_items=cfg.max_items, max_item_size=cfg.max_item_size,
                             max_nodes=cfg.max_nodes, now=self.api.now)
        await self.engine.start()
        if cfg.create_nodes == "admins":
            admins = self.api.admins
            self.engine.may_create_node = admins.__contains__
        self.protocol = Protocol(self.engine)
        self.host = cfg.host_for(self.api.domain)
        if cfg.service:
            self.api.service(self.host, self._request)

    # -- the service at pubsub.<domain> ---------------------------------------------------------
    async def _request(self, itype: str, payload: Element, sender: JID) -> Element | None:
        if not sender.local or sender.domain != self.api.domain:
            raise StanzaError("forbidden", "this service is for the server's users")
        if payload.xmlns == NS.DISCO_INFO and payload.name == "query" and itype == "get":
            return await self._disco_info(payload.attrs.get("node", ""), sender)
        if payload.xmlns == NS.DISCO_ITEMS and payload.name == "query" and itype == "get":
            return await self._disco_items(payload.attrs.get("node", ""), sender)
        if payload.name == "pubsub" and payload.xmlns in (PUBSUB, PUBSUB_OWNER):
            svc = await self.engine.service(self.host, pep=False)
            return await self.protocol.handle(svc, itype, payload, sender)
        raise StanzaError("service-unavailable")

    async def _disco_info(self, node_name: str, sender: JID) -> Element:
        q = Element("query", NS.DISCO_INFO)
        if node_name:
            svc = await self.engine.service(self.host, pep=False)
            node = self.engine.get_node(svc, node_name)
            denied = await self.engine.may_access(svc, node, sender.bare_str)
            if denied is not None:
                raise denied
            q.attrs["node"] = node_name
            q.add("identity", attrs={"category": "pubsub", "type": "leaf"})
            q.add("feature", attrs={"var": NS.DISCO_INFO})
            return q
        q.add("identity", attrs={"category": "pubsub", "type": "service",
                                 "name": "Hongyan publish-subscribe"})
        for f in sorted({NS.DISCO_INFO, NS.DISCO_ITEMS, PUBSUB, *FEATURES, INSTANT_NODES}):
            q.add("feature", attrs={"var": f})
        return q

    async def _disco_items(self, node_name: str, sender: JID) -> Element:
        if node_name:
            raise StanzaError("item-not-found", "nodes here are leaves")
        q = Element("query", NS.DISCO_ITEMS)
        svc = await self.engine.service(self.host, pep=False)
        for name, node in sorted(svc.nodes.items()):
            if await self.engine.may_access(svc, node, sender.bare_str) is None:
                attrs = {"jid": self.host, "node": name}
                if node.config.title:
                    attrs["name"] = node.config.title
                q.add("item", attrs=attrs)
        return q

    @hook(AccountDeleted)
    async def on_deleted(self, ev: AccountDeleted) -> None:
        bare = f"{ev.username}@{self.api.domain}"
        engine = self.engine
        for service, name in sorted(engine.by_subscriber.get(bare, ())):
            svc = await engine.service(service, pep="@" in service)
            node = svc.nodes.get(name)
            if node is not None:
                for jid in [j for j in node.subscriptions if j.split("/", 1)[0] == bare]:
                    await engine.remove_subscription(svc, node, jid)
        await engine.store.delete_subscriber(bare)
        for svc in engine.services.values():
            for node in svc.nodes.values():
                node.affiliations.pop(bare, None)


MODULE = PubSubModule
