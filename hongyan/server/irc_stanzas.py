"""Stanzas for an IRC session as IRC lines (see :mod:`hongyan.server.irc`): messages and
presences of rooms and users, IQs answered or matched with the commands that sent them."""

from __future__ import annotations

import secrets

from hongyan.irc.message import Message
from hongyan.server.irc_commands import (
    MUC,
    MUC_USER,
    ROLE_MODE,
    Channel,
    IrcHost,
    irc_time,
    lines_of,
)
from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element
from hongyan.xmpp.jid import JID, JIDError

MAM = "urn:xmpp:mam:2"
RSM = "http://jabber.org/protocol/rsm"
FORWARD = "urn:xmpp:forward:0"
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




class Stanzas:
    """What a session shows of each stanza routed to it."""

    __slots__ = ("s",)

    def __init__(self, session: IrcHost) -> None:
        self.s = session

    def _from(self, el: Element) -> JID | None:
        frm = el.attrs.get("from")
        if frm is None:
            return None
        try:
            return JID.parse(frm)
        except JIDError:
            return None

    def _prefix(self, jid: JID) -> str:
        if jid.domain == self.s.node.domain and jid.local:
            return f"{jid.local}!{jid.local}@{jid.domain}"
        name = jid.bare_str
        return f"{name}!{jid.local or name}@{jid.domain}"

    def _channel_of(self, jid: JID) -> Channel | None:
        if jid.domain != self.s.service or not jid.local:
            return None
        ch = self.s.channels.get("#" + jid.local)
        return ch if ch is not None and ch.room.local == jid.local else None

    def message(self, el: Element) -> None:
        result = el.find("result", MAM)
        if result is not None and self.s.history.collect(result):
            return  # a CHATHISTORY page (irc_history)
        frm = self._from(el)
        if frm is None:
            return
        kind = el.attrs.get("type", "normal")
        ch = self._channel_of(frm.bare)
        result = el.find("result", MAM)
        if result is not None:
            self._archived(ch, frm, result)
            return
        if kind == "error":
            cond = _condition(el)
            if ch is not None:
                self.s.irc.numeric("404", ch.name, f"Cannot send to channel ({cond})")
            else:
                self.s.irc.numeric("401", frm.local or frm.text, f"No such nick ({cond})")
            return
        delay = el.find("delay", NS.DELAY)
        tags = {"time": irc_time(delay.get("stamp") if delay is not None else None)}
        for sid in el.find_all("stanza-id", "urn:xmpp:sid:0"):
            tags["msgid"] = sid.attrs.get("id", "")  # IRCv3 message-ids (message-tags)
        body = el.find_text("body")
        if ch is not None and kind == "groupchat":
            nick = frm.resource
            subject = el.find("subject")
            if subject is not None and body is None:
                ch.topic = subject.text
                if not ch.topic_told:
                    ch.topic_told = True
                    self._history_from_archive(ch)
                    if ch.topic:
                        self.s.irc.numeric("332", ch.name, ch.topic)
                elif nick:
                    self.s.irc.send(Message("TOPIC", [ch.name, ch.topic],
                                          f"{nick}!{nick}@{self.s.service}", tags))
                return
            if body is None:
                return
            mine = ch.reflected(el.attrs.get("id")) if delay is None else None
            if mine is not None:
                # our own message reflected: IRC clients show it themselves, unless they
                # asked for echo-message (then this is it, with its msgid and time)
                if "echo-message" in self.s.irc.caps:
                    tags["account"] = self.s.irc.account
                    for line in lines_of(body):
                        self.s.irc.send(Message(mine, [ch.name, line], self.s.irc.source,
                                                tags))
                return
            if delay is not None and not ch.topic_told:
                ch.history_shown += 1
            source = f"{nick}!{nick}@{self.s.service}" if nick else self.s.irc.server_name
            if nick in ch.accounts:
                tags["account"] = ch.accounts[nick]
            for line in lines_of(body):
                self.s.irc.send(Message("PRIVMSG", [ch.name, line], source, tags))
            return
        if body is None:
            return
        if ch is not None:  # a private message from an occupant
            source = f"{frm.resource}!{frm.resource}@{self.s.service}"
        else:
            source = self._prefix(frm)
            if frm.domain == self.s.node.domain and frm.local:
                tags["account"] = frm.local
        command = "NOTICE" if kind == "headline" else "PRIVMSG"
        for line in lines_of(body):
            self.s.irc.send(Message(command, [self.s.irc.nick, line], source, tags))

    def _history_from_archive(self, ch: Channel) -> None:
        """The subject ends the history on join (XEP-0045 §7.2.15): when the room archives
        and gave none (its in-memory history is empty after a restart), ask its archive for
        the last messages (XEP-0313)."""
        count = self.s.cfg.history
        if not ch.archives or ch.history_shown or count <= 0:
            return
        ch.query = secrets.token_hex(8)
        iq = Element("iq", attrs={"to": ch.room.text, "type": "set", "id": ch.query})
        query = iq.add("query", MAM, {"queryid": ch.query})
        rsm = query.add("set", RSM)
        rsm.add("max", text=str(count))
        rsm.add("before")
        self.s.route_later(iq)

    def _archived(self, ch: Channel | None, frm: JID, result: Element) -> None:
        """A message of our history query, shown with the time it was said."""
        if ch is None or not ch.query or result.attrs.get("queryid") != ch.query \
                or frm.resource:
            return
        fwd = result.find("forwarded", FORWARD)
        inner = fwd.find("message", NS.CLIENT) if fwd is not None else None
        body = inner.find_text("body") if inner is not None else None
        if inner is None or body is None or inner.find("subject") is not None:
            return
        try:
            nick = JID.parse(inner.attrs.get("from", "")).resource
        except JIDError:
            return
        delay = fwd.find("delay", NS.DELAY) if fwd is not None else None
        tags = {"time": irc_time(delay.get("stamp") if delay is not None else None)}
        if result.attrs.get("id"):
            tags["msgid"] = result.attrs["id"]
        source = f"{nick}!{nick}@{self.s.service}" if nick else self.s.irc.server_name
        for line in lines_of(body):
            self.s.irc.send(Message("PRIVMSG", [ch.name, line], source, tags))

    def presence(self, el: Element) -> None:
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
                del self.s.channels[ch.name]
                cond = _condition(el)
                code, text = _JOIN_ERRORS.get(cond, ("403", "Cannot join channel"))
                self.s.irc.numeric(code, ch.name, f"{text} ({cond})")
            return
        x = el.find("x", MUC_USER)
        statuses: set[str] = set()
        item: Element | None = None
        if x is not None:
            statuses = {s.attrs.get("code", "") for s in x.find_all("status")}
            item = x.find("item")
        role = (item.get("role") or "participant") if item is not None else "participant"
        account = self._account(item.get("jid") if item is not None else None)
        me = "110" in statuses or (nick == ch.nick and nick not in ch.occupants
                                   and not ch.joined)
        source = f"{nick}!{nick}@{self.s.service}"
        if kind == "unavailable":
            ch.occupants.pop(nick, None)
            ch.accounts.pop(nick, None)
            reason = ""
            actor = self.s.irc.server_name
            if item is not None:
                reason = item.find_text("reason") or ""
                act = item.find("actor")
                if act is not None and act.get("nick"):
                    a = act.attrs.get("nick", "")
                    actor = f"{a}!{a}@{self.s.service}"
            if "307" in statuses or "301" in statuses:
                why = reason or ("banned" if "301" in statuses else "kicked")
                self.s.irc.send(Message("KICK", [ch.name, nick, why], actor))
            elif "303" in statuses and item is not None and item.get("nick"):
                new = item.attrs.get("nick", "")
                ch.occupants[new] = role
                if account:
                    ch.accounts[new] = account
                if me:
                    ch.nick = new
                self.s.irc.send(Message("NICK", [new], source))
                return
            elif ch.joined:
                status = el.find_text("status")
                self.s.irc.send(Message("PART", [ch.name, status] if status else [ch.name],
                                      source))
            if me:
                self.s.channels.pop(ch.name, None)
            return
        old = ch.occupants.get(nick)
        ch.occupants[nick] = role
        if account:
            ch.accounts[nick] = account
        if me and not ch.joined:
            ch.joined = True
            ch.archives = "170" in statuses
            if "201" in statuses:
                # a new room: accept the default configuration (an instant room, §10.1.2)
                iq = Element("iq", attrs={"to": ch.room.text, "type": "set",
                                          "id": secrets.token_hex(8)})
                iq.add("query", MUC + "#owner").add("x", "jabber:x:data",
                                                    {"type": "submit"})
                self.s.route_later(iq)
            self.s.irc.send(Message("JOIN", self._join(ch.name, self.s.irc.account,
                                                       self.s.irc.realname or nick),
                                    self.s.irc.source))
            self.s.commands.names(ch)
            return
        if not ch.joined:
            return  # the occupants before our own presence: in NAMES
        if old is None:
            self.s.irc.send(Message("JOIN", self._join(ch.name, account, nick), source))
            mode = ROLE_MODE.get(role)
            if mode:
                self.s.irc.send(Message("MODE", [ch.name, "+" + mode, nick],
                                      self.s.irc.server_name))
        elif old != role:
            self._role_change(ch, nick, old, role)

    def _account(self, jid_text: str | None) -> str:
        """The account of a real JID of this server ("" for others and unknown ones)."""
        if not jid_text:
            return ""
        try:
            jid = JID.parse(jid_text)
        except JIDError:
            return ""
        return jid.local if jid.domain == self.s.node.domain and jid.local else ""

    def _join(self, name: str, account: str, realname: str) -> list[str]:
        """JOIN's parameters: with ``extended-join``, the account (``*``: none known) and
        the real name too."""
        if "extended-join" in self.s.irc.caps:
            return [name, account or "*", realname]
        return [name]

    def _role_change(self, ch: Channel, nick: str, old: str, new: str) -> None:
        before, after = ROLE_MODE.get(old), ROLE_MODE.get(new)
        if before:
            self.s.irc.send(Message("MODE", [ch.name, "-" + before, nick], self.s.irc.server_name))
        if after:
            self.s.irc.send(Message("MODE", [ch.name, "+" + after, nick], self.s.irc.server_name))

    def iq(self, el: Element) -> None:
        kind = el.attrs.get("type")
        iq_id = el.attrs.get("id", "")
        if kind in ("result", "error"):
            if self.s.history.answered(el):
                return
            asked = self.s.iqs.pop(iq_id, None)
            if asked is not None:
                ch = self.s.channels.get(asked[0])
                change = ch.modes.pop(iq_id, None) if ch is not None else None
                if change is not None and kind == "result":
                    self.s.irc.send(Message("MODE", [asked[0], *change], self.s.irc.source))
            if asked is not None and kind == "error":
                name, nick = asked
                cond = _condition(el)
                if cond in ("forbidden", "not-allowed"):
                    self.s.irc.numeric("482", name, f"You're not channel operator ({cond})")
                elif cond == "item-not-found":
                    self.s.irc.numeric("441", nick[:64], name, "They aren't on that channel")
                else:
                    self.s.irc.numeric("400", name, f"Could not do that: {cond}")
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
        self.s.route_later(reply)


def _condition(el: Element) -> str:
    err = el.find("error")
    if err is not None:
        for child in err.elements:
            if child.xmlns == NS.STANZAS and child.name != "text":
                return str(child.name)
    return "undefined-condition"


__all__ = ["Stanzas"]

