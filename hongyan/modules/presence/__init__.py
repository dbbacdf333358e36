"""RFC 6121 presence: the subscription state machine (§3), presence broadcast and probes (§4),
directed presence (§4.6), unavailable presence when a session ends, cleanly or not.

Subscription states live in roster items (``subscription`` none/to/from/both, ``ask`` = pending
out, ``approved`` = pre-approved); a subscription request the user has not yet answered
("pending in") is stored apart, as RFC 6121 §3.1.3 wants no roster item for it, and is delivered
again at the user's next initial presence until answered. All of it survives restarts.
"""

from __future__ import annotations

from hongyan.modules.events import InitialPresence, SubscriptionApproved, SubscriptionStored
from hongyan.modules.roster import Roster, RosterItem, RosterRemoving
from hongyan.server.hooks import AccountDeleted, PresenceInbound, PresenceOutbound, SessionClosed
from hongyan.server.module import Module, hook
from hongyan.server.session import ClientSession
from hongyan.xmpp.element import Element
from hongyan.xmpp.errors import StreamError
from hongyan.xmpp.jid import JID, JIDError
from hongyan.xmpp.parser import parse_element

SUBSCRIPTION_TYPES = frozenset({"subscribe", "subscribed", "unsubscribe", "unsubscribed"})


def _addressed(el: Element, to: str, frm: str | None = None) -> Element:
    attrs = dict(el.attrs)
    attrs["to"] = to
    if frm is not None:
        attrs["from"] = frm
    return Element(el.name, el.xmlns, attrs, el.children)


def parse_priority(el: Element) -> int:
    text = el.find_text("priority")
    if text is None:
        return 0
    try:
        value = int(text.strip())
    except ValueError:
        return 0
    return max(-128, min(127, value))


def _subscription_stanza(ptype: str, frm: str, to: str) -> Element:
    return Element("presence", attrs={"type": ptype, "from": frm, "to": to})


