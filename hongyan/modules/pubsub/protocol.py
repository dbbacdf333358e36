"""XEP-0060 requests (``<pubsub/>`` and ``<pubsub xmlns='…#owner'/>``) read into engine calls
and their results written back: the part both front ends (PEP and the service) share."""

from __future__ import annotations

import secrets

from hongyan.modules.pubsub import forms
from hongyan.modules.pubsub.engine import PUBSUB, PubSub, Service, perr
from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element
from hongyan.xmpp.errors import StanzaError
from hongyan.xmpp.jid import JID, JIDError

PUBSUB_OWNER = PUBSUB + "#owner"

#: disco#info features, one per implemented XEP-0060 feature (§10)
FEATURES = tuple(PUBSUB + "#" + f for f in (
    "access-open", "access-whitelist", "auto-create", "config-node", "config-node-max",
    "create-and-configure",
    "create-nodes", "delete-items", "delete-nodes", "item-ids", "last-published",
    "modify-affiliations", "outcast-affiliation",
    "persistent-items", "publish", "publish-only-affiliation", "publish-options",
    "publisher-affiliation", "purge-nodes",
    "retract-items", "retrieve-affiliations", "retrieve-default", "retrieve-items",
    "retrieve-subscriptions", "subscribe", "member-affiliation",
))
PEP_FEATURES = (*FEATURES, PUBSUB + "#access-presence", PUBSUB + "#auto-subscribe",
                PUBSUB + "#filtered-notifications", PUBSUB + "#presence-notifications")
INSTANT_NODES = PUBSUB + "#instant-nodes"


def _node_attr(el: Element, required: bool = True) -> str:
    name = el.attrs.get("node", "")
    if not name and required:
        raise perr("bad-request", "nodeid-required", "the request names no node")
    return name


def _form(el: Element | None) -> Element | None:
    if el is None:
        return None
    return el.find("x", NS.DATA_FORMS)


def _values(x: Element | None, want_type: str) -> dict[str, str]:
    if x is None:
        return {}
    ftype = forms.form_type(x)
    if ftype is not None and ftype != want_type:
        raise StanzaError("bad-request", f"expected a {want_type} form")
    return forms.parse_values(x)


