"""XEP-0054 vcard-temp: a profile with name and avatar, stored per account, readable by anyone
who asks the account's bare JID."""

from __future__ import annotations

from dataclasses import dataclass

from hongyan.server.module import Iq, Module, iq_handler
from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element
from hongyan.xmpp.errors import StanzaError, StreamError
from hongyan.xmpp.parser import parse_element

MAX_VCARD = 128 * 1024


@dataclass(slots=True)
class VCardChanged:
    """The account ``username`` stored a new vCard (async hook: avatar conversion)."""

    username: str
    vcard: Element


class VCard(Module):
    name = "vcard"
    xeps = {"0054": "1.2"}
    features = frozenset({NS.VCARD})
    account_features = frozenset({NS.VCARD})

    async def load(self, username: str) -> Element:
        """The account's vCard (an empty one when it has none)."""
        xml = await self.api.kv.get(username, NS.VCARD)
        if xml is None:
            return Element("vCard", NS.VCARD)
        try:
            return parse_element(xml)
        except StreamError:
            return Element("vCard", NS.VCARD)

    @iq_handler(NS.VCARD, "vCard", "get", scope=("self", "bare"))
    async def on_get(self, iq: Iq) -> Element:
        return iq.result(await self.load(iq.to.local))

    @iq_handler(NS.VCARD, "vCard", "set", scope="self")
    async def on_set(self, iq: Iq) -> Element:
        xml = iq.payload.to_str("")
        if len(xml) > MAX_VCARD:
            raise StanzaError("not-acceptable", f"vCards are limited to {MAX_VCARD} bytes")
        await self.api.kv.set(iq.sender.local, NS.VCARD, "", xml)
        await self.api.hooks.fire(VCardChanged(iq.sender.local, iq.payload))
        return iq.result()

    async def store(self, username: str, vcard: Element) -> None:
        """Replace the account's vCard (for another module: no hook fires)."""
        await self.api.kv.set(username, NS.VCARD, "", vcard.to_str(""))

    @iq_handler(NS.VCARD, "vCard", "set", scope="bare")
    def on_set_other(self, iq: Iq) -> Element:
        raise StanzaError("forbidden", "you can only change your own vCard")


MODULE = VCard
