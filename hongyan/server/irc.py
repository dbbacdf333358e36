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

Only with one worker (the config refuses ``irc.enabled`` with ``server.workers`` > 1): a
session must live on its account's home worker, and IRC connections are not handed over.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import logging
import secrets
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hongyan.irc.connection import Command, Event, IrcConnection, Login, Quit, valid_nick
from hongyan.irc.message import Message
from hongyan.server.hooks import SessionBound, SessionClosed
from hongyan.server.session import BOUND, CLOSED, ClientSession
from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element
from hongyan.xmpp.errors import StreamError
from hongyan.xmpp.jid import JID, JIDError
from hongyan.xmpp.parser import parse_element

if TYPE_CHECKING:
    from hongyan.config.schema import IRCSection
    from hongyan.server.c2s import Host, Transport
    from hongyan.server.clock import Handle

log = logging.getLogger("hongyan.irc")

MUC = "http://jabber.org/protocol/muc"
MUC_USER = MUC + "#user"
MUC_ADMIN = MUC + "#admin"
#: XMPP error conditions of a room join, as IRC numerics
_JOIN_ERRORS = {
    "forbidden": ("474", "Cannot join channel (+b)"),
    "registration-required": ("473", "Cannot join channel (+i)"),
    "not-authorized": ("475", "Cannot join channel (+k)"),
    "service-unavailable": ("471", "Cannot join channel (+l)"),
    "conflict": ("433", "Nickname is already in use in that channel"),
    "not-allowed": ("403", "No such channel (rooms may not be created)"),
    "item-not-found": ("403", "No such channel"),
}
_ROLE_MODE = {"moderator": "o", "participant": "v"}
_PREFIX = {"moderator": "@", "participant": "+"}


@dataclass
class Channel:
    """A room this session is in (or joining)."""

    name: str
    room: JID
    nick: str
    joined: bool = False
    #: occupant nick -> role
    occupants: dict[str, str] = field(default_factory=dict)
    topic: str = ""
    topic_told: bool = False


