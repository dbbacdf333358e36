"""One IRC client connection, sans-I/O: bytes in (:meth:`IrcConnection.receive_data`),
events out, bytes to send out (:meth:`IrcConnection.data_to_send`).

The core itself answers what needs nothing of the server: capability negotiation (IRCv3
``CAP LS/LIST/REQ/END``, with ``sasl``, ``server-time``, ``message-tags``, ``batch``,
``echo-message``, ``draft/chathistory``, ``account-tag`` and ``extended-join``), the SASL PLAIN
exchange up to the password check (``AUTHENTICATE``), registration (``PASS``/``NICK``/
``USER``), ``PING``/``PONG``, ``QUIT``, overlong lines (``417 ERR_INPUTTOOLONG``, the rest of
the line dropped as it arrives: the buffer never holds more than one line), unknown commands
(``421``), missing parameters (``461``) and commands before registration (``451``). A login
becomes a :class:`Login` event; the adapter checks it and calls :meth:`logged_in` or
:meth:`login_failed`. Every other command of a registered client becomes a :class:`Command`.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from hongyan.irc.message import MAX_CLIENT_TAGS, MAX_LINE, LineError, Message, parse_line

#: the capabilities offered (IRCv3)
CAPS = ("account-tag", "batch", "draft/chathistory", "echo-message", "extended-join",
        "message-tags", "sasl", "server-time")
#: commands a registered client may send, with their least number of parameters; the core
#: answers the first group itself, the adapter the rest
MIN_PARAMS = {
    "CAP": 1, "AUTHENTICATE": 1, "PASS": 1, "NICK": 1, "USER": 4, "PING": 1, "PONG": 0,
    "QUIT": 0,
    "JOIN": 1, "PART": 1, "PRIVMSG": 2, "NOTICE": 2, "TOPIC": 1, "NAMES": 0, "KICK": 2,
    "MODE": 1, "WHO": 0, "WHOIS": 1, "LIST": 0, "AWAY": 0, "MOTD": 0, "ISON": 1,
    "USERHOST": 1, "TAGMSG": 1, "INVITE": 2, "VERSION": 0, "TIME": 0, "LUSERS": 0,
    "CHATHISTORY": 1,
}
#: what a client may send before it is registered (RFC 2812 §3.1)
_PREREG = frozenset({"CAP", "AUTHENTICATE", "PASS", "NICK", "USER", "PING", "PONG", "QUIT"})
#: an AUTHENTICATE chunk is at most 400 bytes (IRCv3 sasl-3.1); a PLAIN answer a few of them
_AUTH_CHUNK = 400
_AUTH_MAX = 4 * _AUTH_CHUNK
_NICK_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
               "-_[]{}\\|^`.")
NICKLEN = 64
#: the capability a tag needs (the others need ``message-tags``)
_TAG_CAPS = {"time": "server-time", "batch": "batch", "account": "account-tag"}
#: failed SASL logins on one connection before it is closed (as c2s does)
MAX_SASL_FAILURES = 5


@dataclass
class Login:
    """The client gave credentials: SASL PLAIN (``sasl``) or ``PASS`` at registration."""

    username: str
    password: str
    authzid: str
    sasl: bool


@dataclass
class Command:
    """A command of a registered client for the adapter."""

    message: Message


@dataclass
class Quit:
    """The client said QUIT (its connection is to close after what is queued)."""

    reason: str


Event = Login | Command | Quit


def valid_nick(nick: str) -> bool:
    return (0 < len(nick) <= NICKLEN and not nick[0].isdigit() and nick[0] != "-"
            and all(c in _NICK_OK for c in nick))


class IrcConnection:
    """The protocol state of one client connection."""

    def __init__(self, server_name: str, *, network: str = "Hongyan", version: str = "hongyan",
                 sasl: bool = True, chathistory: int = 100) -> None:
        self.server_name = server_name
        #: the most messages one CHATHISTORY gives (ISUPPORT ``CHATHISTORY``)
        self.chathistory = chathistory
        self.network = network
        self.version = version
        self.sasl_offered = sasl
        self.nick = ""
        self.user = ""
        self.realname = ""
        self.password: str | None = None
        #: the account the connection is logged in as ("" until then)
        self.account = ""
        self.caps: set[str] = set()
        self.registered = False
        self.closed = False
        self._cap_negotiating = False
        self._sasl_buffer: bytearray | None = None
        self._login_pending = False
        self._login_sasl = False
        self._sasl_failures = 0
        self._buf = bytearray()
        #: the lines the last :meth:`receive_data` read
        self.lines = 0
        self._discarding = False
        self._out: list[bytes] = []
        self._events: list[Event] = []

    # -- moving between processes ---------------------------------------------------------------
    def export(self) -> dict[str, object]:
        """The state of a connection whose login is being checked (to go on elsewhere, with
        :meth:`restore`), JSON-ready; what it buffered of an unfinished line is not in it."""
        return {"server": self.server_name, "nick": self.nick, "user": self.user,
                "realname": self.realname, "caps": sorted(self.caps),
                "negotiating": self._cap_negotiating, "sasl": self._login_sasl,
                "failures": self._sasl_failures,
                "chathistory": self.chathistory}

    @classmethod
    def restore(cls, state: dict[str, object]) -> IrcConnection:
        most = state.get("chathistory", 100)
        conn = cls(str(state["server"]), chathistory=most if isinstance(most, int) else 100)
        conn.nick = str(state["nick"])
        conn.user = str(state["user"])
        conn.realname = str(state["realname"])
        caps = state["caps"]
        conn.caps = {str(c) for c in caps} if isinstance(caps, list) else set()
        conn._cap_negotiating = bool(state["negotiating"])
        conn._login_sasl = bool(state["sasl"])
        failures = state["failures"]
        conn._sasl_failures = failures if isinstance(failures, int) else 0
        conn._login_pending = True
        return conn

    @property
    def buffered(self) -> bytes:
        """What was read of a line not ended yet."""
        return b"" if self._discarding else bytes(self._buf)

    # -- bytes ----------------------------------------------------------------------------------
    def receive_data(self, data: bytes, budget: int | None = None) -> list[Event]:
        """Feed bytes read from the client; return the events they complete. ``budget``: the
        lines the client may still send (past it: ``ERROR :Excess Flood`` and the end);
        :attr:`lines` counts those read by this call."""
        self.lines = 0
        if self.closed:
            return []
        buf = self._buf
        start = 0
        while not self.closed:
            end = data.find(b"\n", start)
            if end < 0:
                rest = data[start:]
                if self._discarding:
                    break
                if len(buf) + len(rest) > MAX_CLIENT_TAGS + MAX_LINE:
                    self._too_long()
                    self._discarding = True
                    buf.clear()
                else:
                    buf += rest
                break
            piece = data[start:end]
            start = end + 1
            if self._discarding:
                self._discarding = False
                buf.clear()
                continue
            if buf:
                buf += piece
                line = bytes(buf)
                buf.clear()
            else:
                line = piece
            self.lines += 1
            if budget is not None and self.lines > budget:
                self.error("Excess Flood")
                break
            self._line(line[:-1] if line.endswith(b"\r") else line)
        events, self._events = self._events, []
        return events

    def data_to_send(self) -> bytes:
        out, self._out = self._out, []
        return b"".join(out)

    # -- output ---------------------------------------------------------------------------------
    def send(self, msg: Message) -> None:
        """Queue a line; tags the client did not ask for are dropped (``time`` needs
        ``server-time``, ``batch`` needs ``batch``, the others ``message-tags``)."""
        if self.closed:
            return
        if msg.tags:
            keep = {k: v for k, v in msg.tags.items()
                    if _TAG_CAPS.get(k, "message-tags") in self.caps}
            if keep != msg.tags:
                msg = Message(msg.command, msg.params, msg.prefix, keep)
        self._out.append(msg.to_bytes())

    def numeric(self, code: str, *params: str) -> None:
        """``:server CODE <nick> params...`` (``*`` before the client has a nick)."""
        self.send(Message(code, [self.nick or "*", *params], self.server_name))

    def error(self, reason: str) -> None:
        """``ERROR`` and the end of the connection (RFC 2812 §3.7.4)."""
        if self.closed:
            return
        self._out.append(Message("ERROR", [f"Closing link: {reason}"]).to_bytes())
        self.closed = True

    @property
    def source(self) -> str:
        """This client's own prefix."""
        return f"{self.nick}!{self.user or self.nick}@{self.server_name}"

    # -- lines ----------------------------------------------------------------------------------
    def _too_long(self) -> None:
        self.numeric("417", "Input line was too long")

    def _line(self, line: bytes) -> None:
        if not line.strip():
            return  # empty lines are ignored (RFC 2812 §2.3.1)
        body = line
        if line.startswith(b"@"):
            sp = line.find(b" ")
            if sp < 0 or sp + 1 > MAX_CLIENT_TAGS:
                self._too_long()
                return
            body = line[sp + 1:]
        if len(body) > MAX_LINE - 2:
            self._too_long()
            return
        try:
            msg = parse_line(line)
        except LineError:
            return
        cmd = msg.command
        if cmd.isdigit():
            return  # numerics from a client are ignored
        need = MIN_PARAMS.get(cmd)
        if need is None:
            if self.registered:
                self.numeric("421", cmd[:32], "Unknown command")
            else:
                self.numeric("451", "You have not registered")
            return
        if not self.registered and cmd not in _PREREG:
            self.numeric("451", "You have not registered")
            return
        if len(msg.params) < need:
            self.numeric("461", cmd, "Not enough parameters")
            return
        handler = getattr(self, "_cmd_" + cmd.lower(), None)
        if handler is not None:
            handler(msg)
        else:
            self._events.append(Command(msg))

    # -- connection registration ----------------------------------------------------------------
    def _cmd_cap(self, msg: Message) -> None:
        sub = msg.params[0].upper()
        if sub == "LS":
            self._cap_negotiating = not self.registered
            v302 = len(msg.params) > 1 and msg.params[1].isdigit() and int(msg.params[1]) >= 302
            offered = [c for c in CAPS if c != "sasl" or self.sasl_offered]
            caps = " ".join(("sasl=PLAIN" if c == "sasl" and v302 else c) for c in offered)
            self._cap("LS", caps)
        elif sub == "LIST":
            self._cap("LIST", " ".join(sorted(self.caps)))
        elif sub == "REQ":
            if len(msg.params) < 2:
                self.numeric("410", "REQ", "Invalid CAP command")
                return
            self._cap_negotiating = not self.registered
            wanted = msg.params[1].split()
            allowed = {c for c in CAPS if c != "sasl" or self.sasl_offered}
            ok = all(w.lstrip("-") in allowed for w in wanted)
            if ok:
                for w in wanted:
                    if w.startswith("-"):
                        self.caps.discard(w[1:])
                    else:
                        self.caps.add(w)
            self._cap("ACK" if ok else "NAK", msg.params[1])
        elif sub == "END":
            if self._cap_negotiating:
                self._cap_negotiating = False
                self._try_register()
        else:
            self.numeric("410", sub[:32], "Invalid CAP command")

    def _cap(self, sub: str, text: str) -> None:
        self.send(Message("CAP", [self.nick or "*", sub, text], self.server_name))

    def _cmd_authenticate(self, msg: Message) -> None:
        arg = msg.params[0]
        if "sasl" not in self.caps:
            self.numeric("904", "SASL authentication failed: request the sasl capability")
            return
        if self.account or self.registered:
            self.numeric("907", "You have already authenticated using SASL")
            return
        if self._login_pending:
            return
        if arg == "*":
            self._sasl_buffer = None
            self.numeric("906", "SASL authentication aborted")
            return
        if self._sasl_buffer is None:
            if arg.upper() != "PLAIN":
                self.numeric("908", "PLAIN", "are available SASL mechanisms")
                self.numeric("904", "SASL authentication failed")
                return
            self._sasl_buffer = bytearray()
            self.send(Message("AUTHENTICATE", ["+"]))
            return
        if len(arg) > _AUTH_CHUNK:
            self._sasl_buffer = None
            self.numeric("905", "SASL message too long")
            return
        if arg != "+":
            self._sasl_buffer += arg.encode("ascii", "replace")
            if len(self._sasl_buffer) > _AUTH_MAX:
                self._sasl_buffer = None
                self.numeric("905", "SASL message too long")
                return
            if len(arg) == _AUTH_CHUNK:
                return  # more to come
        data, self._sasl_buffer = bytes(self._sasl_buffer), None
        try:
            fields = base64.b64decode(data, validate=True).split(b"\0")
            authzid, authcid, password = (f.decode("utf-8") for f in fields)
        except (binascii.Error, ValueError):
            self.numeric("904", "SASL authentication failed: malformed PLAIN message")
            return
        if not authcid:
            self.numeric("904", "SASL authentication failed: no user name")
            return
        self._login_pending = True
        self._login_sasl = True
        self._events.append(Login(authcid, password, authzid, True))

    def _cmd_pass(self, msg: Message) -> None:
        if self.registered:
            self.numeric("462", "You may not reregister")
            return
        self.password = msg.params[0]

    def _cmd_nick(self, msg: Message) -> None:
        nick = msg.params[0]
        if not valid_nick(nick):
            self.numeric("432", nick[:NICKLEN], "Erroneous nickname")
            return
        if self.registered:
            if nick != self.nick:
                self._events.append(Command(msg))
            return
        self.nick = nick
        self._try_register()

    def _cmd_user(self, msg: Message) -> None:
        if self.registered:
            self.numeric("462", "You may not reregister")
            return
        self.user = msg.params[0][:NICKLEN]
        self.realname = msg.params[3][:128]
        self._try_register()

    def _cmd_ping(self, msg: Message) -> None:
        self.send(Message("PONG", [self.server_name, msg.params[0]], self.server_name))

    def _cmd_pong(self, msg: Message) -> None:
        pass

    def _cmd_quit(self, msg: Message) -> None:
        reason = msg.params[0] if msg.params else "Quit"
        self._events.append(Quit(reason))
        self.error(f"Quit: {reason}"[:200])

    def _try_register(self) -> None:
        if (self.registered or self._cap_negotiating or self._login_pending or not self.nick
                or not self.user):
            return
        if self.account:
            self._welcome()
            return
        if self.password is None:
            self.numeric("464", "Password required: log in with SASL PLAIN or PASS "
                                "<account>:<password>")
            self.error("authentication required")
            return
        user, sep, password = self.password.partition(":")
        if not sep:
            user, password = self.user.lstrip("~"), self.password
        self._login_pending = True
        self._login_sasl = False
        self._events.append(Login(user, password, "", False))

    # -- what the adapter answers ---------------------------------------------------------------
    def logged_in(self, account: str) -> None:
        """The credentials of the last :class:`Login` are good for ``account`` (whose name
        becomes the nick: other users reach this one by it)."""
        self._login_pending = False
        self.account = account
        if self.nick and self.nick != account:
            self.send(Message("NICK", [account], self.source))
        self.nick = account
        if self._login_sasl:
            self.numeric("900", self.source, account, f"You are now logged in as {account}")
            self.numeric("903", "SASL authentication successful")
        self._try_register()

    def login_failed(self) -> None:
        self._login_pending = False
        if self._login_sasl:
            self.numeric("904", "SASL authentication failed")
            self._sasl_failures += 1
            if self._sasl_failures >= MAX_SASL_FAILURES:
                self.error("too many failed logins")
            return
        self.numeric("464", "Password incorrect")
        self.error("bad password")

    def _welcome(self) -> None:
        self.registered = True
        name = self.server_name
        self.numeric("001", f"Welcome to the {self.network} IRC gateway, {self.source}")
        self.numeric("002", f"Your host is {name}, running {self.version}")
        self.numeric("003", "This server speaks XMPP underneath: #channels are rooms")
        self.numeric("004", name, self.version, "i", "bikmnot")
        self.numeric("005", "CHANTYPES=#", "PREFIX=(ov)@+", "CHANMODES=b,k,,imnt",
                     f"NICKLEN={NICKLEN}", "CASEMAPPING=ascii", f"NETWORK={self.network}",
                     "CHANNELLEN=64", f"CHATHISTORY={self.chathistory}",
                     "MSGREFTYPES=msgid,timestamp", "are supported by this server")
        self.numeric("422", "MOTD File is missing")


__all__ = ["CAPS", "Command", "Event", "IrcConnection", "Login", "Quit", "valid_nick"]
