"""XEP-0050 Ad-Hoc Commands, with the XEP-0133 service administration commands for the
server's administrators (``server.admins``).

The commands are listed by disco#items on node ``http://jabber.org/protocol/commands`` of the
server (each requester sees the ones it may run) and described by disco#info on their own
node. A request without ``sessionid`` starts a session; the next ones carry it, with
``next``, ``prev``, ``complete``, ``cancel`` or ``execute`` (the step's default action).
Errors are XEP-0050's: ``forbidden`` for a command the requester may not run,
``item-not-found`` for an unknown node, ``bad-request`` with ``<malformed-action/>`` (no such
action), ``<bad-action/>`` (not allowed at this step), ``<bad-sessionid/>``, ``<bad-payload/>``
(a form value that does not fit) and ``not-allowed`` with ``<session-expired/>``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from hongyan.modules.adhoc.admin import admin_commands
from hongyan.modules.adhoc.commands import (
    ACTIONS,
    Command,
    Session,
    Sessions,
    Step,
    allowed,
    answer,
)
from hongyan.modules.adhoc.forms import COMMANDS, command_error, submitted
from hongyan.modules.adhoc.reports import report_commands
from hongyan.modules.admin import Admin
from hongyan.modules.admin.ops import AdminError
from hongyan.modules.disco import Disco
from hongyan.server.module import Iq, Module, iq_handler
from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element
from hongyan.xmpp.errors import StanzaError

if TYPE_CHECKING:
    from hongyan.modules.blocking import Blocking

#: AdminError kinds as stanza errors
_ERRORS = {"not-found": "item-not-found", "conflict": "conflict"}


def stanza_error(exc: AdminError) -> StanzaError:
    if exc.kind == "bad-input":
        return command_error("bad-request", "bad-payload", exc.text)
    return StanzaError(_ERRORS[exc.kind], exc.text)


class AdHoc(Module):
    name = "adhoc"
    xeps = {"0050": "1.3.0", "0133": "1.3.0", "0004": "2.13.1"}
    features = frozenset({COMMANDS, NS.DATA_FORMS})
    depends = ("admin", "disco")
    uses = ("blocking",)  # its XEP-0377 reports, when loaded

    async def start(self) -> None:
        ops = self.api.module(Admin).ops
        self.commands: dict[str, Command] = {c.node: c for c in admin_commands(ops)}
        # (no import of the blocking module here: a server whose blocking folder is deleted
        # still has its admin commands and routes, without the reports)
        blocking: Blocking | None = self.api.optional("blocking")  # type: ignore[assignment]
        if blocking is not None:
            self.commands.update((c.node, c) for c in report_commands(blocking,
                                                                      self.api.domain))
        self.sessions = Sessions()
        self._remove_disco = self.api.module(Disco).serve_nodes(self._disco)

    async def stop(self) -> None:
        self._remove_disco()

    def add(self, command: Command) -> Callable[[], None]:
        """Offer another module's command (until the returned function is called)."""
        if command.node in self.commands:
            raise ValueError(f"two commands at {command.node}")
        self.commands[command.node] = command

        def remove() -> None:
            self.commands.pop(command.node, None)
        return remove

    def _may(self, command: Command, requester: str) -> bool:
        return command.may(requester, self.api.admins)

    # -- discovery ------------------------------------------------------------------------------
    def _disco(self, kind: str, node: str, iq: Iq) -> Element | None:
        requester = iq.sender.bare_str
        if kind == "items" and node == COMMANDS:
            q = Element("query", NS.DISCO_ITEMS, {"node": COMMANDS})
            for c in self.commands.values():
                if self._may(c, requester):
                    q.add("item", attrs={"jid": self.api.domain, "node": c.node,
                                         "name": c.name})
            return q
        if kind == "info" and node == COMMANDS:
            q = Element("query", NS.DISCO_INFO, {"node": COMMANDS})
            q.add("identity", attrs={"category": "automation", "type": "command-list",
                                     "name": "Commands"})
            return q
        command = self.commands.get(node)
        if kind != "info" or command is None:
            return None
        if not self._may(command, requester):
            raise StanzaError("forbidden", "this command is for the server's administrators")
        q = Element("query", NS.DISCO_INFO, {"node": node})
        q.add("identity", attrs={"category": "automation", "type": "command-node",
                                 "name": command.name})
        q.add("feature", attrs={"var": COMMANDS})
        q.add("feature", attrs={"var": NS.DATA_FORMS})
        return q

    # -- execution ------------------------------------------------------------------------------
    @iq_handler(COMMANDS, "command", "set", scope="host")
    async def on_command(self, iq: Iq) -> Element:
        req = iq.payload
        node = req.attrs.get("node", "")
        action = req.attrs.get("action", "execute")
        if action not in ACTIONS:
            raise command_error("bad-request", "malformed-action", f"no action {action!r}")
        command = self.commands.get(node)
        if command is None:
            raise StanzaError("item-not-found", "no such command")
        requester = iq.sender.bare_str
        if not self._may(command, requester):
            raise StanzaError("forbidden", "this command is for the server's administrators")
        me, now = str(iq.sender), self.api.now()
        sid = req.attrs.get("sessionid")
        form = submitted(req)
        try:
            if sid is None:
                if action != "execute":
                    raise command_error("bad-request", "bad-sessionid",
                                        "a session starts with execute")
                session = self.sessions.new(command, me, now)
                session.state["requester"] = requester
                first = await command.start(session.state)
                session.stack.append((first, dict(session.state)))
                if form is None or first.done:
                    return iq.result(self._shown(session, first))
                action = first.default  # (a form submitted with the first request)
            else:
                session = self.sessions.get(me, sid, node, now)
            return iq.result(await self._act(session, action, form))
        except AdminError as exc:
            raise stanza_error(exc) from None

    async def _act(self, session: Session, action: str,
                   form: tuple[str, dict[str, list[str]]] | None) -> Element:
        current = session.current
        if action == "execute":
            action = current.default
        if action == "cancel" or (form is not None and form[0] == "cancel"):
            self.sessions.close(session)
            return answer(session, Step(), "canceled")
        if action not in allowed(session, current):
            raise command_error("bad-request", "bad-action",
                                f"{action} is not possible at this step")
        if action == "prev":
            session.stack.pop()
            step, state = session.stack[-1]
            session.state = dict(state)
            return answer(session, step)
        step = await session.command.step(action, form[1] if form else {}, session.state)
        session.stack.append((step, dict(session.state)))
        return self._shown(session, step)

    def _shown(self, session: Session, step: Step) -> Element:
        if step.done:
            self.sessions.close(session)
        return answer(session, step)

MODULE = AdHoc
