"""IRC commands of a registered client as XMPP stanzas (see :mod:`hongyan.server.irc`):
``#room`` is ``room@<muc service>``, a nick the account of that name on this server."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from hongyan.irc.connection import valid_nick
from hongyan.irc.message import Message
from hongyan.server.irc_text import irc_time, lines_of
from hongyan.xmpp.element import Element
from hongyan.xmpp.jid import JID, JIDError

if TYPE_CHECKING:
    from hongyan.config.schema import IRCSection
    from hongyan.irc.connection import IrcConnection
    from hongyan.server.c2s import Host
    from hongyan.server.irc_history import History

MUC = "http://jabber.org/protocol/muc"
MUC_USER = MUC + "#user"
MUC_ADMIN = MUC + "#admin"
#: XEP-0045 roles as channel modes and as NAMES prefixes
ROLE_MODE = {"moderator": "o", "participant": "v"}
PREFIX = {"moderator": "@", "participant": "+"}


@dataclass
class Channel:
    """A room this session is in (or joining)."""

    name: str
    room: JID
    nick: str
    joined: bool = False
    #: occupant nick -> role
    occupants: dict[str, str] = field(default_factory=dict)
    #: occupant nick -> its account on this server, when the room shows its JID
    accounts: dict[str, str] = field(default_factory=dict)
    #: our room configuration changes (MODE +m/+i/+k) waiting for the room: IQ id -> MODE
    modes: dict[str, list[str]] = field(default_factory=dict)
    topic: str = ""
    topic_told: bool = False
    #: the room archives (status 170 on our join), history messages shown on this join
    archives: bool = False
    history_shown: int = 0
    #: the id of our archive query for the history on join, while it runs
    query: str = ""
    #: ids of our messages the room has not reflected yet (IRC clients show their own,
    #: unless they asked for echo-message), with the command that sent each
    sent: dict[str, str] = field(default_factory=dict)

    def sending(self, command: str = "PRIVMSG") -> str:
        """A new message id, remembered to know its reflection (the last 32 kept)."""
        msg_id = secrets.token_hex(8)
        self.sent[msg_id] = command
        if len(self.sent) > 32:
            del self.sent[next(iter(self.sent))]
        return msg_id

    def reflected(self, msg_id: str | None) -> str | None:
        """The command of ours ``msg_id`` is coming back from (then forgotten), or None."""
        return None if msg_id is None else self.sent.pop(msg_id, None)


def in_order(waits: list[Awaitable[object] | None]) -> Awaitable[object] | None:
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



class IrcHost(Protocol):
    """What the commands and the stanzas use of their session (``IrcSession``, irc.py)."""

    node: Host
    cfg: IRCSection
    irc: IrcConnection
    #: the MUC service #channels are rooms of
    service: str
    channels: dict[str, Channel]
    iqs: dict[str, tuple[str, str]]
    commands: Commands
    history: History
    #: the session's address (None until it is bound)
    jid: JID | None

    def route(self, el: Element) -> Awaitable[object] | None: ...
    def route_later(self, el: Element) -> None: ...


class Commands:
    """What a session does for each command (``irc_<command>``) the core passes on."""

    __slots__ = ("s",)

    def __init__(self, session: IrcHost) -> None:
        self.s = session

    def room_jid(self, name: str) -> JID | None:
        if not name.startswith("#") or len(name) < 2:
            return None
        try:
            return JID(name[1:].lower(), self.s.service)
        except JIDError:
            return None

    def user_jid(self, nick: str) -> JID | None:
        try:
            if "@" in nick:
                return JID.parse(nick)
            return JID(nick, self.s.node.domain)
        except JIDError:
            return None

    def irc_join(self, params: list[str]) -> Awaitable[object] | None:
        if params[0] == "0":
            return in_order([self.part(name, "") for name in list(self.s.channels)])
        keys = params[1].split(",") if len(params) > 1 else []
        waits: list[Awaitable[object] | None] = []
        for i, name in enumerate(params[0].split(",")):
            room = self.room_jid(name)
            if room is None:
                self.s.irc.numeric("403", name[:64], "No such channel")
                continue
            name = "#" + room.local
            if name in self.s.channels:
                continue
            ch = self.s.channels[name] = Channel(name, room, self.s.irc.nick)
            presence = Element("presence", attrs={"to": f"{room.text}/{ch.nick}"})
            x = presence.add("x", MUC)
            x.add("history", attrs={"maxstanzas": str(self.s.cfg.history)})
            if i < len(keys) and keys[i]:
                x.add("password", text=keys[i])
            waits.append(self.s.route(presence))
        return in_order(waits)

    def irc_part(self, params: list[str]) -> Awaitable[object] | None:
        reason = params[1] if len(params) > 1 else ""
        waits: list[Awaitable[object] | None] = []
        for name in params[0].split(","):
            waits.append(self.part(name.lower(), reason))
        return in_order(waits)

    def part(self, name: str, reason: str) -> Awaitable[object] | None:
        ch = self.s.channels.get(name)
        if ch is None:
            self.s.irc.numeric("442", name[:64], "You're not on that channel")
            return None
        presence = Element("presence", attrs={"to": f"{ch.room.text}/{ch.nick}",
                                              "type": "unavailable"})
        if reason:
            presence.add("status", text=reason)
        return self.s.route(presence)

    def irc_privmsg(self, params: list[str], notice: bool = False
                     ) -> Awaitable[object] | None:
        text = params[1]
        if text.startswith("\x01ACTION ") or text == "\x01ACTION\x01":
            text = "/me " + text[8:].rstrip("\x01")
        elif text.startswith("\x01"):
            return None  # other CTCP: nothing in XMPP for it
        waits: list[Awaitable[object] | None] = []
        command = "NOTICE" if notice else "PRIVMSG"
        echo: list[Message] = []
        for target in params[0].split(",")[:4]:
            if target.startswith("#"):
                ch = self.s.channels.get(target.lower())
                if ch is None or not ch.joined:
                    if not notice:
                        self.s.irc.numeric("404", target[:64], "Cannot send to channel")
                    continue
                msg = Element("message", attrs={"to": ch.room.text, "type": "groupchat",
                                                "id": ch.sending(command)})
            else:
                jid = self.user_jid(target)
                if jid is None or not valid_nick(target.partition("@")[0] or "-"):
                    if not notice:
                        self.s.irc.numeric("401", target[:64], "No such nick/channel")
                    continue
                msg = Element("message", attrs={"to": jid.text, "type": "chat",
                                                "id": secrets.token_hex(8)})
                if "echo-message" in self.s.irc.caps:
                    echo.append(Message(command, [target, params[1]], self.s.irc.source,
                                        {"time": irc_time(None), "msgid": msg.attrs["id"]}))
            msg.add("body", text=text)
            waits.append(self.s.route(msg))
        if echo:
            # a message to a nick is echoed once routed (echo-message); a room's
            # reflection is the echo of a channel message (irc_stanzas)
            waits.append(self._echo(echo))
        return in_order(waits)

    async def _echo(self, lines: list[Message]) -> None:
        for line in lines:
            self.s.irc.send(line)

    def irc_notice(self, params: list[str]) -> Awaitable[object] | None:
        return self.irc_privmsg(params, notice=True)

    def irc_tagmsg(self, params: list[str]) -> None:
        return None

    def irc_topic(self, params: list[str]) -> Awaitable[object] | None:
        name = params[0].lower()
        ch = self.s.channels.get(name)
        if ch is None or not ch.joined:
            self.s.irc.numeric("442", params[0][:64], "You're not on that channel")
            return None
        if len(params) == 1:
            self.tell_topic(ch)
            return None
        msg = Element("message", attrs={"to": ch.room.text, "type": "groupchat",
                                        "id": secrets.token_hex(8)})
        msg.add("subject", text=params[1])
        return self.s.route(msg)

    def tell_topic(self, ch: Channel) -> None:
        if ch.topic:
            self.s.irc.numeric("332", ch.name, ch.topic)
        else:
            self.s.irc.numeric("331", ch.name, "No topic is set")

    def irc_names(self, params: list[str]) -> None:
        if not params:
            self.s.irc.numeric("366", "*", "End of /NAMES list")
            return
        for name in params[0].split(","):
            ch = self.s.channels.get(name.lower())
            if ch is not None and ch.joined:
                self.names(ch)
            else:
                self.s.irc.numeric("366", name[:64], "End of /NAMES list")

    def names(self, ch: Channel) -> None:
        names = [PREFIX.get(role, "") + nick for nick, role in sorted(ch.occupants.items())]
        line: list[str] = []
        for n in names:
            line.append(n)
            if len(line) == 30:
                self.s.irc.numeric("353", "=", ch.name, " ".join(line))
                line = []
        if line or not names:
            self.s.irc.numeric("353", "=", ch.name, " ".join(line))
        self.s.irc.numeric("366", ch.name, "End of /NAMES list")

    def admin(self, ch: Channel, nick: str, item: dict[str, str], reason: str = ""
               ) -> Awaitable[object] | None:
        iq_id = secrets.token_hex(8)
        iq = Element("iq", attrs={"to": ch.room.text, "type": "set", "id": iq_id})
        it = iq.add("query", MUC_ADMIN).add("item", attrs=item)
        if reason:
            it.add("reason", text=reason)
        if len(self.s.iqs) < 256:
            self.s.iqs[iq_id] = (ch.name, nick)
        return self.s.route(iq)

    def irc_kick(self, params: list[str]) -> Awaitable[object] | None:
        ch = self.s.channels.get(params[0].lower())
        if ch is None or not ch.joined:
            self.s.irc.numeric("442", params[0][:64], "You're not on that channel")
            return None
        nick = params[1]
        if nick not in ch.occupants:
            self.s.irc.numeric("441", nick[:64], ch.name, "They aren't on that channel")
            return None
        reason = params[2] if len(params) > 2 else ""
        return self.admin(ch, nick, {"nick": nick, "role": "none"}, reason)

    def irc_mode(self, params: list[str]) -> Awaitable[object] | None:
        target = params[0]
        if not target.startswith("#"):
            if target == self.s.irc.nick:
                self.s.irc.numeric("221", "+")
            else:
                self.s.irc.numeric("502", "Cannot change mode for other users")
            return None
        ch = self.s.channels.get(target.lower())
        if ch is None or not ch.joined:
            self.s.irc.numeric("442", target[:64], "You're not on that channel")
            return None
        if len(params) == 1:
            self.s.irc.numeric("324", ch.name, "+")
            return None
        modes, args = params[1], params[2:]
        if modes in ("b", "+b") and not args:
            self.s.irc.numeric("368", ch.name, "End of channel ban list")
            return None
        sign = "+"
        waits: list[Awaitable[object] | None] = []
        for c in modes:
            if c in "+-":
                sign = c
                continue
            if c in "ov":
                if not args:
                    self.s.irc.numeric("461", "MODE", "Not enough parameters")
                    break
                nick = args.pop(0)
                if nick not in ch.occupants:
                    self.s.irc.numeric("441", nick[:64], ch.name, "They aren't on that channel")
                    continue
                role = ("moderator" if c == "o" else "participant") if sign == "+" else (
                    "participant" if c == "o" else "visitor")
                waits.append(self.admin(ch, nick, {"nick": nick, "role": role}))
            elif c == "b":
                if not args:
                    self.s.irc.numeric("461", "MODE", "Not enough parameters")
                    break
                mask = args.pop(0)
                jid = self.user_jid(mask)
                if jid is None:
                    self.s.irc.numeric("696", ch.name, "b", mask[:64],
                                     "Ban masks are XMPP addresses (user@domain)")
                    continue
                waits.append(self.admin(ch, mask, {"jid": jid.bare_str, "affiliation":
                                            "outcast" if sign == "+" else "none"}))
            elif c in "mik":
                key = ""
                if c == "k" and sign == "+":
                    if not args:
                        self.s.irc.numeric("461", "MODE", "Not enough parameters")
                        break
                    key = args.pop(0)
                elif c == "k" and args:
                    args.pop(0)  # (-k may name the old key)
                waits.append(self.configure(ch, sign, c, key))
            else:
                self.s.irc.numeric("472", c, "is unknown mode char to me")
        return in_order(waits)

    def configure(self, ch: Channel, sign: str, mode: str, key: str) -> Awaitable[object] | None:
        """``+m``/``+i``/``+k`` as the room's configuration (XEP-0045 §10.2; only the fields
        that change are sent, the others keep their value): moderated, members-only, a
        password. The room refuses a non-owner (482)."""
        on = "1" if sign == "+" else "0"
        fields = {"m": {"muc#roomconfig_moderatedroom": on},
                  "i": {"muc#roomconfig_membersonly": on},
                  "k": {"muc#roomconfig_passwordprotectedroom": on,
                        "muc#roomconfig_roomsecret": key}}[mode]
        iq_id = secrets.token_hex(8)
        iq = Element("iq", attrs={"to": ch.room.text, "type": "set", "id": iq_id})
        x = iq.add("query", MUC + "#owner").add("x", "jabber:x:data", {"type": "submit"})
        ft = x.add("field", attrs={"var": "FORM_TYPE", "type": "hidden"})
        ft.add("value", text="http://jabber.org/protocol/muc#roomconfig")
        for var, value in fields.items():
            x.add("field", attrs={"var": var}).add("value", text=value)
        if len(self.s.iqs) < 256:
            self.s.iqs[iq_id] = (ch.name, "")
            change = [sign + mode, key] if key else [sign + mode]
            ch.modes[iq_id] = change
        return self.s.route(iq)

    def irc_who(self, params: list[str]) -> None:
        mask = params[0] if params else "*"
        ch = self.s.channels.get(mask.lower())
        if ch is not None:
            for nick, role in sorted(ch.occupants.items()):
                self.s.irc.numeric("352", ch.name, nick, self.s.service, self.s.irc.server_name,
                                 nick, "H" + PREFIX.get(role, ""), f"0 {nick}")
        self.s.irc.numeric("315", mask[:64], "End of /WHO list")

    def irc_whois(self, params: list[str]) -> None:
        nick = params[-1]
        if nick == self.s.irc.nick:
            self.s.irc.numeric("311", nick, nick, self.s.irc.server_name, "*", self.s.irc.realname)
        self.s.irc.numeric("318", nick[:64], "End of /WHOIS list")

    def irc_list(self, params: list[str]) -> None:
        self.s.irc.numeric("321", "Channel", "Users  Name")
        for ch in self.s.channels.values():
            if ch.joined:
                self.s.irc.numeric("322", ch.name, str(len(ch.occupants)), ch.topic)
        self.s.irc.numeric("323", "End of /LIST")

    def irc_away(self, params: list[str]) -> Awaitable[object] | None:
        presence = Element("presence")
        presence.add("priority", text="0")
        if params and params[0]:
            presence.add("show", text="away")
            presence.add("status", text=params[0])
            self.s.irc.numeric("306", "You have been marked as being away")
        else:
            self.s.irc.numeric("305", "You are no longer marked as being away")
        waits: list[Awaitable[object] | None] = [self.s.route(presence)]
        for ch in self.s.channels.values():
            copy = presence.copy()
            copy.attrs["to"] = f"{ch.room.text}/{ch.nick}"
            waits.append(self.s.route(copy))
        return in_order(waits)

    def irc_motd(self, params: list[str]) -> None:
        self.s.irc.numeric("422", "MOTD File is missing")

    def irc_ison(self, params: list[str]) -> None:
        self.s.irc.numeric("303", "")

    def irc_userhost(self, params: list[str]) -> None:
        self.s.irc.numeric("302", "")

    def irc_version(self, params: list[str]) -> None:
        self.s.irc.numeric("351", self.s.irc.version, self.s.irc.server_name, "XMPP gateway")

    def irc_time(self, params: list[str]) -> None:
        self.s.irc.numeric("391", self.s.irc.server_name, irc_time(None))

    def irc_lusers(self, params: list[str]) -> None:
        self.s.irc.numeric("251", "There are some users on 1 server")

    def irc_invite(self, params: list[str]) -> Awaitable[object] | None:
        nick, name = params[0], params[1]
        ch = self.s.channels.get(name.lower())
        jid = self.user_jid(nick)
        if ch is None or not ch.joined:
            self.s.irc.numeric("442", name[:64], "You're not on that channel")
            return None
        if jid is None:
            self.s.irc.numeric("401", nick[:64], "No such nick/channel")
            return None
        msg = Element("message", attrs={"to": ch.room.text, "id": secrets.token_hex(8)})
        msg.add("x", MUC_USER).add("invite", attrs={"to": jid.bare_str})
        self.s.irc.numeric("341", nick, ch.name)
        return self.s.route(msg)

    def irc_chathistory(self, params: list[str]) -> Awaitable[object]:
        return self.s.history.command(params)

    def irc_nick(self, params: list[str]) -> None:
        self.s.irc.numeric("447", "Your nick is your account name here")


__all__ = ["Channel", "Commands", "IrcHost", "in_order", "irc_time", "lines_of"]