class Protocol:
    def __init__(self, engine: PubSub) -> None:
        self.engine = engine

    async def handle(self, svc: Service, stanza_type: str, payload: Element, requester: JID
                     ) -> Element | None:
        """Answer one request; the returned element goes in the IQ result (None: empty)."""
        if payload.xmlns == PUBSUB_OWNER:
            return await self._owner(svc, stanza_type, payload, requester)
        children = list(payload.elements)
        if not children:
            raise StanzaError("bad-request", "an empty pubsub request")
        op = children[0]
        bare = requester.bare_str
        e = self.engine
        if stanza_type == "set":
            if op.name == "publish":
                return await self._publish(svc, payload, op, bare)
            if op.name == "create":
                name = op.attrs.get("node", "")
                instant = not name
                if instant:
                    if svc.pep:
                        raise perr("not-acceptable", "nodeid-required", "PEP nodes need a name")
                    name = secrets.token_hex(8)
                values = _values(_form(payload.find("configure")), forms.NODE_CONFIG)
                await e.create(svc, name, bare, values)
                if instant:
                    out = Element("pubsub", PUBSUB)
                    out.add("create", attrs={"node": name})
                    return out
                return None
            if op.name == "retract":
                name = _node_attr(op)
                items = op.find_all("item")
                if len(items) != 1 or not items[0].attrs.get("id"):
                    raise perr("bad-request", "item-required", "retract one item by its id")
                notify = op.attrs.get("notify") in ("1", "true")
                await e.retract(svc, name, bare, items[0].attrs["id"], notify)
                return None
            if op.name == "subscribe":
                name = _node_attr(op)
                jid = self._subscriber(op, requester)
                subid = await e.subscribe(svc, name, bare, jid)
                out = Element("pubsub", PUBSUB)
                out.add("subscription", attrs={"node": name, "jid": jid, "subid": subid,
                                               "subscription": "subscribed"})
                return out
            if op.name == "unsubscribe":
                name = _node_attr(op)
                jid = self._subscriber(op, requester)
                await e.unsubscribe(svc, name, jid)
                return None
            raise perr("feature-not-implemented", "unsupported", feature=op.name)
        if op.name == "items":
            return await self._items(svc, op, bare)
        if op.name == "subscriptions":
            out = Element("pubsub", PUBSUB)
            subs = out.add("subscriptions")
            want = op.attrs.get("node")
            for node in svc.nodes.values():
                if want and node.name != want:
                    continue
                for jid, subid in node.subscriptions.items():
                    if JID.parse(jid).bare_str == bare:
                        subs.add("subscription", attrs={"node": node.name, "jid": jid,
                                                        "subid": subid,
                                                        "subscription": "subscribed"})
            return out
        if op.name == "affiliations":
            out = Element("pubsub", PUBSUB)
            affs = out.add("affiliations")
            want = op.attrs.get("node")
            for node in svc.nodes.values():
                if want and node.name != want:
                    continue
                aff = svc.affiliation(node, bare)
                if aff != "none":
                    affs.add("affiliation", attrs={"node": node.name, "affiliation": aff})
            return out
        raise perr("feature-not-implemented", "unsupported", feature=op.name)

    @staticmethod
    def _subscriber(op: Element, requester: JID) -> str:
        raw = op.attrs.get("jid", "")
        try:
            jid = JID.parse(raw)
        except JIDError:
            raise perr("bad-request", "invalid-jid", "the subscription JID is malformed") \
                from None
        if jid.bare_str != requester.bare_str:
            raise perr("bad-request", "invalid-jid", "you can only subscribe yourself")
        return str(jid)

    async def _publish(self, svc: Service, payload: Element, op: Element, bare: str
                       ) -> Element:
        name = _node_attr(op)
        items = op.find_all("item")
        if len(items) > 1:
            raise perr("bad-request", "invalid-payload", "publish one item at a time")
        item_el = items[0] if items else None
        item_id = item_el.attrs.get("id") or None if item_el is not None else None
        content = self.engine.check_payload(item_el) if item_el is not None else None
        options = None
        po = payload.find("publish-options")
        if po is not None:
            x = _form(po)
            if x is not None and forms.form_type(x) not in (None, forms.PUBLISH_OPTIONS):
                raise StanzaError("bad-request", "publish-options needs a "
                                  f"{forms.PUBLISH_OPTIONS} form")
            options = forms.parse_values(x) if x is not None else None
        new_id = await self.engine.publish(svc, name, bare, item_id, content, options,
                                           with_item=item_el is not None)
        out = Element("pubsub", PUBSUB)
        published = out.add("publish", attrs={"node": name})
        if new_id:
            published.add("item", attrs={"id": new_id})
        return out

    async def _items(self, svc: Service, op: Element, bare: str) -> Element:
        name = _node_attr(op)
        max_items: int | None = None
        if "max_items" in op.attrs:
            try:
                max_items = int(op.attrs["max_items"])
            except ValueError:
                raise StanzaError("bad-request", "max_items must be a number") from None
            if max_items < 0:
                raise StanzaError("bad-request", "max_items must not be negative")
        ids = [i.attrs["id"] for i in op.find_all("item") if i.attrs.get("id")] or None
        found = await self.engine.items(svc, name, bare, max_items, ids)
        out = Element("pubsub", PUBSUB)
        items = out.add("items", attrs={"node": name})
        for item in found:
            items.children.append(item.element())
        return out

    async def _owner(self, svc: Service, stanza_type: str, payload: Element, requester: JID
                     ) -> Element | None:
        children = list(payload.elements)
        if not children:
            raise StanzaError("bad-request", "an empty pubsub#owner request")
        op = children[0]
        bare = requester.bare_str
        e = self.engine
        if op.name == "default" and stanza_type == "get":
            out = Element("pubsub", PUBSUB_OWNER)
            out.add("default").children.append(forms.render(e.default_config(svc.pep), svc.pep))
            return out
        name = _node_attr(op)
        if op.name == "configure":
            if stanza_type == "get":
                node = e.get_node(svc, name)
                if svc.affiliation(node, bare) != "owner":
                    raise StanzaError("forbidden", "only the node's owner may do that")
                out = Element("pubsub", PUBSUB_OWNER)
                out.add("configure", attrs={"node": name}).children.append(
                    forms.render(node.config, svc.pep))
                return out
            x = _form(op)
            if x is None:
                raise StanzaError("bad-request", "configure needs a data form")
            if x.attrs.get("type") == "cancel":
                return None
            await e.configure(svc, name, bare, _values(x, forms.NODE_CONFIG))
            return None
        if op.name == "delete" and stanza_type == "set":
            await e.delete(svc, name, bare)
            return None
        if op.name == "purge" and stanza_type == "set":
            await e.purge(svc, name, bare)
            return None
        if op.name == "affiliations":
            node = e.get_node(svc, name)
            if svc.affiliation(node, bare) != "owner":
                raise StanzaError("forbidden", "only the node's owner may do that")
            if stanza_type == "get":
                out = Element("pubsub", PUBSUB_OWNER)
                affs = out.add("affiliations", attrs={"node": name})
                listed = dict(node.affiliations)
                if svc.pep:
                    listed[svc.jid] = "owner"
                for jid, aff in sorted(listed.items()):
                    affs.add("affiliation", attrs={"jid": jid, "affiliation": aff})
                return out
            changes: dict[str, str] = {}
            for a in op.find_all("affiliation"):
                try:
                    jid = JID.parse(a.attrs.get("jid", "")).bare_str
                except JIDError:
                    raise StanzaError("jid-malformed", "a bad affiliation JID") from None
                changes[jid] = a.attrs.get("affiliation", "")
            await e.set_affiliations(svc, name, bare, changes)
            return None
        if op.name == "subscriptions" and stanza_type == "get":
            node = e.get_node(svc, name)
            if svc.affiliation(node, bare) != "owner":
                raise StanzaError("forbidden", "only the node's owner may do that")
            out = Element("pubsub", PUBSUB_OWNER)
            subs = out.add("subscriptions", attrs={"node": name})
            for jid, subid in sorted(node.subscriptions.items()):
                subs.add("subscription", attrs={"jid": jid, "subid": subid,
                                                "subscription": "subscribed"})
            return out
        raise perr("feature-not-implemented", "unsupported", feature=op.name)
