"""What the invitation surfaces share (the ad-hoc commands, the web page, in-band
registration, the admin API and the CLI's rows): making an invitation, its URI and links,
and redeeming it for an account with the inviter as a contact both ways."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote

from hongyan.modules.invites.options import MAX_TTL, MAX_USES, InvitesOptions
from hongyan.modules.invites.store import Invite, InviteStore
from hongyan.modules.roster import Roster, RosterItem
from hongyan.server.accounts import AccountError
from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element
from hongyan.xmpp.errors import StanzaError
from hongyan.xmpp.jid import JID
from hongyan.xmpp.stamps import xmpp_datetime

if TYPE_CHECKING:
    from hongyan.server.module import ModuleAPI
    from hongyan.server.session import ClientSession

#: where a stream's accepted token is kept (``session.data``)
SESSION_KEY = "invites.token"
#: the notice that makes a roster change at the user's home process
BEFRIEND = "invites-befriend"
@dataclass(frozen=True, slots=True)
class Made:
    """A new invitation as its maker sees it, once: the token is in the links only."""

    invite: Invite
    token: str
    uri: str
    landing_url: str


def invite_uri(domain: str, invite: Invite, token: str) -> str:
    """XEP-0401 §3: the invitation as an ``xmpp:`` URI (a contact invitation's says that the
    token also registers an account, ``ibr=y``)."""
    if invite.kind == "contact":
        return f"xmpp:{quote(invite.inviter)}@{domain}?roster;preauth={token};ibr=y"
    who = f"{quote(invite.username)}@{domain}" if invite.username else domain
    return f"xmpp:{who}?register;preauth={token}"


class InviteService:
    def __init__(self, api: ModuleAPI, roster: Roster, log: logging.Logger) -> None:
        self.api = api
        self.options = api.options(InvitesOptions)
        self.store = InviteStore(api.db)
        self.roster = roster
        self.log = log

    # -- making and listing ---------------------------------------------------------------------
    async def create(self, inviter: str = "", username: str = "", uses: int | None = None,
                     ttl: float | None = None, kind: str = "account") -> Made:
        """A new invitation (``inviter``, ``username``: local usernames or ""; a contact
        invitation has an inviter and no username); ValueError says what is wrong."""
        if kind == "contact" and (not inviter or username):
            raise ValueError("a contact invitation has an inviter and no username")
        uses = self.options.uses if uses is None else uses
        ttl = self.options.ttl if ttl is None else ttl
        if not 1 <= uses <= MAX_USES:
            raise ValueError(f"uses is between 1 and {MAX_USES}")
        if not 60 <= ttl <= MAX_TTL:
            raise ValueError(f"the lifetime is between 60 seconds and {MAX_TTL} seconds")
        accounts = self.api.accounts
        if inviter:
            inviter = self._username(inviter)
            if not await accounts.exists(inviter):
                raise ValueError(f"no account {inviter}@{self.api.domain}")
        if username:
            username = self._username(username)
            if await accounts.exists(username):
                raise ValueError(f"the account {username}@{self.api.domain} exists already")
        invite, token = await self.store.create(kind, inviter, username, uses, ttl,
                                                self.api.now())
        return Made(invite, token, self.uri(invite, token), self.landing_url(token))

    def _username(self, text: str) -> str:
        text = text.strip()
        if "@" in text:
            jid = JID.parse(text)
            if jid.domain != self.api.domain or not jid.local or jid.resource:
                raise ValueError(f"{text} is not an account of {self.api.domain}")
            text = jid.local
        try:
            return self.api.accounts.prepare(text)
        except AccountError as exc:
            raise ValueError(str(exc)) from None

    def uri(self, invite: Invite, token: str) -> str:
        return invite_uri(self.api.domain, invite, token)

    def base_url(self) -> str:
        return self.options.base_url or self.api.http_url

    def landing_url(self, token: str) -> str:
        base = self.base_url()
        return f"{base}/invite/{token}" if base else ""

    def result_form(self, made: Made) -> Element:
        """XEP-0401's ``urn:xmpp:invite#invitation`` result form."""
        x = Element("x", NS.DATA_FORMS, {"type": "result"})
        for var, ftype, value in (("FORM_TYPE", "hidden", "urn:xmpp:invite#invitation"),
                                  ("uri", "text-single", made.uri),
                                  ("landing-url", "text-single", made.landing_url),
                                  ("expire", "text-single",
                                   xmpp_datetime(made.invite.expires_at))):
            if value:
                x.add("field", attrs={"var": var, "type": ftype}).add("value", text=value)
        return x

    # -- redeeming -------------------------------------------------------------------------------
    async def usable(self, token: str) -> Invite | None:
        """The invitation of ``token`` if it can be used now (not expired, revoked or used
        up), else None."""
        invite = await self.store.find(token)
        return invite if invite is not None and invite.usable(self.api.now()) else None

    async def register(self, invite: Invite, username: str, password: str) -> str:
        """Make the account ``username`` with ``invite`` (whose expiry was checked when it was
        presented): one use counted, and the inviter and the newcomer subscribed to each
        other. Returns the prepared username; a StanzaError says why not (XEP-0077's
        conditions)."""
        min_len = self.api.config.registration.min_password_length
        if not username or not password:
            raise StanzaError("not-acceptable", "a username and a password are required")
        if len(password) < min_len:
            raise StanzaError("not-acceptable",
                              f"the password needs at least {min_len} characters")
        if len(password) > 1024:
            raise StanzaError("not-acceptable", "the password is too long")
        try:
            user = self.api.accounts.prepare(username)
        except AccountError as exc:
            raise StanzaError("jid-malformed", str(exc)) from None
        if invite.username and user != invite.username:
            raise StanzaError("not-allowed", f"this invitation is for the username "
                                             f"{invite.username}")
        if await self.api.accounts.exists(user):
            raise StanzaError("conflict", f"the username {user} is taken")
        if not invite.username and await self.store.reserved(user, self.api.now()):
            raise StanzaError("conflict", f"the username {user} is taken")
        if not await self.store.take(invite.id):
            raise StanzaError("not-allowed", "the invitation was used up or revoked")
        try:
            await self.api.accounts.create(user, password, self.api.now())
        except AccountError as exc:
            await self.store.give_back(invite.id)
            raise StanzaError("conflict", str(exc)) from None
        self.log.info("registered %s@%s with invitation %s", user, self.api.domain, invite.id)
        if invite.inviter and await self.api.accounts.exists(invite.inviter):
            await self.befriend(invite.inviter, user)
            await self.befriend(user, invite.inviter)
        return user

    async def reserved(self, username: str) -> bool:
        """An active invitation keeps ``username`` for its newcomer."""
        return await self.store.reserved(username, self.api.now())

    @staticmethod
    def session_token(session: ClientSession | None) -> str | None:
        """The token this (not yet authenticated) stream presented and had accepted."""
        if session is None or session.data is None:
            return None
        token = session.data.get(SESSION_KEY)
        return token if isinstance(token, str) else None

    async def befriend(self, username: str, contact_user: str) -> None:
        """``username`` has ``contact_user`` (local) as a contact subscribed both ways: done at
        ``username``'s home, which pushes the item to its resources."""
        home = self.api.home(username)
        if home is not None:
            self.api.notify(BEFRIEND, json.dumps([username, contact_user]).encode(),
                            to=home)
            return
        contact = f"{contact_user}@{self.api.domain}"

        def both(cur: RosterItem | None) -> RosterItem:
            base = cur if cur is not None else RosterItem(contact)
            return base.evolve(subscription="both", ask=False, approved=False)

        await self.roster.change(username, contact, both)

    async def befriend_notice(self, body: bytes) -> None:
        username, contact = json.loads(body)
        await self.befriend(str(username), str(contact))


__all__ = ["BEFRIEND", "SESSION_KEY", "InviteService", "Made", "invite_uri"]
