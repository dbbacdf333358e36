"""XEP-0077 In-Band Registration: create an account before authenticating (when the config
allows it), change one's password, and delete one's own account with all its data.

At most ``registration.per_ip_per_hour`` accounts are created in band from one client address
in an hour (counted by this process: with several workers, by each worker); past it the answer
is ``resource-constraint`` (type ``wait``: the limit is temporary, and XEP-0077 §3.1 keeps
``not-allowed`` for a host that does not allow registration at all).

With the invites module, a stream that presented a good invitation token (XEP-0445) registers
even when registration is closed: the invites module makes that account (and counts the use),
with no limit per address. A username an active invitation keeps is taken for everyone else."""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING

from hongyan.server.accounts import AccountError
from hongyan.server.module import Iq, Module, ModuleAPI, iq_handler
from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element
from hongyan.xmpp.errors import StanzaError

if TYPE_CHECKING:
    from hongyan.modules.invites.service import InviteService


class Register(Module):
    name = "register"
    xeps = {"0077": "2.4"}
    features = frozenset({NS.REGISTER})
    # (the invites module, when loaded, is found at request time: no load order needed)

    _HOUR = 3600.0
    _MAX_HOSTS = 10_000

    def __init__(self, api: ModuleAPI) -> None:
        super().__init__(api)
        #: when each address registered in the last hour
        self._book: dict[str, collections.deque[float]] = {}

    def _recent(self, host: str) -> collections.deque[float]:
        """The times of this hour's registrations from ``host`` (older ones dropped)."""
        book = self._book
        times = book.get(host)
        if times is None:
            if len(book) >= self._MAX_HOSTS:
                book.clear()
            times = book[host] = collections.deque()
        now = self.api.now()
        while times and now - times[0] >= self._HOUR:
            times.popleft()
        return times

    def _invites(self) -> InviteService | None:
        module = self.api.optional("invites")
        return getattr(module, "service", None)

    def _token(self, iq: Iq) -> str | None:
        invites = self._invites()
        return None if invites is None else invites.session_token(iq.session)

    @iq_handler(NS.REGISTER, "query", "get", scope=("host", "self"))
    def on_get(self, iq: Iq) -> Element:
        q = Element("query", NS.REGISTER)
        session = iq.session
        if session is not None and session.jid is not None:
            q.add("registered")
            q.add("username", text=session.jid.local)
            q.add("password")
            return iq.result(q)
        if not self.api.config.registration_enabled and self._token(iq) is None:
            raise StanzaError("not-allowed", "registration is closed on this server")
        q.add("instructions", text="Choose a username and password to register with this "
                                   "server.")
        q.add("username")
        q.add("password")
        return iq.result(q)

    @iq_handler(NS.REGISTER, "query", "set", scope=("host", "self"))
    async def on_set(self, iq: Iq) -> Element | None:
        session = iq.session
        authed = session is not None and session.jid is not None
        q = iq.payload
        if q.find("remove") is not None:
            if not authed or session is None or session.jid is None:
                raise StanzaError("not-allowed", "authenticate to delete an account")
            session.send(iq.result())
            await self.api.delete_account(session.jid.local)
            return None
        username = (q.find_text("username") or "").strip()
        password = q.find_text("password") or ""
        min_len = self.api.config.registration.min_password_length
        if authed:
            assert session is not None and session.jid is not None
            if username and username != session.jid.local:
                raise StanzaError("not-allowed", "you can only change your own password")
            if len(password) < min_len:
                raise StanzaError("not-acceptable",
                                  f"the password needs at least {min_len} characters")
            try:
                await self.api.accounts.set_password(session.jid.local, password)
            except AccountError as exc:
                raise StanzaError("not-acceptable", str(exc)) from None
            return iq.result()
        token = self._token(iq)
        invites = self._invites()
        if token is not None and invites is not None:
            invite = await invites.store.find(token)
            if invite is None or not invite.usable():
                raise StanzaError("not-allowed", "the invitation was used up or revoked")
            await invites.register(invite, username, password)
            return iq.result()
        if not self.api.config.registration_enabled:
            raise StanzaError("not-allowed", "registration is closed on this server")
        if not username or not password:
            raise StanzaError("not-acceptable", "a username and a password are required")
        cap = self.api.config.registration.per_ip_per_hour
        host = str(getattr(session.transport, "peer_host", "")) if session is not None else ""
        recent = self._recent(host) if cap else None
        if recent is not None and len(recent) >= cap:
            raise StanzaError("resource-constraint", f"no more than {cap} registrations from "
                                                     "one address in an hour")
        if len(password) < min_len:
            raise StanzaError("not-acceptable",
                              f"the password needs at least {min_len} characters")
        try:
            user = self.api.accounts.prepare(username)
        except AccountError as exc:
            raise StanzaError("jid-malformed", str(exc)) from None
        if await self.api.accounts.exists(user) or (invites is not None
                                                   and await invites.reserved(user)):
            raise StanzaError("conflict", f"the username {user!r} is taken")
        try:
            await self.api.accounts.create(user, password, self.api.now())
        except AccountError as exc:
            raise StanzaError("conflict", str(exc)) from None
        if recent is not None:
            recent.append(self.api.now())
        self.log.info("registered %s@%s in band", user, self.api.domain)
        return iq.result()


MODULE = Register