class Presence(Module):
    name = "presence"
    depends = ("roster",)

    async def start(self) -> None:
        self.roster = self.api.module(Roster)

    # -- helpers -------------------------------------------------------------------------------
    async def _send(self, el: Element, sender: JID, to: JID) -> None:
        pending = self.api.router.presence(el, sender, to)
        if pending is not None:
            await pending

    async def _send_subscription(self, ptype: str, user: JID, contact: str,
                                 payload: list[Element | str] | None = None) -> None:
        """Route a subscription stanza from the user's bare JID, with the payload the user's
        client gave (status, nick…)."""
        try:
            to = JID.parse(contact)
        except JIDError:
            return
        el = _subscription_stanza(ptype, user.bare_str, contact)
        if payload:
            el.children.extend(c for c in payload if isinstance(c, Element))
        await self._send(el, user.bare, to)

    async def _presence_to(self, user: JID, contact: str, unavailable: bool) -> None:
        """Send the current presence of each of the user's available resources to ``contact``
        (or an unavailable presence from each)."""
        try:
            to = JID.parse(contact)
        except JIDError:
            return
        for s in self.api.sessions.available(user):
            if s.jid is None:
                continue
            if unavailable or s.presence is None:
                el = Element("presence", attrs={"type": "unavailable", "from": str(s.jid),
                                                "to": contact})
            else:
                el = _addressed(s.presence, contact, str(s.jid))
            await self._send(el, s.jid, to)

    # -- outbound (from a local session) --------------------------------------------------------
    @hook(PresenceOutbound)
    async def on_outbound(self, ev: PresenceOutbound) -> bool:
        el, session, to = ev.stanza, ev.session, ev.to
        ptype = el.attrs.get("type")
        if to is None:
            if ptype is None or ptype == "unavailable":
                await self._broadcast(session, el)
            return True
        assert session.jid is not None
        if ptype in SUBSCRIPTION_TYPES:
            if to.bare_str != session.jid.bare_str:
                await self._outbound_subscription(session.jid, to.bare, ptype, el.children)
            return True
        if ptype == "probe":
            # A client's probe (RFC 6121 §4.3; XEP-0318) goes to the contact's bare JID and is
            # answered there (§4.3.2), to the asking resource.
            probe = Element("presence", attrs={"type": "probe", "from": str(session.jid),
                                               "to": to.bare_str})
            await self._send(probe, session.jid, to.bare)
            return True
        if ptype is None or ptype == "unavailable":
            directed = self._directed(session)
            if ptype is None:
                directed.add(str(to))
            else:
                directed.discard(str(to))
        await self._send(el, session.jid, to)
        return True

    @staticmethod
    def _directed(session: ClientSession) -> set[str]:
        if session.data is None:
            session.data = {}
        directed: set[str] = session.data.setdefault("directed", set())
        return directed

    async def _broadcast(self, session: ClientSession, el: Element) -> None:
        jid = session.jid
        assert jid is not None
        available = el.attrs.get("type") is None
        first = available and not session.available
        if available:
            session.presence = el
            session.priority = parse_priority(el)
            session.available = True
        else:
            if not session.available:
                return
            session.available = False
            session.presence = None
        items = await self.roster.items(jid.local)
        sent: set[str] = set()
        for contact, item in list(items.items()):
            if item.has_from:
                sent.add(contact)
                try:
                    cj = JID.parse(contact)
                except JIDError:
                    continue
                await self._send(_addressed(el, contact), jid, cj)
        for s in self.api.sessions.available(jid.bare):
            if s.jid is not None and (s is not session or available):
                s.send(_addressed(el, str(s.jid)))
        if not available:
            if session.data is not None:
                for target in session.data.pop("directed", set()):
                    if JID.parse(target).bare_str not in sent:
                        await self._send(_addressed(el, target), jid, JID.parse(target))
            return
        if first:
            await self._initial(session, items)

    async def _initial(self, session: ClientSession, items: dict[str, RosterItem]) -> None:
        jid = session.jid
        assert jid is not None
        # Probes: local contacts answer at once with each available resource's presence,
        # remote ones through their server.
        for contact, item in list(items.items()):
            if not item.has_to:
                continue
            try:
                cj = JID.parse(contact)
            except JIDError:
                continue
            if cj.domain != self.api.domain:
                if self.api.router.serves(cj.domain):
                    continue
                # a contact at another server: its server answers (RFC 6121 §4.3)
                await self._send(Element("presence", attrs={
                    "type": "probe", "from": jid.bare_str, "to": contact}), jid.bare, cj)
                continue
            for cs in self.api.sessions.available(cj):
                if cs.presence is not None and cs.jid is not None:
                    await self._send(_addressed(cs.presence, str(jid), str(cs.jid)), cs.jid, jid)
        # The user's other available resources.
        for s in self.api.sessions.available(jid.bare):
            if s is not session and s.presence is not None and s.jid is not None:
                session.send(_addressed(s.presence, str(jid), str(s.jid)))
        # Subscription requests still unanswered.
        for _contact, xml in await self.roster.store.requests(jid.local):
            try:
                stanza = parse_element(xml)
            except StreamError:
                continue
            session.send(_addressed(stanza, str(jid)))
        await self.api.hooks.fire(InitialPresence(session))

    async def _outbound_subscription(self, user: JID, contact_jid: JID, ptype: str,
                                     payload: list[Element | str]) -> None:
        username, contact = user.local, contact_jid.bare_str
        roster = self.roster
        if ptype == "subscribe":
            def ask(cur: RosterItem | None) -> RosterItem:
                base = cur if cur is not None else RosterItem(contact)
                return base if base.has_to else base.evolve(ask=True)

            await roster.change(username, contact, ask)
            await self._send_subscription("subscribe", user, contact, payload)
        elif ptype == "subscribed":
            had_request = await roster.store.remove_request(username, contact)
            items = await roster.items(username)
            cur = items.get(contact)
            if cur is not None and cur.has_from:
                return
            if had_request:
                def approve(c: RosterItem | None) -> RosterItem:
                    base = c if c is not None else RosterItem(contact)
                    sub = "both" if base.has_to else "from"
                    return base.evolve(subscription=sub, approved=False)

                await roster.change(username, contact, approve)
                await self._send_subscription("subscribed", user, contact)
                await self._presence_to(user, contact, unavailable=False)
            else:
                def preapprove(c: RosterItem | None) -> RosterItem:
                    base = c if c is not None else RosterItem(contact)
                    return base.evolve(approved=True)

                await roster.change(username, contact, preapprove)
        elif ptype == "unsubscribe":
            def cancel_to(c: RosterItem | None) -> RosterItem | None:
                if c is None:
                    return None
                sub = {"to": "none", "both": "from"}.get(c.subscription, c.subscription)
                return c.evolve(subscription=sub, ask=False)

            await roster.change(username, contact, cancel_to)
            await self._send_subscription("unsubscribe", user, contact, payload)
        elif ptype == "unsubscribed":
            had_request = await roster.store.remove_request(username, contact)
            cur = (await roster.items(username)).get(contact)
            had_from = cur is not None and cur.has_from

            def cancel_from(c: RosterItem | None) -> RosterItem | None:
                if c is None:
                    return None
                sub = {"from": "none", "both": "to"}.get(c.subscription, c.subscription)
                return c.evolve(subscription=sub, approved=False)

            await roster.change(username, contact, cancel_from)
            if had_from or had_request:
                if had_from:
                    await self._presence_to(user, contact, unavailable=True)
                await self._send_subscription("unsubscribed", user, contact)

    # -- inbound (for a local user) -------------------------------------------------------------
    @hook(PresenceInbound)
    async def on_inbound(self, ev: PresenceInbound) -> bool:
        el, sender, to = ev.stanza, ev.sender, ev.to
        ptype = el.attrs.get("type")
        if ptype in SUBSCRIPTION_TYPES:
            await self._inbound_subscription(el, sender, to.bare, ptype)
            return True
        if ptype == "probe":
            await self._answer_probe(sender, to.bare)
            return True
        self.api.router.deliver_presence(el, to)
        return True

    async def _answer_probe(self, prober: JID, user: JID) -> None:
        """RFC 6121 §4.3.2: to a prober without a ``from``/``both`` subscription (or for an
        account that does not exist), ``unsubscribed`` from the bare JID, which brings the
        prober's side back in step; else each available resource's presence, or
        ``unavailable`` from the bare JID when there is none."""
        contact = prober.bare_str
        if contact != user.bare_str:  # an account always sees its own resources
            item = (await self.roster.items(user.local)).get(contact)
            if item is None or not item.has_from:
                await self._send(_subscription_stanza("unsubscribed", user.bare_str, contact),
                                 user, prober.bare)
                return
        if not self.api.sessions.available(user):
            await self._send(Element("presence", attrs={
                "type": "unavailable", "from": user.bare_str, "to": str(prober)}), user, prober)
            return
        await self._presence_to(user, str(prober), unavailable=False)

    def _deliver_all(self, el: Element, user: JID) -> None:
        for s in self.api.sessions.available(user):
            if s.jid is not None:
                s.send(_addressed(el, str(s.jid)))

    async def _inbound_subscription(self, el: Element, sender: JID, user: JID, ptype: str
                                    ) -> None:
        username, contact = user.local, sender.bare_str
        roster = self.roster
        cur = (await roster.items(username)).get(contact)
        clean = _subscription_stanza(ptype, contact, user.bare_str)
        for child in el.elements:
            clean.children.append(child)
        if ptype == "subscribe":
            if cur is not None and cur.has_from:
                await self._send_subscription("subscribed", user, contact)
                return
            if cur is not None and cur.approved:
                await roster.change(username, contact, lambda c: (c or cur).evolve(
                    subscription="both" if (c or cur).has_to else "from", approved=False))
                await self._send_subscription("subscribed", user, contact)
                await self._presence_to(user, contact, unavailable=False)
                return
            await roster.store.add_request(username, contact, clean.to_str(""))
            self._deliver_all(clean, user)
            hooks = self.api.hooks
            if hooks.has(SubscriptionStored) and not self.api.sessions.available(user):
                await hooks.fire(SubscriptionStored(username, contact))
        elif ptype == "subscribed":
            if cur is None or not cur.ask:
                return
            await roster.change(username, contact, lambda c: (c or cur).evolve(
                subscription="both" if (c or cur).has_from else "to", ask=False))
            self._deliver_all(clean, user)
            if self.api.hooks.has(SubscriptionApproved):
                await self.api.hooks.fire(SubscriptionApproved(username, contact))
        elif ptype == "unsubscribe":
            had_request = await roster.store.remove_request(username, contact)
            if cur is not None and cur.has_from:
                await roster.change(username, contact, lambda c: (c or cur).evolve(
                    subscription={"from": "none", "both": "to"}[(c or cur).subscription]
                    if (c or cur).has_from else (c or cur).subscription))
                await self._presence_to(user, contact, unavailable=True)
                self._deliver_all(clean, user)
            elif had_request:
                self._deliver_all(clean, user)
        elif ptype == "unsubscribed":
            if cur is None or not (cur.has_to or cur.ask):
                return
            await roster.change(username, contact, lambda c: (c or cur).evolve(
                subscription={"to": "none", "both": "from"}.get((c or cur).subscription,
                                                                 (c or cur).subscription),
                ask=False))
            self._deliver_all(clean, user)
            # The contact's resources are gone from the user's point of view.
            for s in self.api.sessions.available(user):
                if s.jid is not None:
                    s.send(Element("presence", attrs={"type": "unavailable", "from": contact,
                                                      "to": str(s.jid)}))

    # -- session and account life cycle ---------------------------------------------------------
    @hook(SessionClosed)
    async def on_closed(self, ev: SessionClosed) -> None:
        session = ev.session
        if not ev.was_available or session.jid is None:
            return
        session.available = True  # let the broadcast run once more, as unavailable
        el = Element("presence", attrs={"type": "unavailable", "from": str(session.jid)})
        await self._broadcast(session, el)

    @hook(RosterRemoving)
    async def on_removing(self, ev: RosterRemoving) -> None:
        user = JID(ev.username, self.api.domain, "")
        item = ev.item
        await self.roster.store.remove_request(ev.username, item.contact)
        if item.has_from:
            await self._presence_to(user, item.contact, unavailable=True)
            await self._send_subscription("unsubscribed", user, item.contact)
        if item.has_to or item.ask:
            await self._send_subscription("unsubscribe", user, item.contact)

    @hook(AccountDeleted, priority=10)
    async def on_account_deleted(self, ev: AccountDeleted) -> None:
        for item in list((await self.roster.items(ev.username)).values()):
            await self.on_removing(RosterRemoving(ev.username, item))


MODULE = Presence
