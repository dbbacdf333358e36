"""The publish-subscribe engine (XEP-0060) shared by PEP (XEP-0163, one service per account,
at its bare JID) and the ``pubsub.<domain>`` service: one implementation, two front ends.

A :class:`Service` holds its nodes in memory once used (configuration, affiliations,
subscriptions and the last item, which is what notifications and "last item on presence"
need); the other items stay in the database (:mod:`.store`). Operations check permissions,
write through the store, update memory and hand notifications to :meth:`PubSub.notify`.
Every refusal is a :class:`StanzaError` with the XEP-0060 application condition.

What differs between the front ends is passed in, not subclassed: ``presence_allowed`` (PEP's
"presence" access model asks the account's roster) and ``presence_targets`` (PEP sends
notifications to contacts whose entity capabilities ask for them, XEP-0163 §4.3).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from hongyan.modules.pubsub.forms import NodeConfig, apply, unmet
from hongyan.modules.pubsub.store import PubSubStore, StoredItem
from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element
from hongyan.xmpp.errors import StanzaError, StreamError
from hongyan.xmpp.parser import parse_element
from hongyan.xmpp.stamps import xmpp_datetime

PUBSUB = "http://jabber.org/protocol/pubsub"
PUBSUB_EVENT = PUBSUB + "#event"
PUBSUB_ERRORS = PUBSUB + "#errors"

AFFILIATIONS = ("owner", "publisher", "publish-only", "member", "none", "outcast")


def perr(condition: str, app: str, text: str = "", **attrs: str) -> StanzaError:
    """A stanza error with a ``pubsub#errors`` application condition."""
    return StanzaError(condition, text, app=Element(app, PUBSUB_ERRORS, dict(attrs)))


@dataclass(slots=True)
class Item:
    id: str
    publisher: str
    payload: Element | None
    seq: int

    @classmethod
    def from_stored(cls, s: StoredItem) -> Item:
        payload: Element | None = None
        if s.payload:
            try:
                payload = parse_element(s.payload)
            except StreamError:
                payload = None
        return cls(s.id, s.publisher, payload, s.seq)

    def element(self, with_payload: bool = True, xmlns: str = PUBSUB) -> Element:
        el = Element("item", xmlns, {"id": self.id})
        if with_payload and self.payload is not None:
            el.children.append(self.payload)
        return el


@dataclass(slots=True)
class Node:
    name: str
    config: NodeConfig
    created: int
    affiliations: dict[str, str] = field(default_factory=dict)
    subscriptions: dict[str, str] = field(default_factory=dict)
    last: Item | None = None
    #: items of a node whose items are not persisted (oldest first)
    volatile: dict[str, Item] | None = None


class Service:
    __slots__ = ("jid", "lock", "nodes", "pep")

    def __init__(self, jid: str, pep: bool) -> None:
        self.jid = jid
        self.pep = pep
        self.nodes: dict[str, Node] = {}
        self.lock = asyncio.Lock()

    def affiliation(self, node: Node, bare: str) -> str:
        if self.pep and bare == self.jid:
            return "owner"
        return node.affiliations.get(bare, "none")


PresenceAllowed = Callable[[Service, str], Awaitable[bool]]
#: told of each change once it is stored: (service, node, "publish" | "retract" | "delete" |
#: "purge", the item published or None, the item id or "")
Observer = Callable[[Service, str, str, "Item | None", str], Awaitable[None]]
PresenceTargets = Callable[[Service, Node, Element], Awaitable[Iterable[str]]]
Send = Callable[[Element], None]


