"""XEP-0191 Blocking Command.

Blocklists are checked on every stanza to and from a user, synchronously, so all non-empty
blocklists are kept in memory (loaded at start, changed with the table). A blocked entity's
messages and IQ requests are answered ``service-unavailable`` (the user's block is not revealed),
its presence is dropped; the user's own stanzas to a blocked entity get ``not-acceptable`` with
``<blocked xmlns='urn:xmpp:blocking:errors'/>``.

A block item may carry a XEP-0377 report (spam or abuse): the JID is blocked as without it,
and the report is kept for the administrators (:mod:`.reports`; listed and dismissed through
:meth:`Blocking.reports` and :meth:`Blocking.dismiss`, which the admin API and the ad-hoc
commands call).
"""

from __future__ import annotations

import secrets

from hongyan.modules.blocking import reports as R
from hongyan.server.hooks import (
    AccountDeleted,
    StanzaInbound,
    StanzaOutbound,
    anywhere,
)
from hongyan.server.module import Iq, Module, ModuleAPI, hook, iq_handler
from hongyan.storage.migrations import Migration
from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element
from hongyan.xmpp.errors import StanzaError, error_reply
from hongyan.xmpp.jid import JID, JIDError

MIGRATIONS = (
    Migration("blocking", 1, (
        """CREATE TABLE blocklist (
            username TEXT NOT NULL,
            jid TEXT NOT NULL,
            PRIMARY KEY (username, jid)
        )""",
    )),
    R.MIGRATION,
)
MAX_ITEMS = 10000


def matches(blocked: set[str], jid: JID) -> bool:
    """XEP-0191 §3.3 / XEP-0016 matching: full, bare, domain/resource or domain."""
    if not blocked:
        return False
    if str(jid) in blocked or jid.domain in blocked:
        return True
    if jid.resource and jid.bare_str in blocked:
        return True
    return bool(jid.resource and jid.local and f"{jid.domain}/{jid.resource}" in blocked)


