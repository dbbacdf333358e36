"""Chatroom bookmarks: XEP-0402 PEP native bookmarks, kept in step with the two legacy forms of
XEP-0048 (one ``<storage xmlns='storage:bookmarks'/>`` element holding every bookmark), in
XEP-0049 private XML storage (``urn:xmpp:bookmarks:1#compat``) and in the XEP-0223 PEP node
``storage:bookmarks`` (``urn:xmpp:bookmarks:1#compat-pep``).

The XEP-0402 node (one item per room, id = the room's JID) is the only copy of the truth:
* a private-storage read of ``storage:bookmarks`` is built from it, a private-storage write is
  turned into publishes and retractions on it (and mirrored to the XEP-0223 node);
* a publish to the XEP-0223 node does the same;
* a change to the XEP-0402 node rewrites the XEP-0223 node's one item.
What the legacy form cannot say is kept where it can: a room's ``<extensions/>`` survive a
legacy write of that room; legacy ``<url/>`` bookmarks have no XEP-0402 form and are dropped.
"""

from __future__ import annotations

from hongyan.modules.private import Private
from hongyan.modules.pubsub import PubSubModule, Service
from hongyan.modules.pubsub.engine import Item
from hongyan.server.module import Module
from hongyan.xmpp.element import Element
from hongyan.xmpp.jid import JID, JIDError

BOOKMARKS = "urn:xmpp:bookmarks:1"
LEGACY = "storage:bookmarks"
#: XEP-0402 §3 and XEP-0223 §3: private nodes
BOOKMARKS_OPTIONS = {"pubsub#access_model": "whitelist", "pubsub#max_items": "max",
                     "pubsub#send_last_published_item": "never",
                     "pubsub#persist_items": "true"}
LEGACY_OPTIONS = {"pubsub#access_model": "whitelist", "pubsub#persist_items": "true"}


def _truthy(v: str | None) -> bool:
    return v in ("1", "true")


def to_legacy(conferences: dict[str, Element]) -> Element:
    storage = Element("storage", LEGACY)
    for jid, conf in conferences.items():
        attrs = {"jid": jid, "autojoin": "true" if _truthy(conf.attrs.get("autojoin"))
                 else "false"}
        if conf.attrs.get("name"):
            attrs["name"] = conf.attrs["name"]
        el = storage.add("conference", attrs=attrs)
        for child in ("nick", "password"):
            text = conf.find_text(child)
            if text:
                el.add(child, text=text)
    return storage


def from_legacy(storage: Element, current: dict[str, Element]) -> dict[str, Element]:
    out: dict[str, Element] = {}
    for c in storage.find_all("conference", LEGACY):
        try:
            jid = JID.parse(c.attrs.get("jid", "")).bare_str
        except JIDError:
            continue
        attrs = {"autojoin": "true" if _truthy(c.attrs.get("autojoin")) else "false"}
        if c.attrs.get("name"):
            attrs["name"] = c.attrs["name"]
        conf = Element("conference", BOOKMARKS, attrs)
        for child in ("nick", "password"):
            text = c.find_text(child, LEGACY)
            if text:
                conf.add(child, text=text)
        old = current.get(jid)
        ext = old.find("extensions") if old is not None else None
        if ext is not None:
            conf.children.append(ext)
        out[jid] = conf
    return out


class Bookmarks(Module):
    name = "bookmarks"
    xeps = {"0402": "1.2.0", "0048": "1.2", "0223": "1.1"}
    depends = ("private", "pubsub", "pep")
    account_features = frozenset({BOOKMARKS + "#compat", BOOKMARKS + "#compat-pep"})

    async def start(self) -> None:
        self.engine = self.api.module(PubSubModule).engine
        self.private = self.api.module(Private)
        self.private.provide(LEGACY, "storage", self)
        self.engine.observers.append(self._observe)
        #: accounts whose bookmarks this module is rewriting (their changes are not echoed)
        self._syncing: set[str] = set()

    async def stop(self) -> None:
        self.private.provide(LEGACY, "storage", None)
        if self._observe in self.engine.observers:
            self.engine.observers.remove(self._observe)

    def _bare(self, username: str) -> str:
        return f"{username}@{self.api.domain}"

    async def conferences(self, username: str) -> dict[str, Element]:
        """Room JID -> its XEP-0402 ``<conference/>``."""
        bare = self._bare(username)
        svc = await self.engine.service(bare, pep=True)
        if BOOKMARKS not in svc.nodes:
            return {}
        items = await self.engine.items(svc, BOOKMARKS, bare, None, None)
        return {i.id: i.payload for i in items
                if i.payload is not None and i.payload.name == "conference"}

    # -- XEP-0049 -------------------------------------------------------------------------------
    async def get_private(self, username: str) -> Element | None:
        return to_legacy(await self.conferences(username))

    async def set_private(self, username: str, el: Element) -> None:
        await self._apply(username, el, mirror=True)

    # -- the conversions ------------------------------------------------------------------------
    async def _publish(self, svc: Service, node: str, item_id: str, payload: Element,
                       options: dict[str, str]) -> None:
        await self.engine.publish(svc, node, svc.jid, item_id, payload,
                                  None if node in svc.nodes else options)

    async def _apply(self, username: str, storage: Element, mirror: bool) -> None:
        """Make the XEP-0402 node say what a legacy ``<storage/>`` says."""
        self._syncing.add(username)
        try:
            current = await self.conferences(username)
            wanted = from_legacy(storage, current)
            svc = await self.engine.service(self._bare(username), pep=True)
            for jid, conf in wanted.items():
                old = current.get(jid)
                if old is None or old.to_str("") != conf.to_str(""):
                    await self._publish(svc, BOOKMARKS, jid, conf, BOOKMARKS_OPTIONS)
            for jid in current.keys() - wanted.keys():
                await self.engine.retract(svc, BOOKMARKS, svc.jid, jid, True)
            if mirror:
                await self._publish(svc, LEGACY, "current", to_legacy(wanted), LEGACY_OPTIONS)
        finally:
            self._syncing.discard(username)

    async def _observe(self, svc: Service, node: str, kind: str, item: Item | None,
                       item_id: str) -> None:
        if not svc.pep or node not in (BOOKMARKS, LEGACY):
            return
        username = svc.jid.split("@", 1)[0]
        if username in self._syncing:
            return
        if node == LEGACY:
            if kind == "publish" and item is not None and item.payload is not None and \
                    item.payload.name == "storage" and item.payload.xmlns == LEGACY:
                await self._apply(username, item.payload, mirror=False)
            return
        self._syncing.add(username)
        try:
            legacy = to_legacy(await self.conferences(username))
            await self._publish(svc, LEGACY, "current", legacy, LEGACY_OPTIONS)
        finally:
            self._syncing.discard(username)


MODULE = Bookmarks
