"""XEP-0049 Private XML Storage: per-account XML fragments keyed by their element and namespace,
readable and writable only by the account itself.

Another module may take over one fragment (:meth:`Private.provide`): the bookmarks module keeps
``<storage xmlns='storage:bookmarks'/>`` in PEP (XEP-0402 compatibility) instead of here."""

from __future__ import annotations

from typing import Protocol

from hongyan.server.module import Iq, Module, ModuleAPI, iq_handler
from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element
from hongyan.xmpp.errors import StanzaError, StreamError
from hongyan.xmpp.parser import parse_element

MAX_FRAGMENT = 256 * 1024


def _key(el: Element) -> str:
    return f"{{{el.xmlns}}}{el.name}"


def _check(el: Element) -> None:
    if el.xmlns in (NS.CLIENT, NS.PRIVATE, NS.SERVER) or el.xmlns.startswith("jabber:"):
        raise StanzaError("not-acceptable", f"namespace {el.xmlns!r} is reserved")


class PrivateProvider(Protocol):
    async def get_private(self, username: str) -> Element | None: ...
    async def set_private(self, username: str, el: Element) -> None: ...


class Private(Module):
    name = "private"
    xeps = {"0049": "1.2"}
    features = frozenset({NS.PRIVATE})

    def __init__(self, api: ModuleAPI) -> None:
        super().__init__(api)
        self.providers: dict[str, PrivateProvider] = {}

    def provide(self, xmlns: str, name: str, provider: PrivateProvider | None) -> None:
        """Let ``provider`` store and produce the fragment ``{xmlns}name`` (None: stop)."""
        key = f"{{{xmlns}}}{name}"
        if provider is None:
            self.providers.pop(key, None)
        else:
            self.providers[key] = provider

    @iq_handler(NS.PRIVATE, "query", "get", scope="self")
    async def on_get(self, iq: Iq) -> Element:
        children = list(iq.payload.elements)
        if len(children) != 1:
            raise StanzaError("bad-request", "ask for exactly one element")
        want = children[0]
        _check(want)
        q = Element("query", NS.PRIVATE)
        provider = self.providers.get(_key(want))
        if provider is not None:
            provided = await provider.get_private(iq.sender.local)
            q.children.append(provided if provided is not None
                              else Element(want.name, want.xmlns))
            return iq.result(q)
        xml = await self.api.kv.get(iq.sender.local, NS.PRIVATE, _key(want))
        found = None
        if xml is not None:
            try:
                found = parse_element(xml)
            except StreamError:
                found = None
        q.children.append(found if found is not None else Element(want.name, want.xmlns))
        return iq.result(q)

    @iq_handler(NS.PRIVATE, "query", "set", scope="self")
    async def on_set(self, iq: Iq) -> Element:
        children = list(iq.payload.elements)
        if not children:
            raise StanzaError("bad-request", "nothing to store")
        for el in children:
            _check(el)
        for el in children:
            xml = el.to_str("")
            if len(xml) > MAX_FRAGMENT:
                raise StanzaError("not-acceptable", f"fragments are limited to {MAX_FRAGMENT}"
                                  " bytes")
            provider = self.providers.get(_key(el))
            if provider is not None:
                await provider.set_private(iq.sender.local, el)
                continue
            await self.api.kv.set(iq.sender.local, NS.PRIVATE, _key(el), xml)
        return iq.result()

    @iq_handler(NS.PRIVATE, "query", "get", scope="bare")
    def on_other_get(self, iq: Iq) -> Element:
        raise StanzaError("forbidden", "private storage belongs to its account")

    @iq_handler(NS.PRIVATE, "query", "set", scope="bare")
    def on_other_set(self, iq: Iq) -> Element:
        raise StanzaError("forbidden", "private storage belongs to its account")


MODULE = Private