class Blocking(Module):
    name = "blocking"
    xeps = {"0191": "1.3", "0377": "0.4.1"}
    features = frozenset({NS.BLOCKING, R.REPORTING})
    migrations = MIGRATIONS

    def __init__(self, api: ModuleAPI) -> None:
        super().__init__(api)
        self.lists: dict[str, set[str]] = {}
        # registered only while some blocklist is non-empty (the common case has none)
        self._enforcement = api.hook_set((StanzaInbound, self.on_inbound, 100),
                                         (StanzaOutbound, self.on_outbound, 100))

    async def start(self) -> None:
        self.api.on_notice("blocklist", self._peer_changed)
        for username, jid in await self.api.db.fetchall("SELECT username, jid FROM blocklist"):
            self.lists.setdefault(username, set()).add(jid)
        self._enforce()

    async def stop(self) -> None:
        self._enforcement.set(False)
        await super().stop()

    # -- public API -----------------------------------------------------------------------------
    @property
    def active(self) -> bool:
        """Whether any user has a non-empty blocklist (if not, nothing needs checking)."""
        return self._enforcement.active

    def blocks(self, username: str, jid: JID) -> bool:
        """Whether the local user ``username`` blocks ``jid`` (for stanzas that do not pass
        the router's StanzaInbound hook, such as a room's fan-out)."""
        blocked = self.lists.get(username)
        return blocked is not None and matches(blocked, jid)

    async def reports(self, offset: int, limit: int) -> tuple[int, list[R.StoredReport]]:
        """The XEP-0377 reports users made, newest first (how many in all, and a page)."""
        return await R.page(self.api.db, offset, limit)

    async def dismiss(self, report_id: int) -> bool:
        """Delete a report (an administrator dealt with it); False when there is none."""
        return await R.dismiss(self.api.db, report_id)

    # -- several workers ----------------------------------------------------------------------
    async def _changed(self, username: str) -> None:
        """Every worker keeps every blocklist (a room's fan-out checks its occupants', and the
        sender's worker checks a message's recipient's): tell the others that ``username``'s
        changed, and return once they all applied it, so that nothing sent after the user's
        IQ was answered passes the old list anywhere."""
        await self.api.broadcast("blocklist", username.encode())

    async def _peer_changed(self, body: bytes) -> None:
        username = body.decode()
        rows = await self.api.db.fetchall("SELECT jid FROM blocklist WHERE username=?",
                                          username)
        if rows:
            self.lists[username] = {r[0] for r in rows}
        else:
            self.lists.pop(username, None)
        self._enforce()

    # -- enforcement ----------------------------------------------------------------------------
    def _enforce(self) -> None:
        self._enforcement.set(any(self.lists.values()))

    @anywhere  # every worker holds every blocklist
    def on_inbound(self, ev: StanzaInbound) -> bool:
        blocked = self.lists.get(ev.to.local)
        if blocked is None or not matches(blocked, ev.sender):
            return False
        el = ev.stanza
        if el.name == "presence":
            return True
        if el.name == "iq" and el.attrs.get("type") not in ("get", "set"):
            return True
        self.api.router.bounce(el, StanzaError("service-unavailable"))
        return True

    def on_outbound(self, ev: StanzaOutbound) -> bool:
        if ev.to is None:
            return False
        blocked = self.lists.get(ev.sender.local)
        if blocked is None or not matches(blocked, ev.to):
            return False
        el = ev.stanza
        if el.name == "presence" or el.attrs.get("type") == "error":
            return True
        if ev.session is not None:
            reply = error_reply(el, StanzaError("not-acceptable", "you blocked this contact",
                                                app=Element("blocked", NS.BLOCKING_ERRORS)))
            reply.attrs.pop("from", None)
            ev.session.send(reply)
        return True

    # -- IQ -------------------------------------------------------------------------------------
    @iq_handler(NS.BLOCKING, "blocklist", "get", scope="self")
    def on_get(self, iq: Iq) -> Element:
        if iq.session is not None:
            if iq.session.data is None:
                iq.session.data = {}
            iq.session.data["blocklist"] = True
        bl = Element("blocklist", NS.BLOCKING)
        for jid in sorted(self.lists.get(iq.sender.local, ())):
            bl.add("item", attrs={"jid": jid})
        return iq.result(bl)

    @staticmethod
    def _items(payload: Element) -> list[str]:
        return [j for j, _ in Blocking._reported(payload)]

    @staticmethod
    def _reported(payload: Element) -> list[tuple[str, R.Report | None]]:
        out = []
        for item in payload.find_all("item"):
            try:
                jid = str(JID.parse(item.attrs.get("jid", "")))
            except JIDError as exc:
                raise StanzaError("jid-malformed", str(exc)) from None
            out.append((jid, R.parse(item)))
        return out

    @iq_handler(NS.BLOCKING, "block", "set", scope="self")
    async def on_block(self, iq: Iq) -> Element:
        items = self._reported(iq.payload)
        jids = [j for j, _ in items]
        if not jids:
            raise StanzaError("bad-request", "block at least one JID")
        username = iq.sender.local
        current = self.lists.setdefault(username, set())
        new = [j for j in dict.fromkeys(jids) if j not in current]
        if len(current) + len(new) > MAX_ITEMS:
            raise StanzaError("not-allowed", f"blocklists hold at most {MAX_ITEMS} items")
        async with self.api.db.transaction() as tx:
            for j in new:
                await tx.execute("INSERT INTO blocklist (username, jid) VALUES (?, ?) "
                                 "ON CONFLICT (username, jid) DO NOTHING", username, j)
            now = int(self.api.now())
            for j, report in items:
                if report is None:
                    continue
                if await R.store(tx, username, j, report, now):
                    self.log.info("%s reported %s (%s)", username, j, report.reason)
                else:
                    self.log.info("%s holds %d reports: the one about %s was dropped",
                                  username, R.MAX_PER_REPORTER, j)
        for j in new:
            # The blocked entity sees the user go offline (XEP-0191 §3.3).
            await self._unavailable_to(iq.sender, j)
        current.update(new)
        self._enforce()
        await self._changed(username)
        self._push(iq.sender, "block", jids)
        return iq.result()

    @iq_handler(NS.BLOCKING, "unblock", "set", scope="self")
    async def on_unblock(self, iq: Iq) -> Element:
        jids = self._items(iq.payload)
        username = iq.sender.local
        current = self.lists.get(username, set())
        if not jids:
            await self.api.db.execute("DELETE FROM blocklist WHERE username=?", username)
            removed = sorted(current)
            self.lists.pop(username, None)
        else:
            removed = [j for j in dict.fromkeys(jids) if j in current]
            async with self.api.db.transaction() as tx:
                for j in removed:
                    await tx.execute("DELETE FROM blocklist WHERE username=? AND jid=?",
                                     username, j)
            current.difference_update(removed)
            if not current:
                self.lists.pop(username, None)
        self._enforce()
        await self._changed(username)
        self._push(iq.sender, "unblock", jids)
        for j in removed:
            await self._presence_again(iq.sender, j)
        return iq.result()

    def _push(self, user: JID, kind: str, jids: list[str]) -> None:
        for s in self.api.sessions.resources(user.bare):
            if s.jid is None or not (s.data and s.data.get("blocklist")):
                continue
            iq = Element("iq", attrs={"type": "set", "id": "block" + secrets.token_hex(6),
                                      "to": str(s.jid)})
            el = iq.add(kind, NS.BLOCKING)
            for j in jids:
                el.add("item", attrs={"jid": j})
            s.send(iq)

    async def _unavailable_to(self, user: JID, target: str) -> None:
        try:
            to = JID.parse(target)
        except JIDError:
            return
        for s in self.api.sessions.available(user.bare):
            if s.jid is not None:
                el = Element("presence", attrs={"type": "unavailable", "from": str(s.jid),
                                                "to": target})
                pending = self.api.router.presence(el, s.jid, to)
                if pending is not None:
                    await pending

    async def _presence_again(self, user: JID, target: str) -> None:
        try:
            to = JID.parse(target)
        except JIDError:
            return
        for s in self.api.sessions.available(user.bare):
            if s.jid is not None and s.presence is not None:
                attrs = dict(s.presence.attrs)
                attrs.update({"from": str(s.jid), "to": target})
                pending = self.api.router.presence(
                    Element("presence", s.presence.xmlns, attrs, s.presence.children), s.jid, to)
                if pending is not None:
                    await pending

    @hook(AccountDeleted)
    async def on_deleted(self, ev: AccountDeleted) -> None:
        await self.api.db.execute("DELETE FROM blocklist WHERE username=?", ev.username)
        # the reports the user made go with its data; those about it stay for the admins
        await self.api.db.execute("DELETE FROM abuse_reports WHERE reporter=?", ev.username)
        self.lists.pop(ev.username, None)
        self._enforce()
        await self._changed(ev.username)


MODULE = Blocking
