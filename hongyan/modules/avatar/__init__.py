"""Avatars: XEP-0084 user avatars (PEP nodes ``urn:xmpp:avatar:data`` and
``urn:xmpp:avatar:metadata``, served by the PEP engine as any other node), XEP-0153 vCard-based
avatars, and the XEP-0398 conversion between them.

* A metadata publish whose ``<info/>`` points into the data node puts that image in the
  vCard's ``<PHOTO/>``; an empty ``<metadata/>`` (avatar switched off) removes it.
* A vCard stored with a ``<PHOTO><BINVAL/>`` publishes the image to the data node (item id = its
  SHA-1, as XEP-0084 wants) and its metadata; a vCard without one switches the avatar off.
* Every broadcast presence of the account carries the current hash in
  ``<x xmlns='vcard-temp:x:update'><photo/></x>`` (XEP-0153 §3.2), replacing what the client
  put there (XEP-0398 §4), so XEP-0153 contacts and MUC occupants see XEP-0084 avatars.
  The hash is read from the vCard once per account and then kept in memory.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

from hongyan.modules.pubsub import PubSubModule, Service
from hongyan.modules.pubsub.engine import Item
from hongyan.modules.vcard import VCard, VCardChanged
from hongyan.server.hooks import AccountDeleted, PresenceOutbound
from hongyan.server.module import Module, hook
from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element

AVATAR_DATA = "urn:xmpp:avatar:data"
AVATAR_METADATA = "urn:xmpp:avatar:metadata"
CONVERSION = "urn:xmpp:pep-vcard-conversion:0"


def vcard_photo(vcard: Element) -> tuple[str, bytes] | None:
    """(MIME type, image) of a vCard's embedded photo."""
    photo = vcard.find("PHOTO", NS.VCARD)
    if photo is None:
        return None
    b64 = "".join((photo.find_text("BINVAL", NS.VCARD) or "").split())
    if not b64:
        return None
    try:
        data = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        return None
    return (photo.find_text("TYPE", NS.VCARD) or "image/png").strip(), data


class Avatar(Module):
    name = "avatar"
    xeps = {"0084": "1.1.4", "0153": "1.1.1", "0398": "1.0.0"}
    depends = ("vcard", "pubsub", "pep")
    account_features = frozenset({CONVERSION})

    async def start(self) -> None:
        self.engine = self.api.module(PubSubModule).engine
        self.vcard = self.api.module(VCard)
        self.engine.observers.append(self._observe)
        #: username -> SHA-1 (hex) of the current avatar, "" for none
        self.hashes: dict[str, str] = {}
        self._syncing: set[str] = set()
        self._xs: dict[str, Element] = {}

    async def stop(self) -> None:
        if self._observe in self.engine.observers:
            self.engine.observers.remove(self._observe)

    async def avatar_hash(self, username: str) -> str:
        h = self.hashes.get(username)
        if h is None:
            photo = vcard_photo(await self.vcard.load(username))
            h = self.hashes[username] = hashlib.sha1(photo[1]).hexdigest() if photo else ""
        return h

    # -- XEP-0153 in presence -------------------------------------------------------------------
    @hook(PresenceOutbound, priority=20)
    async def on_presence(self, ev: PresenceOutbound) -> None:
        el = ev.stanza
        if ev.to is not None or "type" in el.attrs or ev.session.jid is None:
            return
        h = await self.avatar_hash(ev.session.jid.local)
        children = [c for c in el.children
                    if not (isinstance(c, Element) and c.xmlns == NS.VCARD_UPDATE)]
        children.append(self._update_x(h))
        el.children = children

    def _update_x(self, h: str) -> Element:
        """The ``<x><photo/></x>`` for hash ``h``, one per hash: it stays in every session's
        stored presence, and nothing changes an element once it is sent."""
        x = self._xs.get(h)
        if x is None:
            if len(self._xs) >= 10_000:
                self._xs.clear()
            x = self._xs[h] = Element("x", NS.VCARD_UPDATE)
            x.add("photo", text=h or None)
        return x

    # -- vCard -> PEP ---------------------------------------------------------------------------
    @hook(VCardChanged)
    async def on_vcard(self, ev: VCardChanged) -> None:
        username = ev.username
        if username in self._syncing:
            return
        photo = vcard_photo(ev.vcard)
        h = hashlib.sha1(photo[1]).hexdigest() if photo else ""
        if h == await self.avatar_hash(username):
            return
        self.hashes[username] = h
        bare = f"{username}@{self.api.domain}"
        svc = await self.engine.service(bare, pep=True)
        self._syncing.add(username)
        try:
            metadata = Element("metadata", AVATAR_METADATA)
            if photo is not None:
                mime, data = photo
                payload = Element("data", AVATAR_DATA)
                payload.children.append(base64.b64encode(data).decode())
                await self.engine.publish(svc, AVATAR_DATA, bare, h, payload, None)
                metadata.add("info", attrs={"id": h, "bytes": str(len(data)), "type": mime})
            elif AVATAR_METADATA not in svc.nodes:
                return
            await self.engine.publish(svc, AVATAR_METADATA, bare, h or None, metadata, None)
        finally:
            self._syncing.discard(username)

    # -- PEP -> vCard ---------------------------------------------------------------------------
    async def _observe(self, svc: Service, node: str, kind: str, item: Item | None,
                       item_id: str) -> None:
        if not svc.pep or node != AVATAR_METADATA or kind != "publish" or item is None:
            return
        username = svc.jid.split("@", 1)[0]
        if username in self._syncing or item.payload is None:
            return
        infos = item.payload.find_all("info", AVATAR_METADATA)
        vcard = await self.vcard.load(username)
        photo = vcard.find("PHOTO", NS.VCARD)
        if not infos:
            if photo is None:
                self.hashes[username] = ""
                return
            vcard.remove(photo)
            h = ""
        else:
            # the image the data node holds (an <info/> with a url is hosted elsewhere)
            info = next((i for i in infos if "url" not in i.attrs), infos[0])
            h = info.attrs.get("id", "")
            if not h or AVATAR_DATA not in svc.nodes:
                return
            found = await self.engine.items(svc, AVATAR_DATA, svc.jid, None, [h])
            if not found or found[0].payload is None:
                return
            b64 = "".join(found[0].payload.text.split())
            if photo is not None:
                vcard.remove(photo)
            photo = vcard.add("PHOTO", NS.VCARD)
            photo.add("TYPE", text=info.attrs.get("type", "image/png"))
            photo.add("BINVAL", text=b64)
        self._syncing.add(username)
        try:
            await self.vcard.store(username, vcard)
            self.hashes[username] = h
        finally:
            self._syncing.discard(username)

    @hook(AccountDeleted)
    def on_deleted(self, ev: AccountDeleted) -> None:
        self.hashes.pop(ev.username, None)


MODULE = Avatar