class PubSub:
    """Every service of the node, their nodes and the operations on them."""

    def __init__(self, store: PubSubStore, send: Send, *, max_items: int, max_item_size: int,
                 max_nodes: int, now: Callable[[], float]) -> None:
        self.store = store
        self.send = send
        self.max_items = max_items
        self.max_item_size = max_item_size
        self.max_nodes = max_nodes
        self.now = now
        self.services: dict[str, Service] = {}
        #: services with at least one stored node (others need no database read)
        self.known: set[str] = set()
        self._seq = 0
        self.presence_allowed: PresenceAllowed | None = None
        self.presence_targets: PresenceTargets | None = None
        self.observers: list[Observer] = []
        #: who (a bare JID) may create nodes on a service that is not PEP; None: anyone
        self.may_create_node: Callable[[str], bool] | None = None
        #: subscriber's bare JID -> (service, node) it subscribed to (with its bare or a full
        #: JID): who gets last items when coming online, without loading every service
        self.by_subscriber: dict[str, set[tuple[str, str]]] = {}

    async def start(self) -> None:
        self.known = await self.store.services()
        self._seq = await self.store.max_seq()
        for service, node, jid in await self.store.all_subscriptions():
            self._index(service, node, jid, True)

    def _index(self, service: str, node: str, jid: str, add: bool) -> None:
        bare = jid.split("/", 1)[0]
        if add:
            self.by_subscriber.setdefault(bare, set()).add((service, node))
            return
        entries = self.by_subscriber.get(bare)
        if entries is not None:
            entries.discard((service, node))
            if not entries:
                del self.by_subscriber[bare]

    async def remove_subscription(self, svc: Service, node: Node, jid: str) -> None:
        await self.store.set_subscription(svc.jid, node.name, jid, None)
        node.subscriptions.pop(jid, None)
        if not any(j.split("/", 1)[0] == jid.split("/", 1)[0] for j in node.subscriptions):
            self._index(svc.jid, node.name, jid, False)

    def next_seq(self) -> int:
        self._seq = max(int(self.now() * 1_000_000), self._seq + 1)
        return self._seq

    def default_config(self, pep: bool) -> NodeConfig:
        return NodeConfig(access_model="presence" if pep else "open")

    # -- services -------------------------------------------------------------------------------
    async def service(self, jid: str, pep: bool) -> Service:
        svc = self.services.get(jid)
        if svc is not None:
            return svc
        svc = Service(jid, pep)
        if jid in self.known:
            default = self.default_config(pep)
            for s in await self.store.load(jid):
                node = Node(s.name, NodeConfig.from_json(s.config, default), s.created,
                            s.affiliations, s.subscriptions,
                            Item.from_stored(s.last) if s.last is not None else None)
                if not node.config.persist_items:
                    node.volatile = {}
                svc.nodes[s.name] = node
        # another task may have loaded it meanwhile: keep the first
        return self.services.setdefault(jid, svc)

    async def drop_service(self, jid: str) -> None:
        svc = await self.service(jid, pep=True)
        for node in svc.nodes.values():
            for sub in node.subscriptions:
                self._index(jid, node.name, sub, False)
        await self.store.delete_service(jid)
        self.services.pop(jid, None)
        self.known.discard(jid)

    # -- permission checks ----------------------------------------------------------------------
    @staticmethod
    def get_node(svc: Service, name: str) -> Node:
        node = svc.nodes.get(name)
        if node is None:
            raise StanzaError("item-not-found", f"no node {name!r}")
        return node

    async def may_access(self, svc: Service, node: Node, bare: str) -> StanzaError | None:
        """Why ``bare`` may not subscribe to or read ``node`` (None: it may)."""
        aff = svc.affiliation(node, bare)
        if aff == "outcast":
            return StanzaError("forbidden", "you are banned from this node")
        if aff in ("owner", "publisher", "member"):
            return None
        model = node.config.access_model
        if model == "open":
            return None
        if model == "presence":
            if self.presence_allowed is not None and await self.presence_allowed(svc, bare):
                return None
            return perr("not-authorized", "presence-subscription-required",
                        "this node is for the owner's contacts (presence subscription)")
        return perr("not-allowed", "closed-node", "this node is for its whitelist only")

    def _require_owner(self, svc: Service, node: Node, bare: str) -> None:
        if svc.affiliation(node, bare) != "owner":
            raise StanzaError("forbidden", "only the node's owner may do that")

    def _may_create(self, svc: Service, bare: str) -> None:
        if svc.pep:
            if bare != svc.jid:
                raise StanzaError("forbidden", "only the account may create nodes in its PEP "
                                  "service")
        elif self.may_create_node is not None and not self.may_create_node(bare):
            # XEP-0060 §8.1.3.1
            raise StanzaError("forbidden", "only the server's administrators create nodes "
                              "on this service")

    # -- owner operations -----------------------------------------------------------------------
    async def create(self, svc: Service, name: str, bare: str, values: dict[str, str]
                     ) -> Node:
        self._may_create(svc, bare)
        if name in svc.nodes:
            raise StanzaError("conflict", f"node {name!r} exists")
        if len(svc.nodes) >= self.max_nodes:
            raise StanzaError("not-allowed", f"a service holds at most {self.max_nodes} nodes "
                              "(pubsub.max_nodes)")
        config = apply(self.default_config(svc.pep), values, svc.pep, self.max_items)
        created = int(self.now())
        await self.store.create_node(svc.jid, name, config.to_json(), created, bare)
        node = Node(name, config, created, {bare: "owner"})
        if not config.persist_items:
            node.volatile = {}
        svc.nodes[name] = node
        self.known.add(svc.jid)
        return node

    async def configure(self, svc: Service, name: str, bare: str, values: dict[str, str]
                        ) -> None:
        node = self.get_node(svc, name)
        self._require_owner(svc, node, bare)
        await self._set_config(svc, node, apply(node.config, values, svc.pep, self.max_items))

    async def _set_config(self, svc: Service, node: Node, config: NodeConfig) -> None:
        await self.store.set_config(svc.jid, node.name, config.to_json())
        if config.max_items < node.config.max_items:
            await self.store.trim(svc.jid, node.name, config.max_items)
        old = node.config
        node.config = config
        if config.persist_items and not old.persist_items:
            for item in (node.volatile or {}).values():
                await self.store.publish(svc.jid, node.name, self._stored(item),
                                         config.max_items)
            node.volatile = None
        elif not config.persist_items and old.persist_items:
            node.volatile = {}
            await self.store.purge(svc.jid, node.name)
            if node.last is not None:
                node.volatile[node.last.id] = node.last
        if node.volatile is not None:
            while len(node.volatile) > config.max_items:
                del node.volatile[next(iter(node.volatile))]

    async def delete(self, svc: Service, name: str, bare: str) -> None:
        node = self.get_node(svc, name)
        self._require_owner(svc, node, bare)
        await self.store.delete_node(svc.jid, name)
        del svc.nodes[name]
        for sub in node.subscriptions:
            self._index(svc.jid, name, sub, False)
        if not svc.nodes:
            self.known.discard(svc.jid)
        if node.config.notify_delete:
            event = Element("event", PUBSUB_EVENT)
            event.add("delete", attrs={"node": name})
            await self.notify(svc, node, event)
        await self._observe(svc, name, "delete", None, "")

    async def purge(self, svc: Service, name: str, bare: str) -> None:
        node = self.get_node(svc, name)
        self._require_owner(svc, node, bare)
        await self.store.purge(svc.jid, name)
        node.last = None
        if node.volatile is not None:
            node.volatile.clear()
        event = Element("event", PUBSUB_EVENT)
        event.add("purge", attrs={"node": name})
        await self.notify(svc, node, event)
        await self._observe(svc, name, "purge", None, "")

    async def set_affiliations(self, svc: Service, name: str, bare: str,
                               changes: dict[str, str]) -> None:
        node = self.get_node(svc, name)
        self._require_owner(svc, node, bare)
        for jid, aff in changes.items():
            if aff not in AFFILIATIONS:
                raise StanzaError("bad-request", f"unknown affiliation {aff!r}")
            if jid == bare and aff != "owner":
                raise StanzaError("not-acceptable", "an owner cannot give up ownership here")
        for jid, aff in changes.items():
            value = None if aff == "none" else aff
            await self.store.set_affiliation(svc.jid, name, jid, value)
            if value is None:
                node.affiliations.pop(jid, None)
            else:
                node.affiliations[jid] = value

    # -- publishing -----------------------------------------------------------------------------
    def check_payload(self, item: Element) -> Element | None:
        payloads = [c for c in item.elements]
        if len(payloads) > 1:
            raise perr("bad-request", "invalid-payload", "an item carries one payload")
        if not payloads:
            return None
        size = len(payloads[0].to_str("").encode())
        if size > self.max_item_size:
            raise perr("not-acceptable", "payload-too-big",
                       f"the item is {size} bytes; pubsub.max_item_size allows "
                       f"{self.max_item_size}")
        return payloads[0]

    @staticmethod
    def _check_publish(config: NodeConfig, with_item: bool, payload: Element | None) -> None:
        """What the node's event type asks of a publish request (XEP-0060 §4.3, §7.1.3.5,
        §7.1.3.6): a transient notification-only node takes no item, every other node one;
        a node that delivers payloads wants one, of its ``pubsub#type`` when it has one."""
        if not config.persist_items and not config.deliver_payloads:
            if with_item:
                raise perr("bad-request", "item-forbidden", "this node is transient and "
                           "notification-only: publish no item")
            return
        if not with_item:
            raise perr("bad-request", "item-required", "publish an item to this node")
        if payload is None:
            if config.deliver_payloads:
                raise perr("bad-request", "payload-required", "this node needs a payload")
        elif config.type and payload.xmlns != config.type:
            raise perr("bad-request", "invalid-payload",
                       f"this node's payloads are of namespace {config.type}")

    async def publish(self, svc: Service, name: str, bare: str, item_id: str | None,
                      payload: Element | None, options: dict[str, str] | None,
                      with_item: bool = True) -> str:
        """Publish an item (``with_item`` False: the request had no ``<item/>``, which only a
        transient notification-only node takes; it notifies with an empty ``<items/>`` and
        keeps nothing). Returns the item's id ("" when there is none)."""
        async with svc.lock:
            node = svc.nodes.get(name)
            if node is None:
                # checked before the node is made, so that a refused publish creates nothing
                self._may_create(svc, bare)
                # publish-options are preconditions (XEP-0060 §7.1.5): one that no
                # configuration of ours can meet (a value out of bounds, an unknown option) is
                # unmet, as on an existing node, and the client may configure and retry
                why = unmet(self.default_config(svc.pep), options or {}, svc.pep,
                            self.max_items, values_only=True)
                if why is not None:
                    raise perr("conflict", "precondition-not-met", why)
                self._check_publish(apply(self.default_config(svc.pep), options or {}, svc.pep,
                                          self.max_items), with_item, payload)
                node = await self.create(svc, name, bare, options or {})
            elif options:
                why = unmet(node.config, options, svc.pep, self.max_items)
                if why is not None:
                    raise perr("conflict", "precondition-not-met", why)
            aff = svc.affiliation(node, bare)
            if aff not in ("owner", "publisher", "publish-only") and not (
                    node.config.publish_model == "open" and aff != "outcast"):
                raise StanzaError("forbidden", "you may not publish to this node")
            self._check_publish(node.config, with_item, payload)
            item: Item | None = None
            if with_item:
                item = Item(item_id or secrets.token_hex(8), bare, payload, self.next_seq())
                if node.volatile is None:
                    await self.store.publish(svc.jid, name, self._stored(item),
                                             node.config.max_items)
                else:
                    node.volatile.pop(item.id, None)
                    node.volatile[item.id] = item
                    while len(node.volatile) > node.config.max_items:
                        del node.volatile[next(iter(node.volatile))]
                node.last = item
        event = Element("event", PUBSUB_EVENT)
        items = event.add("items", attrs={"node": name})
        if item is None:  # transient and notification-only: an empty <items/>, nothing kept
            await self.notify(svc, node, event)
            return ""
        items.children.append(item.element(node.config.deliver_payloads, PUBSUB_EVENT))
        await self.notify(svc, node, event)
        await self._observe(svc, name, "publish", item, item.id)
        return item.id

    async def _observe(self, svc: Service, name: str, kind: str, item: Item | None,
                       item_id: str) -> None:
        for observer in list(self.observers):
            await observer(svc, name, kind, item, item_id)

    @staticmethod
    def _stored(item: Item) -> StoredItem:
        payload = item.payload.to_str("") if item.payload is not None else ""
        return StoredItem(item.id, item.publisher, payload, item.seq)

    async def retract(self, svc: Service, name: str, bare: str, item_id: str, notify: bool
                      ) -> None:
        node = self.get_node(svc, name)
        if svc.affiliation(node, bare) not in ("owner", "publisher"):
            raise StanzaError("forbidden", "you may not retract items of this node")
        if node.volatile is not None:
            found = node.volatile.pop(item_id, None) is not None
        else:
            found = await self.store.retract(svc.jid, name, item_id)
        if not found:
            raise StanzaError("item-not-found", f"no item {item_id!r}")
        if node.last is not None and node.last.id == item_id:
            if node.volatile is not None:
                node.last = next(reversed(node.volatile.values()), None)
            else:
                newest = await self.store.newest(svc.jid, name)
                node.last = Item.from_stored(newest) if newest is not None else None
        if notify or node.config.notify_retract:
            event = Element("event", PUBSUB_EVENT)
            event.add("items", attrs={"node": name}).add("retract", attrs={"id": item_id})
            await self.notify(svc, node, event)
        await self._observe(svc, name, "retract", None, item_id)

    async def items(self, svc: Service, name: str, bare: str, max_items: int | None,
                    ids: list[str] | None) -> list[Item]:
        node = self.get_node(svc, name)
        denied = await self.may_access(svc, node, bare)
        if denied is not None:
            raise denied
        if node.volatile is not None:
            items = list(node.volatile.values())
            if ids is not None:
                items = [i for i in items if i.id in ids]
            elif max_items is not None:
                items = items[-max_items:] if max_items > 0 else []
            return items
        if max_items == 1 and ids is None:
            return [node.last] if node.last is not None else []
        return [Item.from_stored(s) for s in await self.store.items(svc.jid, name, max_items,
                                                                      ids)]

    # -- subscriptions --------------------------------------------------------------------------
    async def subscribe(self, svc: Service, name: str, bare: str, jid: str) -> str:
        node = self.get_node(svc, name)
        denied = await self.may_access(svc, node, bare)
        if denied is not None:
            raise denied
        subid = node.subscriptions.get(jid)
        if subid is None:
            subid = secrets.token_hex(8)
            await self.store.set_subscription(svc.jid, name, jid, subid)
            node.subscriptions[jid] = subid
            self._index(svc.jid, name, jid, True)
        if node.last is not None and node.config.send_last_published_item != "never":
            self.send_last(svc, node, [jid])
        return subid

    async def unsubscribe(self, svc: Service, name: str, jid: str) -> None:
        node = self.get_node(svc, name)
        if jid not in node.subscriptions:
            raise perr("unexpected-request", "not-subscribed", "you are not subscribed")
        await self.remove_subscription(svc, node, jid)

    # -- notifications --------------------------------------------------------------------------
    def message(self, svc: Service, node: Node, to: str, event: Element) -> Element:
        msg = Element("message", attrs={"from": svc.jid, "to": to,
                                        "type": node.config.notification_type,
                                        "id": secrets.token_hex(6)})
        msg.children.append(event)
        return msg

    async def notify(self, svc: Service, node: Node, event: Element) -> None:
        """Send ``event`` to the node's subscribers and, through ``presence_targets``, to
        whoever asked for it by entity capabilities; each JID once, each allowed access."""
        targets: dict[str, None] = {}
        for jid in node.subscriptions:
            targets[jid] = None
        if self.presence_targets is not None:
            for jid in await self.presence_targets(svc, node, event):
                targets[jid] = None
        allowed: dict[str, bool] = {}
        for jid in targets:
            bare = jid.split("/", 1)[0]
            ok = allowed.get(bare)
            if ok is None:
                ok = allowed[bare] = await self.may_access(svc, node, bare) is None
            if ok:
                self.send(self.message(svc, node, jid, event))

    def send_last(self, svc: Service, node: Node, to: Iterable[str]) -> None:
        """The node's last item to each JID (on subscription, on presence), stamped with when
        it was published (XEP-0060 §6.1.7, XEP-0203: a client tells it from a new event)."""
        last = node.last
        if last is None:
            return
        event = Element("event", PUBSUB_EVENT)
        event.add("items", attrs={"node": node.name}).children.append(
            last.element(node.config.deliver_payloads, PUBSUB_EVENT))
        # an item's seq is its publication time in microseconds (next_seq)
        delay = Element("delay", NS.DELAY, {"from": svc.jid,
                                            "stamp": xmpp_datetime(last.seq / 1_000_000)})
        for jid in to:
            msg = self.message(svc, node, jid, event)
            msg.children.append(delay)
            self.send(msg)