def irc_time(stamp: str | None) -> str:
    """An IRCv3 server-time value from a XEP-0082 stamp (now when there is none)."""
    when = None
    if stamp:
        try:
            when = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        except ValueError:
            when = None
    if when is None:
        when = datetime.datetime.now(datetime.UTC)
    when = when.astimezone(datetime.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


class IrcSession(ClientSession):
    """One IRC client: its protocol core, its rooms, its line budget."""

    __slots__ = ("_cfg", "_iqs", "_pending", "_stamp", "_task", "_timer", "_tokens",
                 "channels", "irc", "service")

    node: Host
    transport: Transport

    def __init__(self, node: Host, transport: Transport, cfg: IRCSection) -> None:
        super().__init__()
        self.node = node
        self.transport = transport
        self._cfg = cfg
        self.irc = IrcConnection(cfg.server_name or node.domain)
        self.service = cfg.muc_service or f"conference.{node.domain}"
        self.channels: dict[str, Channel] = {}
        #: our IQs awaiting an answer: id -> (channel name, nick) for the error's numeric
        self._iqs: dict[str, tuple[str, str]] = {}
        self._pending: collections.deque[Event] | None = None
        self._task: asyncio.Task[None] | None = None
        self._tokens = float(cfg.lines_burst)
        self._stamp = node.clock.monotonic()
        self._timer: Handle | None = node.clock.call_later(cfg.auth_timeout, self._timeout)

    def __repr__(self) -> str:
        return f"<IrcSession {self.jid or self.transport.peer_host}>"

    # -- bytes in -------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self.state == CLOSED:
            return
        cfg = self._cfg
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

    def _refilled(self) -> None:
        if self.state != CLOSED:
            self.transport.resume_reading()

    def _event(self, ev: Event) -> None:
        if self._pending is not None:
            self._pending.append(ev)
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
                nxt = self._handle(pending.popleft())
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
        if data:
            self._write(data)

    # -- login ----------------------------------------------------------------------------------
    async def _login(self, ev: Login) -> None:
        node = self.node
        host = self.transport.peer_host
        if not self.transport.secure and not self._cfg.allow_plaintext_auth:
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
        self.username = username
        self._bind()
        self.irc.logged_in(username)
        # available presence: this resource receives chats to the bare JID (RFC 6121 §8.5)
        presence = Element("presence")
        presence.add("priority", text="0")
        routed = self._route(presence)
        if routed is not None:
            await routed

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
    def _route(self, el: Element) -> Awaitable[object] | None:
        if self.state != BOUND or self.jid is None:
            return None
        el.attrs["from"] = self.jid.text
        to_text = el.attrs.get("to")
        to = JID.parse(to_text) if to_text is not None else None
        return self.node.router.route_from_session(el, self, to)

    def _route_later(self, el: Element) -> None:
        """Route ``el`` from where nothing can wait for it (a stanza being shown)."""
        pending = self._route(el)
        if pending is not None:
            self.node.spawn(pending)

    def _room_jid(self, name: str) -> JID | None:
        if not name.startswith("#") or len(name) < 2:
            return None
        try:
            return JID(name[1:].lower(), self.service)
        except JIDError:
            return None

    def _user_jid(self, nick: str) -> JID | None:
        try:
            if "@" in nick:
                return JID.parse(nick)
            return JID(nick, self.node.domain)
        except JIDError:
            return None

    def _command(self, msg: Message) -> Awaitable[object] | None:
        handler = getattr(self, "_irc_" + msg.command.lower(), None)
        if handler is None:  # known to the core, not served here
            self.irc.numeric("421", msg.command, "Unknown command")
            return None
        result: Awaitable[object] | None = handler(msg.params)
        return result

    def _irc_join(self, params: list[str]) -> Awaitable[object] | None:
        if params[0] == "0":
            return _in_order([self._part(name, "") for name in list(self.channels)])
        keys = params[1].split(",") if len(params) > 1 else []
        waits: list[Awaitable[object] | None] = []
        for i, name in enumerate(params[0].split(",")):
            room = self._room_jid(name)
            if room is None:
                self.irc.numeric("403", name[:64], "No such channel")
                continue
            name = "#" + room.local
            if name in self.channels:
                continue
            ch = self.channels[name] = Channel(name, room, self.irc.nick)
            presence = Element("presence", attrs={"to": f"{room.text}/{ch.nick}"})
            x = presence.add("x", MUC)
            x.add("history", attrs={"maxstanzas": str(self._cfg.history)})
            if i < len(keys) and keys[i]:
                x.add("password", text=keys[i])
            waits.append(self._route(presence))
        return _in_order(waits)

    def _irc_part(self, params: list[str]) -> Awaitable[object] | None:
        reason = params[1] if len(params) > 1 else ""
        waits: list[Awaitable[object] | None] = []
        for name in params[0].split(","):
            waits.append(self._part(name.lower(), reason))
        return _in_order(waits)

    def _part(self, name: str, reason: str) -> Awaitable[object] | None:
        ch = self.channels.get(name)
        if ch is None:
            self.irc.numeric("442", name[:64], "You're not on that channel")
            return None
        presence = Element("presence", attrs={"to": f"{ch.room.text}/{ch.nick}",
                                              "type": "unavailable"})
        if reason:
            presence.add("status", text=reason)
        return self._route(presence)

    def _irc_privmsg(self, params: list[str], notice: bool = False
                     ) -> Awaitable[object] | None:
        text = params[1]
        if text.startswith("\x01ACTION ") or text == "\x01ACTION\x01":
            text = "/me " + text[8:].rstrip("\x01")
        elif text.startswith("\x01"):
            return None  # other CTCP: nothing in XMPP for it
        waits: list[Awaitable[object] | None] = []
        for target in params[0].split(",")[:4]:
            if target.startswith("#"):
                ch = self.channels.get(target.lower())
                if ch is None or not ch.joined:
                    if not notice:
                        self.irc.numeric("404", target[:64], "Cannot send to channel")
                    continue
                msg = Element("message", attrs={"to": ch.room.text, "type": "groupchat",
                                                "id": secrets.token_hex(8)})
            else:
                jid = self._user_jid(target)
                if jid is None or not valid_nick(target.partition("@")[0] or "-"):
                    if not notice:
                        self.irc.numeric("401", target[:64], "No such nick/channel")
                    continue
                msg = Element("message", attrs={"to": jid.text, "type": "chat",
                                                "id": secrets.token_hex(8)})
            msg.add("body", text=text)
            waits.append(self._route(msg))
        return _in_order(waits)

    def _irc_notice(self, params: list[str]) -> Awaitable[object] | None:
        return self._irc_privmsg(params, notice=True)

    def _irc_tagmsg(self, params: list[str]) -> None:
        return None

    def _irc_topic(self, params: list[str]) -> Awaitable[object] | None:
        name = params[0].lower()
        ch = self.channels.get(name)
        if ch is None or not ch.joined:
            self.irc.numeric("442", params[0][:64], "You're not on that channel")
            return None
        if len(params) == 1:
            self._tell_topic(ch)
            return None
        msg = Element("message", attrs={"to": ch.room.text, "type": "groupchat",
                                        "id": secrets.token_hex(8)})
        msg.add("subject", text=params[1])
        return self._route(msg)

    def _tell_topic(self, ch: Channel) -> None:
        if ch.topic:
            self.irc.numeric("332", ch.name, ch.topic)
        else:
            self.irc.numeric("331", ch.name, "No topic is set")

    def _irc_names(self, params: list[str]) -> None:
        if not params:
            self.irc.numeric("366", "*", "End of /NAMES list")
            return
        for name in params[0].split(","):
            ch = self.channels.get(name.lower())
            if ch is not None and ch.joined:
                self._names(ch)
            else:
                self.irc.numeric("366", name[:64], "End of /NAMES list")

    def _names(self, ch: Channel) -> None:
        names = [_PREFIX.get(role, "") + nick for nick, role in sorted(ch.occupants.items())]
        line: list[str] = []
        for n in names:
            line.append(n)
            if len(line) == 30:
                self.irc.numeric("353", "=", ch.name, " ".join(line))
                line = []
        if line or not names:
            self.irc.numeric("353", "=", ch.name, " ".join(line))
        self.irc.numeric("366", ch.name, "End of /NAMES list")

    def _admin(self, ch: Channel, nick: str, item: dict[str, str], reason: str = ""
               ) -> Awaitable[object] | None:
        iq_id = secrets.token_hex(8)
        iq = Element("iq", attrs={"to": ch.room.text, "type": "set", "id": iq_id})
        it = iq.add("query", MUC_ADMIN).add("item", attrs=item)
        if reason:
            it.add("reason", text=reason)
        if len(self._iqs) < 256:
            self._iqs[iq_id] = (ch.name, nick)
        return self._route(iq)

    def _irc_kick(self, params: list[str]) -> Awaitable[object] | None:
        ch = self.channels.get(params[0].lower())
        if ch is None or not ch.joined:
            self.irc.numeric("442", params[0][:64], "You're not on that channel")
            return None
        nick = params[1]
        if nick not in ch.occupants:
            self.irc.numeric("441", nick[:64], ch.name, "They aren't on that channel")
            return None
        reason = params[2] if len(params) > 2 else ""
        return self._admin(ch, nick, {"nick": nick, "role": "none"}, reason)

    def _irc_mode(self, params: list[str]) -> Awaitable[object] | None:
        target = params[0]
        if not target.startswith("#"):
            if target == self.irc.nick:
                self.irc.numeric("221", "+")
            else:
                self.irc.numeric("502", "Cannot change mode for other users")
            return None
        ch = self.channels.get(target.lower())
        if ch is None or not ch.joined:
            self.irc.numeric("442", target[:64], "You're not on that channel")
            return None
        if len(params) == 1:
            self.irc.numeric("324", ch.name, "+")
            return None
        modes, args = params[1], params[2:]
        if modes in ("b", "+b") and not args:
            self.irc.numeric("368", ch.name, "End of channel ban list")
            return None
        sign = "+"
        waits: list[Awaitable[object] | None] = []
        for c in modes:
            if c in "+-":
                sign = c
                continue
            if c in "ov":
                if not args:
                    self.irc.numeric("461", "MODE", "Not enough parameters")
                    break
                nick = args.pop(0)
                if nick not in ch.occupants:
                    self.irc.numeric("441", nick[:64], ch.name, "They aren't on that channel")
                    continue
                role = ("moderator" if c == "o" else "participant") if sign == "+" else (
                    "participant" if c == "o" else "visitor")
                waits.append(self._admin(ch, nick, {"nick": nick, "role": role}))
            elif c == "b":
                if not args:
                    self.irc.numeric("461", "MODE", "Not enough parameters")
                    break
                mask = args.pop(0)
                jid = self._user_jid(mask)
                if jid is None:
                    self.irc.numeric("696", ch.name, "b", mask[:64],
                                     "Ban masks are XMPP addresses (user@domain)")
                    continue
                waits.append(self._admin(ch, mask, {"jid": jid.bare_str, "affiliation":
                                            "outcast" if sign == "+" else "none"}))
            else:
                self.irc.numeric("472", c, "is unknown mode char to me")
        return _in_order(waits)

    def _irc_who(self, params: list[str]) -> None:
        mask = params[0] if params else "*"
        ch = self.channels.get(mask.lower())
        if ch is not None:
            for nick, role in sorted(ch.occupants.items()):
                self.irc.numeric("352", ch.name, nick, self.service, self.irc.server_name,
                                 nick, "H" + _PREFIX.get(role, ""), f"0 {nick}")
        self.irc.numeric("315", mask[:64], "End of /WHO list")

    def _irc_whois(self, params: list[str]) -> None:
        nick = params[-1]
        if nick == self.irc.nick:
            self.irc.numeric("311", nick, nick, self.irc.server_name, "*", self.irc.realname)
        self.irc.numeric("318", nick[:64], "End of /WHOIS list")

    def _irc_list(self, params: list[str]) -> None:
        self.irc.numeric("321", "Channel", "Users  Name")
        for ch in self.channels.values():
            if ch.joined:
                self.irc.numeric("322", ch.name, str(len(ch.occupants)), ch.topic)
        self.irc.numeric("323", "End of /LIST")

    def _irc_away(self, params: list[str]) -> Awaitable[object] | None:
        presence = Element("presence")
        presence.add("priority", text="0")
        if params and params[0]:
            presence.add("show", text="away")
            presence.add("status", text=params[0])
            self.irc.numeric("306", "You have been marked as being away")
        else:
            self.irc.numeric("305", "You are no longer marked as being away")
        waits: list[Awaitable[object] | None] = [self._route(presence)]
        for ch in self.channels.values():
            copy = presence.copy()
            copy.attrs["to"] = f"{ch.room.text}/{ch.nick}"
            waits.append(self._route(copy))
        return _in_order(waits)

    def _irc_motd(self, params: list[str]) -> None:
        self.irc.numeric("422", "MOTD File is missing")

    def _irc_ison(self, params: list[str]) -> None:
        self.irc.numeric("303", "")

    def _irc_userhost(self, params: list[str]) -> None:
        self.irc.numeric("302", "")

    def _irc_version(self, params: list[str]) -> None:
        self.irc.numeric("351", self.irc.version, self.irc.server_name, "XMPP gateway")

    def _irc_time(self, params: list[str]) -> None:
        self.irc.numeric("391", self.irc.server_name, irc_time(None))

    def _irc_lusers(self, params: list[str]) -> None:
        self.irc.numeric("251", "There are some users on 1 server")

    def _irc_invite(self, params: list[str]) -> Awaitable[object] | None:
        nick, name = params[0], params[1]
        ch = self.channels.get(name.lower())
        jid = self._user_jid(nick)
        if ch is None or not ch.joined:
            self.irc.numeric("442", name[:64], "You're not on that channel")
            return None
        if jid is None:
            self.irc.numeric("401", nick[:64], "No such nick/channel")
            return None
        msg = Element("message", attrs={"to": ch.room.text, "id": secrets.token_hex(8)})
        msg.add("x", MUC_USER).add("invite", attrs={"to": jid.bare_str})
        self.irc.numeric("341", nick, ch.name)
        return self._route(msg)

    def _irc_nick(self, params: list[str]) -> None:
        self.irc.numeric("447", "Your nick is your account name here")

    def _quit(self, reason: str) -> None:
        if self.state == BOUND:
            presence = Element("presence", attrs={"type": "unavailable"})
            if reason:
                presence.add("status", text=reason)
            self._route_later(presence)

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
                self._message(el)
            elif el.name == "presence":
                self._presence(el)
            elif el.name == "iq":
                self._iq(el)
        except (JIDError, KeyError):
            log.debug("stanza IRC cannot show: %s", el)
        self._out_irc()
        if self.irc.closed:
            self._shutdown()

    def _from(self, el: Element) -> JID | None:
        frm = el.attrs.get("from")
        if frm is None:
            return None
        try:
            return JID.parse(frm)
        except JIDError:
            return None

    def _prefix(self, jid: JID) -> str:
        if jid.domain == self.node.domain and jid.local:
            return f"{jid.local}!{jid.local}@{jid.domain}"
        name = jid.bare_str
        return f"{name}!{jid.local or name}@{jid.domain}"

    def _channel_of(self, jid: JID) -> Channel | None:
        if jid.domain != self.service or not jid.local:
            return None
        ch = self.channels.get("#" + jid.local)
        return ch if ch is not None and ch.room.local == jid.local else None

    def _message(self, el: Element) -> None:
        frm = self._from(el)
        if frm is None:
            return
        kind = el.attrs.get("type", "normal")
        ch = self._channel_of(frm.bare)
        if kind == "error":
            cond = _condition(el)
            if ch is not None:
                self.irc.numeric("404", ch.name, f"Cannot send to channel ({cond})")
            else:
                self.irc.numeric("401", frm.local or frm.text, f"No such nick ({cond})")
            return
        delay = el.find("delay", NS.DELAY)
        tags = {"time": irc_time(delay.get("stamp") if delay is not None else None)}
        body = el.find_text("body")
        if ch is not None and kind == "groupchat":
            nick = frm.resource
            subject = el.find("subject")
            if subject is not None and body is None:
                ch.topic = subject.text
                if not ch.topic_told:
                    ch.topic_told = True
                    if ch.topic:
                        self.irc.numeric("332", ch.name, ch.topic)
                elif nick:
                    self.irc.send(Message("TOPIC", [ch.name, ch.topic],
                                          f"{nick}!{nick}@{self.service}", tags))
                return
            if body is None or (nick == ch.nick and delay is None):
                return  # our own message reflected: IRC clients show it themselves
            source = f"{nick}!{nick}@{self.service}" if nick else self.irc.server_name
            for line in _lines(body):
                self.irc.send(Message("PRIVMSG", [ch.name, line], source, tags))
            return
        if body is None:
            return
        if ch is not None:  # a private message from an occupant
            source = f"{frm.resource}!{frm.resource}@{self.service}"
        else:
            source = self._prefix(frm)
        command = "NOTICE" if kind == "headline" else "PRIVMSG"
        for line in _lines(body):
            self.irc.send(Message(command, [self.irc.nick, line], source, tags))

    def _presence(self, el: Element) -> None:
        frm = self._from(el)
        if frm is None:
            return
        ch = self._channel_of(frm.bare)
        if ch is None:
            return  # a contact's presence: IRC has nothing for it
        kind = el.attrs.get("type", "")
        nick = frm.resource
        if kind == "error":
            if not ch.joined:
                del self.channels[ch.name]
                cond = _condition(el)
                code, text = _JOIN_ERRORS.get(cond, ("403", "Cannot join channel"))
                self.irc.numeric(code, ch.name, f"{text} ({cond})")
            return
        x = el.find("x", MUC_USER)
        statuses: set[str] = set()
        item: Element | None = None
        if x is not None:
            statuses = {s.attrs.get("code", "") for s in x.find_all("status")}
            item = x.find("item")
        role = (item.get("role") or "participant") if item is not None else "participant"
        me = "110" in statuses or (nick == ch.nick and nick not in ch.occupants
                                   and not ch.joined)
        source = f"{nick}!{nick}@{self.service}"
        if kind == "unavailable":
            ch.occupants.pop(nick, None)
            reason = ""
            actor = self.irc.server_name
            if item is not None:
                reason = item.find_text("reason") or ""
                act = item.find("actor")
                if act is not None and act.get("nick"):
                    a = act.attrs.get("nick", "")
                    actor = f"{a}!{a}@{self.service}"
            if "307" in statuses or "301" in statuses:
                why = reason or ("banned" if "301" in statuses else "kicked")
                self.irc.send(Message("KICK", [ch.name, nick, why], actor))
            elif "303" in statuses and item is not None and item.get("nick"):
                new = item.attrs.get("nick", "")
                ch.occupants[new] = role
                if me:
                    ch.nick = new
                self.irc.send(Message("NICK", [new], source))
                return
            elif ch.joined:
                status = el.find_text("status")
                self.irc.send(Message("PART", [ch.name, status] if status else [ch.name],
                                      source))
            if me:
                self.channels.pop(ch.name, None)
            return
        old = ch.occupants.get(nick)
        ch.occupants[nick] = role
        if me and not ch.joined:
            ch.joined = True
            if "201" in statuses:
                # a new room: accept the default configuration (an instant room, §10.1.2)
                iq = Element("iq", attrs={"to": ch.room.text, "type": "set",
                                          "id": secrets.token_hex(8)})
                iq.add("query", MUC + "#owner").add("x", "jabber:x:data",
                                                    {"type": "submit"})
                self._route_later(iq)
            self.irc.send(Message("JOIN", [ch.name], self.irc.source))
            self._names(ch)
            return
        if not ch.joined:
            return  # the occupants before our own presence: in NAMES
        if old is None:
            self.irc.send(Message("JOIN", [ch.name], source))
            mode = _ROLE_MODE.get(role)
            if mode:
                self.irc.send(Message("MODE", [ch.name, "+" + mode, nick],
                                      self.irc.server_name))
        elif old != role:
            self._role_change(ch, nick, old, role)

    def _role_change(self, ch: Channel, nick: str, old: str, new: str) -> None:
        before, after = _ROLE_MODE.get(old), _ROLE_MODE.get(new)
        if before:
            self.irc.send(Message("MODE", [ch.name, "-" + before, nick], self.irc.server_name))
        if after:
            self.irc.send(Message("MODE", [ch.name, "+" + after, nick], self.irc.server_name))

    def _iq(self, el: Element) -> None:
        kind = el.attrs.get("type")
        iq_id = el.attrs.get("id", "")
        if kind in ("result", "error"):
            asked = self._iqs.pop(iq_id, None)
            if asked is not None and kind == "error":
                name, nick = asked
                cond = _condition(el)
                if cond in ("forbidden", "not-allowed"):
                    self.irc.numeric("482", name, f"You're not channel operator ({cond})")
                elif cond == "item-not-found":
                    self.irc.numeric("441", nick[:64], name, "They aren't on that channel")
                else:
                    self.irc.numeric("400", name, f"Could not do that: {cond}")
            return
        reply = Element("iq", attrs={"id": iq_id})
        if el.attrs.get("from"):
            reply.attrs["to"] = el.attrs["from"]
        payload = el.first
        if payload is not None and (payload.xmlns == NS.PING or (
                payload.xmlns == NS.ROSTER and kind == "set")):
            reply.attrs["type"] = "result"
        else:
            reply.attrs["type"] = "error"
            err = reply.add("error", attrs={"type": "cancel"})
            err.add("service-unavailable", NS.STANZAS)
        self._route_later(reply)

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


def _in_order(waits: list[Awaitable[object] | None]) -> Awaitable[object] | None:
    """One awaitable for the routings that returned one (awaited in order), or None."""
    pending = [w for w in waits if w is not None]
    if not pending:
        return None
    if len(pending) == 1:
        return pending[0]

    async def run() -> None:
        for w in pending:
            await w
    return run()


def _condition(el: Element) -> str:
    err = el.find("error")
    if err is not None:
        for child in err.elements:
            if child.xmlns == NS.STANZAS and child.name != "text":
                return str(child.name)
    return "undefined-condition"


def _lines(body: str) -> list[str]:
    """A body as IRC lines (a /me as CTCP ACTION), at most 20 of them."""
    out: list[str] = []
    for line in body.splitlines()[:20]:
        if line.startswith("/me "):
            line = f"\x01ACTION {line[4:]}\x01"
        out.append(line or " ")
    return out or [" "]


__all__ = ["IrcSession", "irc_time"]
