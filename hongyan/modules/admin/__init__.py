"""Service administration: the operations both admin surfaces share (:mod:`.ops`), and what
they need done in every process: the message of the day sent at login, the last login
recorded, and each worker's answers about its own sessions (listing, ending, announcing,
counting). The administrators are ``server.admins`` (``ModuleAPI.admins``); who may call is
checked by the surfaces (ad-hoc commands: the requester's bare JID; the API: its token)."""

from __future__ import annotations

import json

from hongyan.modules.admin.ops import NS_ADMIN, AdminError, AdminOps, Message
from hongyan.modules.roster import Roster
from hongyan.server.hooks import SessionBound
from hongyan.server.module import Module, hook
from hongyan.xmpp.element import Element
from hongyan.xmpp.errors import StreamError

#: the node's counters the statistics show (summed over workers)
STATS = ("logins", "login_failures", "messages_routed", "stanzas_in", "stanzas_out")


class Admin(Module):
    name = "admin"
    depends = ("roster",)

    async def start(self) -> None:
        self.ops = AdminOps(self.api, self.api.module(Roster))
        self._motd: Message | None = await self.ops.motd()
        self.api.on_ask("admin-sessions", self._sessions)
        self.api.on_ask("admin-end", self._end)
        self.api.on_ask("admin-announce", self._announce)
        self.api.on_ask("admin-motd", self._reload_motd)
        self.api.on_ask("admin-stats", self._stats)

    # -- at login -------------------------------------------------------------------------------
    @hook(SessionBound)
    def on_bound(self, ev: SessionBound) -> None:
        jid = ev.session.jid
        if jid is None:
            return
        self.api.spawn(self.api.kv.set(jid.local, NS_ADMIN, "lastlogin", str(self.api.now())))
        if self._motd is not None:
            ev.session.send(self._message(str(jid), self._motd))

    def _message(self, to: str, msg: Message) -> Element:
        el = Element("message", attrs={"from": self.api.domain, "to": to, "type": "normal"})
        if msg.subject:
            el.add("subject", text=msg.subject)
        el.add("body", text=msg.body)
        return el

    # -- each worker's part ---------------------------------------------------------------------
    def _sessions(self, _body: bytes) -> bytes:
        return json.dumps([str(s.jid) for s in self.api.sessions.all()
                           if s.jid is not None]).encode()

    def _end(self, body: bytes) -> bytes:
        req = json.loads(body)
        sessions = self.api.sessions.resources(f"{req['user']}@{self.api.domain}")
        for s in sessions:
            s.stream_error(StreamError("policy-violation", str(req["why"])))
        return str(len(sessions)).encode()

    def _announce(self, body: bytes) -> bytes:
        msg = Message.from_json(body.decode())
        sessions = [s for s in self.api.sessions.all() if s.jid is not None]
        for s in sessions:
            s.send(self._message(str(s.jid), msg))
        return str(len(sessions)).encode()

    async def _reload_motd(self, _body: bytes) -> bytes:
        self._motd = await self.ops.motd()
        return b""

    def _stats(self, _body: bytes) -> bytes:
        snapshot = self.api.metrics.snapshot()
        out: dict[str, float] = {"sessions": float(self.api.sessions.count())}
        for name in STATS:
            rows = snapshot.get(name)
            if rows:
                out[name] = sum(value for _labels, value in rows)
        return json.dumps(out).encode()


MODULE = Admin

__all__ = ["MODULE", "Admin", "AdminError", "AdminOps"]
