"""XEP-0050 command sessions: what a command is, what one step of it answers, and the sessions
that carry a multi-stage command from one request to the next (next, prev, complete,
cancel), each keyed by the requester's full JID and its ``sessionid``."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from hongyan.modules.adhoc.forms import COMMANDS, Values, command_error
from hongyan.xmpp.element import Element

ACTIONS = frozenset({"execute", "next", "prev", "complete", "cancel"})
#: how long a session waits for its next request, and how many one requester may hold
SESSION_TTL = 600.0
MAX_PER_REQUESTER = 16
MAX_SESSIONS = 10_000


@dataclass(slots=True)
class Step:
    """What one step of a command answers: a form (or a result form), the actions allowed
    next (none: the command completed) with the default one, and a note."""

    form: Element | None = None
    actions: tuple[str, ...] = ()
    default: str = "complete"
    note: str = ""
    note_type: str = "info"
    extra: list[Element] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return not self.actions


class Command:
    """A command at ``node``. ``start`` answers the first request; ``step`` each ``next`` or
    ``complete`` with the submitted values (``state`` lives as long as the session and is
    restored as it was when ``prev`` goes back a step; ``state["requester"]`` is the bare JID
    that runs it)."""

    node: str = ""
    name: str = ""
    #: only the server's administrators may run it (the others get forbidden)
    admin: bool = True

    def may(self, requester: str, admins: frozenset[str]) -> bool:
        """Whether ``requester`` (a bare JID) may see and run the command."""
        return not self.admin or requester in admins

    async def start(self, state: dict[str, Any]) -> Step:
        raise NotImplementedError

    async def step(self, action: str, values: Values, state: dict[str, Any]) -> Step:
        raise NotImplementedError


@dataclass(slots=True)
class Session:
    command: Command
    requester: str
    sid: str
    touched: float
    #: the steps shown so far with the state each was shown in (prev pops one)
    stack: list[tuple[Step, dict[str, Any]]] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def current(self) -> Step:
        return self.stack[-1][0]


class Sessions:
    """The open sessions of this process (a requester's IQs are handled at its home)."""

    def __init__(self) -> None:
        self._open: dict[tuple[str, str], Session] = {}

    def new(self, command: Command, requester: str, now: float) -> Session:
        mine = sorted((s for s in self._open.values() if s.requester == requester),
                      key=lambda s: s.touched)
        for old in mine[:max(0, len(mine) - MAX_PER_REQUESTER + 1)]:
            self.close(old)
        if len(self._open) >= MAX_SESSIONS:
            self.expire(now)
            if len(self._open) >= MAX_SESSIONS:
                self.close(min(self._open.values(), key=lambda s: s.touched))
        session = Session(command, requester, secrets.token_hex(8), now)
        self._open[(requester, session.sid)] = session
        return session

    def get(self, requester: str, sid: str, node: str, now: float) -> Session:
        """The session ``sid`` of ``requester`` on ``node``: bad-sessionid when there is none,
        session-expired when it waited too long."""
        session = self._open.get((requester, sid))
        if session is None or session.command.node != node:
            raise command_error("bad-request", "bad-sessionid", "no such session")
        if now - session.touched > SESSION_TTL:
            self.close(session)
            raise command_error("not-allowed", "session-expired", "the session expired")
        session.touched = now
        return session

    def close(self, session: Session) -> None:
        self._open.pop((session.requester, session.sid), None)

    def expire(self, now: float) -> None:
        for s in [s for s in self._open.values() if now - s.touched > SESSION_TTL]:
            self.close(s)

    def __len__(self) -> int:
        return len(self._open)


def allowed(session: Session, step: Step) -> frozenset[str]:
    """The actions a request may carry after ``step`` (prev: when there is a step before)."""
    acts = set(step.actions)
    if len(session.stack) > 1:
        acts.add("prev")
    return frozenset(acts)


def answer(session: Session, step: Step, status: str | None = None) -> Element:
    """The ``<command/>`` of a response: status, actions, note, form."""
    el = Element("command", COMMANDS, {"node": session.command.node, "sessionid": session.sid,
                                       "status": status or ("completed" if step.done
                                                            else "executing")})
    if status is None and not step.done:
        actions = el.add("actions", attrs={"execute": step.default})
        for a in ("prev", "next", "complete"):
            if a in allowed(session, step):
                actions.add(a)
    if step.note:
        el.add("note", attrs={"type": step.note_type}, text=step.note)
    if step.form is not None and status is None:
        el.append(step.form)
    for extra in step.extra:
        el.append(extra)
    return el


__all__ = ["ACTIONS", "Command", "Session", "Sessions", "Step", "allowed", "answer"]
