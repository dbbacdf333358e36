"""The operations of service administration, in one place: what the ad-hoc commands (XEP-0133,
``modules/adhoc/``) and the REST admin API (``modules/adminapi/``) both call. Neither checks
input or reaches storage and sessions on its own: each turns a request into a call here and an
:class:`AdminError` into its protocol's error.

With several workers a session lives on its account's home, so what touches sessions (the
online list, ending sessions, announcements, statistics) asks every worker
(``ModuleAPI.ask``): the answer is the node's, whichever worker got the request.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from hongyan.server.accounts import AccountError
from hongyan.xmpp.jid import JID, JIDError
from hongyan.xmpp.sasl import SaslFailure, prepare_password

if TYPE_CHECKING:
    from hongyan.modules.roster import Roster
    from hongyan.modules.roster.store import RosterItem
    from hongyan.server.module import ModuleAPI

#: kv_store namespace of the admin module's values (server-wide ones under username "")
NS_ADMIN = "hongyan:admin"

#: the largest page of a list, and the longest text an announcement or MOTD may have
MAX_PAGE = 1000
MAX_TEXT = 4096
MAX_PASSWORD = 1024
#: the longest delay a shutdown or restart may be given (seconds)
MAX_DELAY = 24 * 3600

Kind = Literal["bad-input", "not-found", "conflict"]


class AdminError(Exception):
    """A request an administrator made that cannot be done: ``kind`` says why (each surface
    maps it to its error: bad-request/item-not-found/conflict, 400/404/409)."""

    def __init__(self, kind: Kind, text: str) -> None:
        super().__init__(text)
        self.kind = kind
        self.text = text


@dataclass(frozen=True, slots=True)
class Message:
    """An announcement or the message of the day."""

    subject: str
    body: str

    def to_json(self) -> str:
        return json.dumps({"subject": self.subject, "body": self.body})

    @classmethod
    def from_json(cls, text: str) -> Message:
        data = json.loads(text)
        return cls(str(data.get("subject", "")), str(data.get("body", "")))


def check_text(name: str, text: str, required: bool = False) -> str:
    if len(text) > MAX_TEXT:
        raise AdminError("bad-input", f"{name} is longer than {MAX_TEXT} characters")
    if required and not text.strip():
        raise AdminError("bad-input", f"{name} is empty")
    if any(ord(c) < 32 and c not in "\t\n\r" for c in text):
        raise AdminError("bad-input", f"{name} has control characters")
    return text


def check_page(offset: int, limit: int) -> None:
    if offset < 0:
        raise AdminError("bad-input", "the offset is negative")
    if not 1 <= limit <= MAX_PAGE:
        raise AdminError("bad-input", f"the limit must be between 1 and {MAX_PAGE}")


class AdminOps:
    """Service administration over one node. ``roster`` answers roster reads."""

    def __init__(self, api: ModuleAPI, roster: Roster) -> None:
        self.api = api
        self._roster = roster

    # -- who ------------------------------------------------------------------------------------
    def username(self, text: str) -> str:
        """An account of this server named by its JID or its username, prepared."""
        text = text.strip()
        local = text
        if "@" in text:
            try:
                jid = JID.parse(text)
            except JIDError as exc:
                raise AdminError("bad-input", f"{text!r} is not a JID: {exc}") from None
            if jid.domain != self.api.domain or jid.resource or not jid.local:
                raise AdminError("bad-input",
                                 f"{text!r} is not an account of {self.api.domain}")
            local = jid.local
        try:
            return self.api.accounts.prepare(local)
        except AccountError as exc:
            raise AdminError("bad-input", str(exc)) from None

    def jid(self, username: str) -> str:
        return f"{username}@{self.api.domain}"

    async def existing(self, text: str) -> str:
        user = self.username(text)
        if not await self.api.accounts.exists(user):
            raise AdminError("not-found", f"no account {self.jid(user)}")
        return user

    # -- accounts -------------------------------------------------------------------------------
    async def add_user(self, text: str, password: str) -> str:
        user = self.username(text)
        _check_password(password)
        try:
            await self.api.accounts.create(user, password, self.api.now())
        except AccountError as exc:
            raise AdminError("conflict", str(exc)) from None
        return user

    async def delete_user(self, text: str) -> None:
        user = await self.existing(text)
        await self.api.delete_account(user)

    async def set_disabled(self, text: str, disabled: bool) -> None:
        """Disable an account (it cannot log in, its sessions end) or enable it again."""
        user = await self.existing(text)
        await self.api.accounts.set_disabled(user, disabled)
        if disabled:
            await self.end_sessions(user, "this account was disabled")

    async def set_password(self, text: str, password: str) -> None:
        user = await self.existing(text)
        _check_password(password)
        await self.api.accounts.set_password(user, password)

    async def roster(self, text: str) -> list[RosterItem]:
        user = await self.existing(text)
        items = await self._roster.items(user)
        return [items[k] for k in sorted(items)]

    async def last_login(self, text: str) -> float | None:
        """When the account last bound a resource (None: never since this was recorded)."""
        user = await self.existing(text)
        stamp = await self.api.kv.get(user, NS_ADMIN, "lastlogin")
        return None if stamp is None else float(stamp)

    async def user_info(self, text: str) -> dict[str, object]:
        user = await self.existing(text)
        sessions = [s for s in await self.sessions() if s.startswith(self.jid(user) + "/")]
        return {"username": user, "jid": self.jid(user),
                "created": await self.api.accounts.created(user),
                "disabled": await self.api.accounts.is_disabled(user),
                "last_login": await self.last_login(user), "sessions": sessions}

    async def registered(self, offset: int = 0, limit: int = MAX_PAGE) -> tuple[int, list[str]]:
        """How many accounts there are, and the bare JIDs of a page of them in order."""
        check_page(offset, limit)
        accounts = self.api.accounts
        return await accounts.count(), [self.jid(u) for u in await accounts.page(offset, limit)]

    # -- sessions (every worker) ----------------------------------------------------------------
    async def sessions(self) -> list[str]:
        """The full JIDs of every bound session of the node, in order."""
        answers = await self.api.ask("admin-sessions")
        return sorted(j for body in answers.values() for j in json.loads(body))

    async def online(self, offset: int = 0, limit: int = MAX_PAGE) -> tuple[int, list[str]]:
        """How many accounts have a session, and the bare JIDs of a page of them."""
        check_page(offset, limit)
        users = sorted({full.partition("/")[0] for full in await self.sessions()})
        return len(users), users[offset:offset + limit]

    async def end_sessions(self, text: str, why: str = "an administrator ended this session"
                           ) -> int:
        """End every session of an account; returns how many there were."""
        user = await self.existing(text)
        body = json.dumps({"user": user, "why": why}).encode()
        return sum(int(n) for n in (await self.api.ask("admin-end", body)).values())

    async def announce(self, subject: str, body: str) -> int:
        """Send a message to every bound session; returns how many got it."""
        msg = Message(check_text("the subject", subject), check_text("the body", body, True))
        answers = await self.api.ask("admin-announce", msg.to_json().encode())
        return sum(int(n) for n in answers.values())

    # -- the message of the day -----------------------------------------------------------------
    async def motd(self) -> Message | None:
        stored = await self.api.kv.get("", NS_ADMIN, "motd")
        return None if stored is None else Message.from_json(stored)

    async def set_motd(self, subject: str, body: str) -> None:
        """Set the message every session gets when it binds (workers reload it)."""
        msg = Message(check_text("the subject", subject), check_text("the message", body, True))
        await self.api.kv.set("", NS_ADMIN, "motd", msg.to_json())
        await self.api.ask("admin-motd")

    async def delete_motd(self) -> None:
        await self.api.kv.delete("", NS_ADMIN, "motd")
        await self.api.ask("admin-motd")

    # -- the node -------------------------------------------------------------------------------
    async def shutdown(self, delay: float, announcement: str, restart: bool) -> None:
        """Tell every online user (when ``announcement``), then stop or restart the node after
        ``delay`` seconds."""
        if not 0 <= delay <= MAX_DELAY:
            raise AdminError("bad-input", f"the delay must be between 0 and {MAX_DELAY} s")
        check_text("the announcement", announcement)
        if announcement.strip():
            await self.announce("Server restart" if restart else "Server shutdown",
                                announcement)
        # (at least a moment: the answer to the administrator leaves first)
        self.api.call_later(max(delay, 0.05), lambda: self.api.shutdown(restart))

    async def stats(self) -> dict[str, object]:
        """Accounts, sessions and the node's counters (summed over the workers)."""
        answers = await self.api.ask("admin-stats")
        totals: dict[str, float] = {}
        for body in answers.values():
            for name, value in json.loads(body).items():
                totals[name] = totals.get(name, 0) + value
        count, _users = await self.online(0, MAX_PAGE)
        return {"registered_users": await self.api.accounts.count(), "online_users": count,
                "workers": len(answers), **{k: int(v) for k, v in sorted(totals.items())}}


def _check_password(password: str) -> None:
    if not password:
        raise AdminError("bad-input", "the password is empty")
    if len(password) > MAX_PASSWORD:
        raise AdminError("bad-input", f"the password is longer than {MAX_PASSWORD} characters")
    try:
        prepare_password(password)  # (RFC 8265 OpaqueString, as SASL will prepare it)
    except SaslFailure as exc:
        raise AdminError("bad-input", exc.text) from None


__all__ = ["NS_ADMIN", "AdminError", "AdminOps", "Message"]
