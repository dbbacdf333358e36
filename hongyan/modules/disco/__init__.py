"""XEP-0030 Service Discovery and XEP-0115 Entity Capabilities for the server.

Features are not listed here: every loaded module declares its own, and this module collects
them, so disco advertises exactly what is loaded. The server's XEP-0157 contact addresses
(``[server.contacts]``), when any is set, are a XEP-0128 extended form of its disco#info
(FORM_TYPE ``http://jabber.org/network/serverinfo``), and count in the caps hash.
Accounts answer disco#info for their bare JID (identity account/registered) with the features
modules declare for accounts.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable

from hongyan.server.hooks import StreamFeatures
from hongyan.server.module import Iq, Module, hook, iq_handler
from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element
from hongyan.xmpp.errors import StanzaError

CAPS_NODE = "https://hongyan.im"
SERVERINFO = "http://jabber.org/network/serverinfo"

#: an extended form (XEP-0128): its FORM_TYPE and its fields (var -> values)
Form = tuple[str, dict[str, list[str]]]

#: what answers disco#info or disco#items on the server's nodes a module serves
#: (:meth:`Disco.serve_nodes`): (kind "info"/"items", node, request) -> the query payload, or
#: None when the node is not the module's (a StanzaError raised is the answer)
NodeHandler = Callable[[str, str, Iq], "Element | None"]


def caps_ver(identities: list[tuple[str, str, str]], features: list[str],
             forms: tuple[Form, ...] = ()) -> str:
    """XEP-0115 §5.1 verification string, extended forms included (steps 6-7)."""
    s = ""
    for cat, typ, name in sorted(identities):
        s += f"{cat}/{typ}//{name}<"
    for f in sorted(set(features)):
        s += f + "<"
    for form_type, fields in sorted(forms):
        s += form_type + "<"
        for var in sorted(fields):
            s += var + "<" + "".join(v + "<" for v in sorted(fields[var]))
    return base64.b64encode(hashlib.sha1(s.encode()).digest()).decode()


def form_element(form_type: str, fields: dict[str, list[str]]) -> Element:
    x = Element("x", NS.DATA_FORMS, {"type": "result"})
    x.add("field", attrs={"var": "FORM_TYPE", "type": "hidden"}).add("value", text=form_type)
    for var, values in fields.items():
        f = x.add("field", attrs={"var": var, "type": "list-multi"})
        for v in values:
            f.add("value", text=v)
    return x


class Disco(Module):
    name = "disco"
    xeps = {"0030": "2.5rc3", "0115": "1.6.0"}
    features = frozenset({NS.DISCO_INFO, NS.DISCO_ITEMS})
    identities = (("server", "im", "Hongyan"),)

    async def start(self) -> None:
        self._nodes: list[NodeHandler] = []
        contacts = self.api.config.server.contacts.fields()
        self._forms: tuple[Form, ...] = ((SERVERINFO, contacts),) if contacts else ()

    # -- public API (ad-hoc commands) -----------------------------------------------------------
    def serve_nodes(self, handler: NodeHandler) -> Callable[[], None]:
        """Let ``handler`` answer disco#info and disco#items on the server's nodes it knows;
        returns what removes it."""
        self._nodes.append(handler)
        return lambda: self._nodes.remove(handler)

    def _node(self, kind: str, node: str, iq: Iq) -> Element:
        for handler in self._nodes:
            q = handler(kind, node, iq)
            if q is not None:
                return iq.result(q)
        raise StanzaError("item-not-found")

    def _server_info(self) -> tuple[list[tuple[str, str, str]], list[str]]:
        identities: list[tuple[str, str, str]] = []
        features: set[str] = set()
        for mod in self.api.loaded():
            identities.extend(mod.identities)
            features |= mod.features
        return identities, sorted(features)

    def _account_features(self) -> list[str]:
        # the bare JID answers both (on_account_items), so it lists both
        features: set[str] = {NS.DISCO_INFO, NS.DISCO_ITEMS}
        for mod in self.api.loaded():
            features |= mod.account_features
        return sorted(features)

    @staticmethod
    def _info(identities: list[tuple[str, str, str]], features: list[str],
              node: str | None, forms: tuple[Form, ...] = ()) -> Element:
        q = Element("query", NS.DISCO_INFO)
        if node:
            q.attrs["node"] = node
        for cat, typ, name in identities:
            attrs = {"category": cat, "type": typ}
            if name:
                attrs["name"] = name
            q.add("identity", attrs=attrs)
        for f in features:
            q.add("feature", attrs={"var": f})
        for form_type, fields in forms:
            q.append(form_element(form_type, fields))
        return q

    @iq_handler(NS.DISCO_INFO, "query", "get", scope="host")
    def on_info(self, iq: Iq) -> Element:
        node = iq.payload.attrs.get("node")
        identities, features = self._server_info()
        if node and node != f"{CAPS_NODE}#{caps_ver(identities, features, self._forms)}":
            return self._node("info", node, iq)
        return iq.result(self._info(identities, features, node, self._forms))

    @iq_handler(NS.DISCO_ITEMS, "query", "get", scope="host")
    def on_items(self, iq: Iq) -> Element:
        node = iq.payload.attrs.get("node")
        if node:
            return self._node("items", node, iq)
        q = Element("query", NS.DISCO_ITEMS)
        for domain in sorted(self.api.router.components):
            q.add("item", attrs={"jid": domain})
        return iq.result(q)

    @iq_handler(NS.DISCO_INFO, "query", "get", scope=("self", "bare"))
    def on_account_info(self, iq: Iq) -> Element:
        if iq.payload.attrs.get("node"):
            raise StanzaError("item-not-found")
        identities = [("account", "registered", "")]
        for mod in self.api.loaded():
            identities.extend(mod.account_identities)
        return iq.result(self._info(identities, self._account_features(), None))

    @iq_handler(NS.DISCO_ITEMS, "query", "get", scope=("self", "bare"))
    def on_account_items(self, iq: Iq) -> Element:
        if iq.payload.attrs.get("node"):
            raise StanzaError("item-not-found")
        return iq.result(Element("query", NS.DISCO_ITEMS))

    @hook(StreamFeatures)
    def on_features(self, ev: StreamFeatures) -> None:
        identities, features = self._server_info()
        ev.features.add("c", NS.CAPS, {"hash": "sha-1", "node": CAPS_NODE,
                                        "ver": caps_ver(identities, features,
                                                        self._forms)})


MODULE = Disco
