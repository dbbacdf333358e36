"""IRC clients as XMPP sessions (``[irc]``; docs/design.md, IRC).

Each IRC connection is an ordinary client session of its account inside the server, bound
to a resource ``irc-<random>``: routing, presence, MUC, carbons and the archives apply to it
unchanged. The protocol is :mod:`hongyan.irc` (sans-I/O); this module translates: IRC
commands become stanzas routed as the session's own (``from`` stamped like c2s does), and the
stanzas routed to the session (``Session.send``) become IRC lines. ``#room`` is the room
``room@<muc service>``; a nick is the account of that name on this server. The nick of an IRC
user is its account name, and its nick in every room.

Input is handled in order: a command whose routing returns an awaitable holds the ones after
it in a queue, drained by one task. Lines are rate-limited per connection: a bucket of
``lines_burst`` lines refilled at ``lines_per_second``; a read that overdraws it pauses the
socket until it is back (TCP slows the client down), and more than ``flood_lines`` past it in
one go ends the connection with ``ERROR :Excess Flood``. Overlong lines (417), unknown
commands (421) and the rest of the protocol's errors are the core's.

With several workers a session lives on its account's home: a login checked on another worker
hands the connection over (``Cluster.hand_over_irc``: relayed there with the core's state),
and the home makes the session again (:meth:`IrcSession.adopted`).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import logging
import secrets
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from hongyan.irc.connection import Command, Event, IrcConnection, Login, Quit
from hongyan.irc.message import Message
from hongyan.server.hooks import SessionBound, SessionClosed
from hongyan.server.irc_commands import Channel, Commands
from hongyan.server.irc_history import History
from hongyan.server.irc_stanzas import Stanzas
from hongyan.server.session import BOUND, CLOSED, MAX_QUEUED, ClientSession
from hongyan.xmpp.element import Element
from hongyan.xmpp.errors import StreamError
from hongyan.xmpp.jid import JID, JIDError
from hongyan.xmpp.parser import parse_element

if TYPE_CHECKING:
    from hongyan.config.schema import IRCSection
    from hongyan.server.c2s import Host, Transport
    from hongyan.server.clock import Handle

log = logging.getLogger("hongyan.irc")


class IrcSession(ClientSession):
    """One IRC client: its protocol core, its rooms, its line budget."""

    __slots__ = ("_pending", "_preauth", "_stamp", "_task", "_timer", "_tokens", "cfg", "channels",
                 "commands", "history", "iqs", "irc", "service", "stanzas")

    node: Host
    transport: Transport

    def __init__(self, node: Host, transport: Transport, cfg: IRCSection) -> None:
        super().__init__()
        self.node = node
        self.transport = transport
        self.cfg = cfg
        self.irc = IrcConnection(cfg.server_name or node.domain,
                                 chathistory=cfg.chathistory_max)
        self.service = cfg.muc_service or f"conference.{node.domain}"
        self.channels: dict[str, Channel] = {}
        #: our IQs awaiting an answer: id -> (channel name, nick) for the error's numeric
        self.iqs: dict[str, tuple[str, str]] = {}
        self.commands = Commands(self)
        self.stanzas = Stanzas(self)
        self.history = History(self)
        self._pending: collections.deque[Event] | None = None
        self._task: asyncio.Task[None] | None = None
        self._tokens = float(cfg.lines_burst)
        self._stamp = node.clock.monotonic()
        self._timer: Handle | None = node.clock.call_later(cfg.auth_timeout, self._timeout)
        #: the address this connection counts against in node.preauth, until it logs in
        self._preauth: str | None = None

    def __repr__(self) -> str:
        return f"<IrcSession {self.jid or self.transport.peer_host}>"

    def admit(self) -> bool:
        """Count this new connection against the node's pre-authentication caps (those of
        c2s); over one, it ends at once with ``ERROR`` and this returns False."""
        host = self.transport.peer_host
        refused = self.node.preauth.enter(host)
        if refused is not None:
            self.irc.error(refused)
            self._out_irc()
            self._shutdown()
            return False
        self._preauth = host
        return True

    def _leave_preauth(self) -> None:
        host, self._preauth = self._preauth, None
        if host is not None:
            self.node.preauth.leave(host)

    # -- bytes in -------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self.state == CLOSED:
            return
        cfg = self.cfg
        now = self.node.clock.monotonic()
        tokens = min(self._tokens + (now - self._stamp) * cfg.lines_per_second,
                     float(cfg.lines_burst))
        self._stamp = now
        events = self.irc.receive_data(data, budget=int(tokens) + cfg.flood_lines)
        tokens -= self.irc.lines
        self._tokens = tokens
        for ev in events:
            self._event(ev)
        self._out_irc()
        if self.irc.closed:
            self._shutdown()
            return
        if tokens < 0.0:
            self.transport.pause_reading()
            self.node.clock.call_later(-tokens / cfg.lines_per_second, self._refilled)

    def _in_debt(self) -> bool:
        """Past the line budget still (then a timer resumes reading when it is paid)."""
        elapsed = self.node.clock.monotonic() - self._stamp
        return self._tokens + elapsed * self.cfg.lines_per_second < 0.0

    def _refilled(self) -> None:
        if self.state != CLOSED and (self._pending is None or len(self._pending) < MAX_QUEUED):
            self.transport.resume_reading()

    def _event(self, ev: Event) -> None:
        if self._pending is not None:
            self._pending.append(ev)
            if len(self._pending) == MAX_QUEUED:
                self.transport.pause_reading()  # (bounded: what waits behind a slow step)
            return
        pending = self._handle(ev)
        if pending is not None:
            self._pending = collections.deque()
            self._task = asyncio.get_running_loop().create_task(self._drain(pending))

    async def _drain(self, first: Awaitable[object]) -> None:
        pending = self._pending
        assert pending is not None
        try:
            await first
            self._out_irc()
            while pending and self.state != CLOSED:
                ev = pending.popleft()
                if len(pending) == MAX_QUEUED // 2 and not self._in_debt():
                    self.transport.resume_reading()  # (in debt: _refilled resumes it)
                nxt = self._handle(ev)
                if nxt is not None:
                    await nxt
                self._out_irc()
        except Exception:
            log.exception("IRC session %r failed", self)
            self.irc.error("internal error")
        finally:
            self._pending = None
            self._task = None
            self._out_irc()
            if self.irc.closed:
                self._shutdown()

    def _handle(self, ev: Event) -> Awaitable[object] | None:
        if isinstance(ev, Login):
            return self._login(ev)
        if isinstance(ev, Quit):
            self._quit(ev.reason)
            return None
        assert isinstance(ev, Command)
        return self._command(ev.message)

    def _out_irc(self) -> None:
        data = self.irc.data_to_send()
        if data and self.state != CLOSED:  # (closed: ended, or moved to another worker)
            self._write(data)

    # -- login ----------------------------------------------------------------------------------
    async def _login(self, ev: Login) -> None:
        node = self.node
        host = self.transport.peer_host
        if not self.transport.secure and not self.cfg.allow_plaintext_auth:
            self.irc.send(Message("NOTICE", ["*", "Passwords only over TLS here: use the "
                                            "TLS port"], self.irc.server_name))
            self.irc.login_failed()
            return
        username = ""
        ok = False
        try:
            username = node.accounts.prepare(ev.username)
            ok = (not ev.authzid or ev.authzid in (username, f"{username}@{node.domain}")) \
                and await node.guard.check_plain(username, ev.password)
        except Exception:
            ok = False
        if ok and await node.accounts.is_disabled(username):
            self.irc.login_failed()
            return
        if not ok:
            delay = node.guard.failed(host)
            if delay > 0:
                await asyncio.sleep(delay)
            self.irc.login_failed()
            return
        if self.state == CLOSED:
            return
        node.guard.succeeded(host)
        self._leave_preauth()
        cluster = node.cluster
        if cluster is not None:
            home = cluster.home(username)
            if home != cluster.index:
                await cluster.hand_over_irc(self, home, self._moving(username))
                return
        await self.logged_in(username)

    async def logged_in(self, username: str) -> None:
        """The login succeeded here, the account's home: bind, then be available."""
        self.username = username
        self._bind()
        self.irc.logged_in(username)
        # available presence: this resource receives chats to the bare JID (RFC 6121 §8.5)
        presence = Element("presence")
        presence.add("priority", text="0")
        routed = self.route(presence)
        if routed is not None:
            await routed

    def _moving(self, username: str) -> dict[str, Any]:
        """What the account's home needs to go on with this connection: the core's state and
        what was read after the login, as bytes to read again there."""
        queued = b""
        if self._pending:
            lines = []
            for ev in self._pending:
                if isinstance(ev, Command):
                    lines.append(ev.message.to_bytes())
                elif isinstance(ev, Quit):
                    lines.append(Message("QUIT", [ev.reason]).to_bytes())
            self._pending.clear()
            queued = b"".join(lines)
        queued += self.irc.buffered
        return {"u": username, "p": self.transport.peer_host, "s": self.transport.secure,
                "core": self.irc.export(), "read": base64.b64encode(queued).decode()}

    def abandon(self) -> None:
        """This process lets go of the connection (it moved to the account's home): no
        hooks, no output, the timers stopped."""
        self.state = CLOSED
        self._leave_preauth()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._out = None

    @classmethod
    def adopted(cls, node: Host, transport: Transport, cfg: IRCSection,
                state: dict[str, Any]) -> IrcSession:
        """A connection another worker checked the password of, for an account homed here."""
        session = cls(node, transport, cfg)
        session.irc = IrcConnection.restore(state["core"])
        # what was read there comes first; until the login is done here, commands wait
        session._pending = collections.deque()
        read = base64.b64decode(state["read"])
        if read:
            session.data_received(read)
        node.spawn(session._adopted(str(state["u"])))
        return session

    async def _adopted(self, username: str) -> None:
        try:
            await self.logged_in(username)
        finally:
            queued, self._pending = self._pending, None
            self._out_irc()
        for ev in queued or ():
            self._event(ev)
        self._out_irc()

    def _bind(self) -> None:
        node = self.node
        self.jid = JID(self.username, node.domain, f"irc-{secrets.token_hex(4)}")
        old = node.sessions.add(self)
        if old is not None and old is not self:
            old.stream_error(StreamError("conflict", "replaced by a new connection"))
        self.state = BOUND
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        node.hooks.fire_sync(SessionBound(self))

    def _timeout(self) -> None:
        self._timer = None
        if self.state != CLOSED and not self.irc.registered:
            self.irc.error("registration timed out")
            self._out_irc()
            self._shutdown()

    # -- stanzas out ----------------------------------------------------------------------------
    def route(self, el: Element) -> Awaitable[object] | None:
        if self.state != BOUND or self.jid is None:
            return None
        el.attrs["from"] = self.jid.text
        to_text = el.attrs.get("to")
        to = JID.parse(to_text) if to_text is not None else None
        return self.node.router.route_from_session(el, self, to)

    def route_later(self, el: Element) -> None:
        """Route ``el`` from where nothing can wait for it (a stanza being shown)."""
        pending = self.route(el)
        if pending is not None:
            self.node.spawn(pending)

    def _command(self, msg: Message) -> Awaitable[object] | None:
        handler = getattr(self.commands, "irc_" + msg.command.lower(), None)
        if handler is None:  # known to the core, not served here
            self.irc.numeric("421", msg.command, "Unknown command")
            return None
        result: Awaitable[object] | None = handler(msg.params)
        return result

    def _quit(self, reason: str) -> None:
        if self.state == BOUND:
            presence = Element("presence", attrs={"type": "unavailable"})
            if reason:
                presence.add("status", text=reason)
            self.route_later(presence)

    # -- stanzas in -----------------------------------------------------------------------------
    def send(self, item: Element | bytes, raw: bool = False,
             after: object | None = None) -> None:
        """A stanza for this session (from the router, a module, a room): its IRC lines."""
        if self.state == CLOSED or raw:
            return
        try:
            el = item if isinstance(item, Element) else parse_element(item)
        except StreamError:
            return
        try:
            if el.name == "message":
                self.stanzas.message(el)
            elif el.name == "presence":
                self.stanzas.presence(el)
            elif el.name == "iq":
                self.stanzas.iq(el)
        except (JIDError, KeyError):
            log.debug("stanza IRC cannot show: %s", el)
        self._out_irc()
        if self.irc.closed:
            self._shutdown()

    # -- the end --------------------------------------------------------------------------------
    def stream_error(self, exc: StreamError) -> None:
        if self.state == CLOSED:
            return
        self.irc.error(exc.condition)
        self._out_irc()
        self._shutdown()

    def close(self) -> None:
        self.stream_error(StreamError("system-shutdown"))

    def _shutdown(self) -> None:
        if self.state == CLOSED:
            return
        self.flush()
        self._ended()
        self.transport.close()

    def connection_lost(self) -> None:
        self._ended()

    def _ended(self) -> None:
        was_closed = self.state == CLOSED
        self.state = CLOSED
        self._leave_preauth()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending is not None:
            self._pending.clear()
        if was_closed:
            return
        node = self.node
        if self.jid is not None and node.sessions.get(self.jid) is self:
            node.sessions.remove(self)
            was_available = self.available
            self.available = False
            node.spawn(node.hooks.fire(SessionClosed(self, was_available)))



__all__ = ["IrcSession"]
