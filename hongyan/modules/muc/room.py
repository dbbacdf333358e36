"""A room: its occupants, roles, affiliations, subject and history, and how it speaks.

Fan-out (the hot path): a groupchat message is serialized once, without its ``to``; each
recipient gets ``<message to='`` + its escaped full JID + the rest, written into its session's
output buffer (flushed once per event-loop pass by the node's write coalescing). No task, no
await and no per-recipient element is made.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

from hongyan.modules.muc.forms import MUC_USER, OCCUPANT_ID, RoomConfig
from hongyan.modules.muc.store import Affiliation
from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element, escape_attr
from hongyan.xmpp.jid import JID
from hongyan.xmpp.stamps import parse_xmpp_datetime, xmpp_datetime

if TYPE_CHECKING:
    from hongyan.server.module import ModuleAPI
    from hongyan.server.router import Endpoint, RemoteEndpoint
    from hongyan.server.session import ClientSession

    #: where an occupant's resource is written to
    Place = ClientSession | Endpoint | RemoteEndpoint


class Service(Protocol):
    """What a room (and its archive) uses of the MUC service that holds it."""

    api: ModuleAPI
    host: str
    history_size: int


AFF_RANK = {"outcast": 0, "none": 1, "member": 2, "admin": 3, "owner": 4}
ROLE_RANK = {"none": 0, "visitor": 1, "participant": 2, "moderator": 3}


def spliced(el: Element) -> tuple[bytes, bytes]:
    """``el`` (which has no ``to``) serialized once, split so that
    ``head + escaped_to + tail`` is ``el`` with ``to`` set."""
    data = el.to_bytes(NS.CLIENT)
    start = len(el.name) + 1
    return data[:start] + b" to='", b"'" + data[start:]


class Occupant:
    """One nick in a room: one user (bare JID), one or more of its resources."""

    __slots__ = ("bare", "former", "nick", "occupant_id", "presence", "resources", "role")

    #: former nicks remembered per occupant (an unavailable presence to one is a leave)
    FORMER = 4

    def __init__(self, nick: str, bare: str, role: str, occupant_id: str) -> None:
        self.nick = nick
        #: the nicks it had before, newest last: a client that missed its own nick change
        #: leaves with an unavailable presence to one of them
        self.former: tuple[str, ...] = ()
        self.bare = bare
        self.role = role
        self.occupant_id = occupant_id
        #: full JID string -> (JID, the full JID escaped for an attribute as bytes, its
        #: session, or the endpoint of its session on another process). Looked up once, at
        #: join: an occupant's resource leaves the room when that session ends
        #: (``Muc.on_session_closed``).
        self.resources: dict[str, tuple[JID, bytes, Place | None]] = {}
        self.presence: Element | None = None

    def add_resource(self, jid: JID, session: Place | None) -> None:
        s = str(jid)
        self.resources[s] = (jid, escape_attr(s).encode(), session)

    @property
    def first_jid(self) -> str:
        return next(iter(self.resources))


class Room:
    __slots__ = ("affiliations", "by_jid", "config", "created", "history", "jid_str", "locked",
                 "muc", "name", "occupants", "subject", "subject_by")

    def __init__(self, muc: Service, name: str, config: RoomConfig, created: int) -> None:
        self.muc = muc
        self.name = name
        self.jid_str = f"{name}@{muc.host}"
        self.config = config
        self.created = created
        self.affiliations: dict[str, Affiliation] = {}
        self.occupants: dict[str, Occupant] = {}
        self.by_jid: dict[str, Occupant] = {}
        self.history: collections.deque[tuple[float, Element, int]] = collections.deque(
            maxlen=muc.history_size)
        self.subject = ""
        self.subject_by = ""
        self.locked = False

    # -- state ----------------------------------------------------------------------------------
    def affiliation(self, bare: str) -> str:
        a = self.affiliations.get(bare)
        return "none" if a is None else a.affiliation

    def default_role(self, affiliation: str) -> str:
        if AFF_RANK[affiliation] >= AFF_RANK["admin"]:
            return "moderator"
        if self.config.moderated and affiliation != "member":
            return "visitor"
        return "participant"

    def reserved_by(self, nick: str) -> str | None:
        for bare, a in self.affiliations.items():
            if a.nick == nick:
                return bare
        return None

    def nick_of(self, bare: str) -> str:
        a = self.affiliations.get(bare)
        return "" if a is None else a.nick

    def occupant_jid(self, nick: str) -> str:
        return f"{self.jid_str}/{nick}"

    def sees_jids(self, viewer: Occupant) -> bool:
        return self.config.non_anonymous or viewer.role == "moderator"

    # -- output ---------------------------------------------------------------------------------
    def write(self, head: bytes, tail: bytes, occ: Occupant) -> None:
        for _, esc, s in occ.resources.values():
            if s is not None:
                s.send(head + esc + tail)

    def write_to(self, el: Element, jid: JID) -> None:
        s = self.muc.api.router.reach(jid)
        if s is not None:
            el.attrs["to"] = str(jid)
            s.send(el)

    def broadcast(self, el: Element, skip: Occupant | None = None) -> None:
        """``el`` (no ``to``) to every occupant's every resource, serialized once."""
        head, tail = spliced(el)
        for occ in self.occupants.values():
            if occ is skip:
                continue
            for _, esc, s in occ.resources.values():
                if s is not None:
                    s.send(head + esc + tail)

    def presence_of(self, occ: Occupant, *, with_jid: bool, codes: Iterable[str] = (),
                    unavailable: bool = False, new_nick: str = "", actor: str = "",
                    reason: str = "") -> Element:
        el = Element("presence", attrs={"from": self.occupant_jid(occ.nick)})
        if unavailable:
            el.attrs["type"] = "unavailable"
        if occ.presence is not None:
            for c in occ.presence.children:
                if isinstance(c, Element) and c.xmlns not in (MUC_USER, OCCUPANT_ID) and \
                        c.xmlns != "http://jabber.org/protocol/muc" and c.name != "error":
                    el.children.append(c)
        x = el.add("x", MUC_USER)
        # Leaving, the role is none; changing nick (§7.6, 303), the occupant keeps its role.
        item = x.add("item", attrs={"affiliation": self.affiliation(occ.bare),
                                    "role": "none" if unavailable and not new_nick
                                    else occ.role})
        if with_jid and occ.resources:
            item.attrs["jid"] = occ.first_jid
        if new_nick:
            item.attrs["nick"] = new_nick
        if actor:
            item.add("actor", attrs={"nick": actor})
        if reason:
            item.add("reason", text=reason)
        for code in codes:
            x.add("status", attrs={"code": code})
        el.add("occupant-id", OCCUPANT_ID, {"id": occ.occupant_id})
        return el

    def broadcast_presence(self, occ: Occupant, *, codes: tuple[str, ...] = (),
                           self_codes: tuple[str, ...] = (), unavailable: bool = False,
                           new_nick: str = "", actor: str = "", reason: str = "",
                           self_to: Iterable[JID] | None = None) -> None:
        """``occ``'s presence to everyone else (two serializations: with and without the real
        JID) and to itself (to ``self_to``, default all its resources) with 110."""
        variants: dict[bool, tuple[bytes, bytes]] = {}
        for other in self.occupants.values():
            if other is occ:
                continue
            see = self.sees_jids(other)
            v = variants.get(see)
            if v is None:
                v = variants[see] = spliced(self.presence_of(
                    occ, with_jid=see, codes=codes, unavailable=unavailable, new_nick=new_nick,
                    actor=actor, reason=reason))
            self.write(v[0], v[1], other)
        mine = self.presence_of(occ, with_jid=True, codes=(*codes, *self_codes, "110"),
                                unavailable=unavailable, new_nick=new_nick, actor=actor,
                                reason=reason)
        if self_to is None:
            head, tail = spliced(mine)
            self.write(head, tail, occ)
        else:
            for jid in self_to:
                self.write_to(mine.copy(), jid)

    def status_message(self, codes: Iterable[str]) -> None:
        el = Element("message", attrs={"from": self.jid_str, "type": "groupchat"})
        x = el.add("x", MUC_USER)
        for c in codes:
            x.add("status", attrs={"code": c})
        self.broadcast(el)

    # -- joining --------------------------------------------------------------------------------
    def send_join(self, occ: Occupant, jid: JID, history: Element | None, now: float,
                  created: bool, new_occupant: bool) -> None:
        """What a newly joined resource receives: the others' presence, its own (and the
        others get it), history, then the subject (XEP-0045 §7.2.2-§7.2.15)."""
        see = self.sees_jids(occ)
        for other in self.occupants.values():
            if other is not occ:
                self.write_to(self.presence_of(other, with_jid=see), jid)
        self_codes: tuple[str, ...] = ()
        if self.config.non_anonymous:
            self_codes += ("100",)
        if self.config.archive:
            self_codes += ("170",)  # §7.2.12: the room is logged (here: its XEP-0313 archive)
        if created:
            self_codes += ("201",)
        if new_occupant:
            self.broadcast_presence(occ, self_codes=self_codes, self_to=(jid,))
        else:
            self.write_to(self.presence_of(occ, with_jid=True, codes=(*self_codes, "110")), jid)
        self.send_history(jid, history, now)
        subj = Element("message", attrs={
            "from": self.occupant_jid(self.subject_by) if self.subject_by else self.jid_str,
            "type": "groupchat"})
        subj.add("subject", text=self.subject or None)
        self.write_to(subj, jid)

    def send_history(self, jid: JID, spec: Element | None, now: float) -> None:
        entries = list(self.history)
        if spec is not None:
            try:
                maxstanzas = int(spec.attrs.get("maxstanzas", "-1"))
                maxchars = int(spec.attrs.get("maxchars", "-1"))
                seconds = int(spec.attrs.get("seconds", "-1"))
            except ValueError:
                maxstanzas = maxchars = seconds = -1
            since = spec.attrs.get("since")
            if seconds >= 0:
                entries = [e for e in entries if e[0] >= now - seconds]
            if since is not None:
                try:
                    t = parse_xmpp_datetime(since)
                except ValueError:
                    t = 0.0
                entries = [e for e in entries if e[0] > t]
            if maxstanzas >= 0:
                entries = entries[len(entries) - maxstanzas:] if maxstanzas else []
            if maxchars >= 0:
                kept: list[tuple[float, Element, int]] = []
                total = 0
                for e in reversed(entries):
                    total += e[2]
                    if total > maxchars:
                        break
                    kept.append(e)
                entries = kept[::-1]
        for ts, el, _ in entries:
            msg = el.copy()
            msg.add("delay", NS.DELAY, {"from": self.jid_str, "stamp": xmpp_datetime(ts)})
            self.write_to(msg, jid)

    def add_history(self, el: Element, now: float, size: int) -> None:
        if self.history.maxlen:
            self.history.append((now, el, size))
