"""Invitations: XEP-0401 Easy User Onboarding, with XEP-0445 pre-authenticated in-band
registration and XEP-0379 pre-authenticated roster subscription.

An administrator (ad-hoc ``urn:xmpp:invite#create-account``, the admin API, ``hongyan invite
create``) or, with ``[invites] allow_users``, any user (``urn:xmpp:invite#invite``) makes an
invitation: a random token, stored only as its SHA-256 hash, with a lifetime, a number of uses,
maybe a username kept for the newcomer and maybe an inviter. It is shown once, as an
``xmpp:`` URI (``?register;preauth=`` / ``?roster;preauth=…;ibr=y``) and as the address of its
web page (``/invite/<token>``, :mod:`.page`).

A newcomer redeems it in band (XEP-0445: ``<preauth xmlns='urn:xmpp:pars:0'/>`` before
``jabber:iq:register``, even with open registration off) or with the web page's form. Either
way the account is made by :meth:`Invites.register`, which counts the use and makes the
newcomer and the inviter contacts of each other, subscribed both ways (roster pushes tell the
inviter's resources). An existing user who opens a contact invitation sends the inviter a
subscription request carrying the token (XEP-0379): it is approved at once, and the inviter
asks back. A token is never logged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from hongyan.modules.invites.page import Page
from hongyan.modules.invites.service import (
    BEFRIEND,
    SESSION_KEY,
    InviteService,
    Made,
    invite_uri,
)
from hongyan.modules.invites.store import MIGRATIONS
from hongyan.modules.roster import Roster, RosterItem
from hongyan.server.hooks import PresenceInbound
from hongyan.server.module import Iq, Module, hook, iq_handler
from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element
from hongyan.xmpp.errors import StanzaError

if TYPE_CHECKING:
    from hongyan.modules.adhoc import AdHoc

BAD_TOKEN = "The provided token is invalid or expired"


class Invites(Module):
    name = "invites"
    xeps = {"0379": "0.3.3", "0401": "0.5.0", "0445": "0.2.0"}
    depends = ("roster",)
    uses = ("adhoc",)
    migrations = MIGRATIONS

    async def start(self) -> None:
        #: what the other modules call (in-band registration, the admin API)
        self.service = InviteService(self.api, self.api.module(Roster), self.log)
        self.api.accept_ibr_tokens()
        self._removes: list[Callable[[], None]] = []
        adhoc: AdHoc | None = self.api.optional("adhoc")  # type: ignore[assignment]
        if adhoc is not None:
            # (imported here: the commands are built on adhoc's forms, and a server whose
            # adhoc folder is deleted still has invitations, by link and in-band)
            from hongyan.modules.invites.commands import invite_commands

            for command in invite_commands(self.service):
                self._removes.append(adhoc.add(command))
        page = Page(self.service)
        self.api.http_route("GET", "/invite/*", page.show)
        self.api.http_route("POST", "/invite/*", page.submit)
        self.api.on_notice(BEFRIEND, self.service.befriend_notice)

    async def stop(self) -> None:
        for remove in self._removes:
            remove()

    # -- XEP-0445: the token before registration -------------------------------------------------
    @iq_handler(NS.PARS, "preauth", "set", scope="host")
    async def on_preauth(self, iq: Iq) -> Element:
        session = iq.session
        if session is None or session.jid is not None:
            raise StanzaError("not-allowed", "a token is presented before registration")
        token = iq.payload.attrs.get("token", "")
        invite = await self.service.usable(token)
        if invite is None:
            raise StanzaError("item-not-found", BAD_TOKEN)
        if session.data is None:
            session.data = {}
        session.data[SESSION_KEY] = token
        return iq.result()

    # -- XEP-0379: a subscription request with the token -----------------------------------------
    @hook(PresenceInbound, priority=10)
    async def on_presence(self, ev: PresenceInbound) -> None:
        el = ev.stanza
        if el.attrs.get("type") != "subscribe":
            return
        preauth = el.find("preauth", NS.PARS)
        if preauth is None:
            return
        user, contact = ev.to.local, ev.sender.bare_str
        if contact == ev.to.bare_str:
            return
        invite = await self.service.usable(preauth.attrs.get("token", ""))
        # an unknown, expired or someone else's token: a request like any other (§4.1)
        if invite is None or invite.inviter != user or not await self.service.store.take(invite.id):
            return
        self.log.info("%s@%s: a subscription request with invitation %s, approved", user,
                      self.api.domain, invite.id)

        def approve(cur: RosterItem | None) -> RosterItem:
            base = cur if cur is not None else RosterItem(contact)
            return base if base.has_from else base.evolve(approved=True)

        await self.service.roster.change(user, contact, approve)
        # the presence module answers 'subscribed' to the pre-approved request; then the
        # inviter asks back (§3.5)
        self.api.spawn(self._ask_back(user, contact))

    async def _ask_back(self, user: str, contact: str) -> None:
        def ask(cur: RosterItem | None) -> RosterItem:
            base = cur if cur is not None else RosterItem(contact)
            return base if base.has_to else base.evolve(ask=True)

        item = await self.service.roster.change(user, contact, ask)
        if item is not None and item.has_to:
            return
        self.api.route(Element("presence", attrs={
            "type": "subscribe", "from": f"{user}@{self.api.domain}", "to": contact}))


MODULE = Invites

__all__ = ["MODULE", "Invites", "Made", "invite_uri"]
