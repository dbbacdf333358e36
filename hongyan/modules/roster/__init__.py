"""RFC 6121 §2 roster management, XEP-0237 roster versioning, pre-approval stream feature.

The roster is the account's friend list. This module owns the items; the presence module
(which depends on it) owns the subscription state machine and changes items through
:meth:`Roster.change`, the one read-modify-write path, serialized per user.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from hongyan.modules.roster.store import MIGRATIONS, RosterItem, RosterStore
from hongyan.server.hooks import AccountDeleted, SessionClosed, StreamFeatures
from hongyan.server.module import Iq, Module, ModuleAPI, hook, iq_handler
from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element
from hongyan.xmpp.errors import StanzaError
from hongyan.xmpp.jid import JID, JIDError

__all__ = ["Roster", "RosterItem", "RosterRemoving"]

MAX_ITEMS = 5000
MAX_NAME = 1023
#: the cache entry of every account with no items and no version (never mutated: change()
#: replaces it with a dict of its own)
_NO_ROSTER: tuple[dict[str, RosterItem], int] = ({}, 0)


@dataclass(slots=True)
class RosterRemoving:
    """A user removes ``item`` from the roster (async hook, fired before the item is deleted):
    the presence module cancels the subscriptions."""

    username: str
    item: RosterItem


class Roster(Module):
    name = "roster"
    xeps = {"0237": "1.3"}
    features = frozenset({NS.ROSTER})
    migrations = MIGRATIONS

    def __init__(self, api: ModuleAPI) -> None:
        super().__init__(api)
        self.store = RosterStore(self.api.db)
        self._cache: dict[str, tuple[dict[str, RosterItem], int]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    # -- public API (used by the presence module) ----------------------------------------------
    async def items(self, username: str) -> dict[str, RosterItem]:
        return (await self._load(username))[0]

    async def _load(self, username: str) -> tuple[dict[str, RosterItem], int]:
        cached = self._cache.get(username)
        if cached is None:
            cached = await self.store.load(username)
            if not cached[0] and not cached[1]:
                cached = _NO_ROSTER  # shared: an idle session with no roster keeps nothing
            if self.api.sessions.resources(JID(username, self.api.domain, "")):
                self._cache[username] = cached
        return cached

    def _lock(self, username: str) -> asyncio.Lock:
        lock = self._locks.get(username)
        if lock is None:
            lock = self._locks[username] = asyncio.Lock()
        return lock

    async def change(self, username: str, contact: str,
                     fn: Callable[[RosterItem | None], RosterItem | None]) -> RosterItem | None:
        """Atomically replace the item for ``contact`` by ``fn(current)`` (None deletes it).
        Persists, bumps the roster version and pushes the change to interested resources when
        something changed; returns the new item."""
        lock = self._lock(username)
        async with lock:
            items, _ = await self._load(username)
            current = items.get(contact)
            new = fn(current)
            if new == current:
                return current
            if new is not None and current is None and len(items) >= MAX_ITEMS:
                raise StanzaError("not-allowed", f"rosters hold at most {MAX_ITEMS} items")
            ver = await self.store.save(username, contact, new)
            cached = self._cache.get(username)
            if cached is not None:
                citems = {} if cached is _NO_ROSTER else cached[0]
                if new is None:
                    citems.pop(contact, None)
                else:
                    citems[contact] = new
                self._cache[username] = (citems, ver)
            self._push(username, contact, new, ver)
        if not lock.locked() and not lock._waiters:
            self._locks.pop(username, None)
        return new

    def _push(self, username: str, contact: str, item: RosterItem | None, ver: int) -> None:
        for s in self.api.sessions.resources(JID(username, self.api.domain, "")):
            if not s.interested or s.jid is None:
                continue
            iq = Element("iq", attrs={"type": "set", "id": "push" + secrets.token_hex(6),
                                      "to": str(s.jid)})
            q = iq.add("query", NS.ROSTER, {"ver": str(ver)})
            q.children.append(item_element(item) if item is not None
                              else Element("item", NS.ROSTER, {"jid": contact,
                                                               "subscription": "remove"}))
            s.send(iq)

    # -- IQ ------------------------------------------------------------------------------------
    @iq_handler(NS.ROSTER, "query", "get", scope="self")
    async def on_get(self, iq: Iq) -> Element:
        items, ver = await self._load(iq.sender.local)
        if iq.session is not None:
            iq.session.interested = True
        q = Element("query", NS.ROSTER)
        q.attrs["ver"] = str(ver)
        if iq.payload.attrs.get("ver") == str(ver):
            return iq.result()  # XEP-0237: unchanged, pushes follow
        for item in items.values():
            q.children.append(item_element(item))
        return iq.result(q)

    @iq_handler(NS.ROSTER, "query", "set", scope="self")
    async def on_set(self, iq: Iq) -> Element:
        items = iq.payload.find_all("item")
        if len(items) != 1:
            raise StanzaError("bad-request", "a roster set carries exactly one item")
        el = items[0]
        try:
            contact = JID.parse(el.attrs.get("jid", ""))
        except JIDError as exc:
            raise StanzaError("jid-malformed", str(exc)) from None
        if contact.resource:
            raise StanzaError("bad-request", "roster items are bare JIDs")
        key = contact.bare_str
        if key == iq.sender.bare_str:
            raise StanzaError("not-allowed", "you cannot add yourself")
        username = iq.sender.local
        sub = el.attrs.get("subscription")
        if sub == "remove":
            current = (await self.items(username)).get(key)
            if current is None:
                raise StanzaError("item-not-found")
            await self.api.hooks.fire(RosterRemoving(username, current))
            await self.change(username, key, lambda _cur: None)
            return iq.result()
        if sub not in (None, "none", "to", "from", "both"):
            raise StanzaError("bad-request", f"unknown subscription {sub!r}")
        name = el.attrs.get("name", "")
        if len(name) > MAX_NAME:
            raise StanzaError("not-acceptable", "the name is too long")
        groups: list[str] = []
        for g in el.find_all("group"):
            text = g.text
            if not text:
                raise StanzaError("not-acceptable", "empty group name")
            if len(text) > MAX_NAME:
                raise StanzaError("not-acceptable", "the group name is too long")
            if text in groups:
                raise StanzaError("bad-request", f"duplicate group {text!r}")
            groups.append(text)

        def update(cur: RosterItem | None) -> RosterItem:
            base = cur if cur is not None else RosterItem(key)
            return base.evolve(name=name, groups=tuple(groups))

        await self.change(username, key, update)
        return iq.result()

    # -- hooks ---------------------------------------------------------------------------------
    @hook(StreamFeatures)
    def on_features(self, ev: StreamFeatures) -> None:
        ev.features.add("ver", NS.ROSTERVER)
        ev.features.add("sub", NS.PRE_APPROVAL)

    @hook(SessionClosed, priority=-100)
    def on_closed(self, ev: SessionClosed) -> None:
        jid = ev.session.jid
        if jid is not None and not self.api.sessions.resources(jid.bare):
            self._cache.pop(jid.local, None)

    @hook(AccountDeleted, priority=-10)
    async def on_deleted(self, ev: AccountDeleted) -> None:
        await self.store.delete_user(ev.username)
        self._cache.pop(ev.username, None)


def item_element(item: RosterItem) -> Element:
    attrs = {"jid": item.contact, "subscription": item.subscription}
    if item.name:
        attrs["name"] = item.name
    if item.ask:
        attrs["ask"] = "subscribe"
    if item.approved:
        attrs["approved"] = "true"
    el = Element("item", NS.ROSTER, attrs)
    for g in item.groups:
        el.add("group", text=g)
    return el


MODULE = Roster
