"""XEP-0045 Multi-User Chat at ``conference.<domain>`` (``[muc] host``).

The module hosts the MUC service as a component domain: the router hands it every stanza
addressed to that domain (``ModuleAPI.component``). Rooms live in memory; persistent rooms
(configuration, subject, affiliations) are stored and loaded at start (:mod:`.store`). History
on join is kept in memory per room (``[muc] history_size``). Also: XEP-0421 occupant ids,
XEP-0410 self-ping answered by the service, XEP-0249 direct invitations (plain messages between
users, routed as any other), mediated invitations and declines.

Room archives (XEP-0313 on the room, XEP-0359 stanza ids): :mod:`.archive`. Registration with a
room (§7.10) and voice requests (§7.13, §8.6): :mod:`.admin`. Members of a persistent
members-only room who have no resource in it when a message is broadcast are reported through
the sync ``MucMemberMissedMessage`` hook (what a push service subscribes to); they read what
they missed from the room's archive. A recipient's blocklist (XEP-0191) is applied to the
fan-out, which does not pass through the router's ``StanzaInbound`` hook.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import secrets
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, cast

from hongyan.modules.events import MucMemberMissedMessage, RoomActivity, SessionResumed
from hongyan.modules.muc import admin
from hongyan.modules.muc.archive import MIGRATION as ARCHIVE_MIGRATION
from hongyan.modules.muc.archive import RoomArchive
from hongyan.modules.muc.forms import (
    IQ_REGISTER,
    MAM,
    MUC,
    MUC_ADMIN,
    MUC_OWNER,
    MUC_USER,
    OCCUPANT_ID,
    REQUEST,
    SID,
    RoomConfig,
    roominfo_form,
)
from hongyan.modules.muc.options import MucOptions
from hongyan.modules.muc.room import ROLE_RANK, Occupant, Room, spliced
from hongyan.modules.muc.store import MIGRATIONS, Affiliation, RoomStore
from hongyan.server.hooks import AccountDeleted, SessionClosed
from hongyan.server.module import Module, hook
from hongyan.server.router import Endpoint
from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element
from hongyan.xmpp.errors import StanzaError, error_reply
from hongyan.xmpp.jid import JID

if TYPE_CHECKING:
    from hongyan.modules.blocking import Blocking
    from hongyan.server.session import Session

_SECRET_NS = "hongyan:muc"
HINTS = "urn:xmpp:hints"
#: body-less payloads a room archives (XEP-0444 reactions, XEP-0424 retractions, OMEMO,
#: out-of-band data); chat states and markers are not kept
ROOM_ARCHIVABLE = frozenset({
    "urn:xmpp:reactions:0", "urn:xmpp:message-retract:1", "urn:xmpp:message-retract:0",
    "eu.siacs.conversations.axolotl", "urn:xmpp:omemo:2", "jabber:x:oob",
})


class Muc(Module):
    name = "muc"
    xeps = {"0045": "1.35", "0249": "1.2", "0410": "1.1.0", "0421": "1.0.1", "0313": "1.1.1",
            "0359": "0.7.0"}
    migrations = (*MIGRATIONS, ARCHIVE_MIGRATION)
    uses = ("blocking",)  # a recipient's blocklist on the fan-out, when loaded

    async def start(self) -> None:
        self.api.on_notice("muc-gone", self._peer_session_gone)
        cfg = self.options = self.api.options(MucOptions)
        self.host = cfg.host_for(self.api.domain)
        self.history_size = cfg.history_size
        self.max_users = cfg.max_users
        self.store = RoomStore(self.api.db)
        self.archive = RoomArchive(self)
        await self.archive.start()
        # Optional: the blocking module, when loaded (a recipient's blocklist on the fan-out).
        self._blocking = cast("Blocking | None", self.api.optional("blocking"))
        self.rooms: dict[str, Room] = {}
        #: a user's full JID -> rooms it is in (to leave them when its session ends)
        self.joined: dict[str, set[str]] = {}
        self._iq_ids = itertools.count(1)
        #: IQs forwarded to an occupant: our id -> (original id, requester full JID, target nick)
        self._proxied: dict[str, tuple[str, JID, str, str]] = {}
        secret = await self.api.kv.get("", _SECRET_NS, "secret")
        if secret is None:
            secret = secrets.token_hex(32)
            await self.api.kv.set("", _SECRET_NS, "secret", secret)
        self._secret = bytes.fromhex(secret)
        for stored in await self.store.load():
            room = Room(self, stored.name, RoomConfig.from_json(stored.config), stored.created)
            room.config.max_users = min(room.config.max_users, self.max_users)
            room.subject, room.subject_by = stored.subject, stored.subject_by
            room.affiliations = stored.affiliations
            self.rooms[stored.name] = room
        self.api.component(self.host, self.on_stanza)

    async def stop(self) -> None:
        await self.archive.flush()

    # -- helpers --------------------------------------------------------------------------------
    def occupant_id(self, room: str, bare: str) -> str:
        """XEP-0421: stable per (room, user), reveals nothing of the user."""
        digest = hmac.new(self._secret, f"{room}\0{bare}".encode(), hashlib.sha256).digest()
        return base64.b64encode(digest[:18]).decode()

    def send(self, el: Element) -> None:
        """Route a stanza the service originates (``from`` and ``to`` set)."""
        pending = self.api.router.route_from_server(el)
        if pending is not None:
            self.api.spawn(_wait(pending))

    def error(self, el: Element, err: StanzaError) -> None:
        if el.attrs.get("type") == "error":
            return
        reply = error_reply(el, err)
        if el.name == "presence":
            # Presence goes straight to the session (the router's presence path is async).
            to = JID.parse(reply.attrs["to"])
            s = self.api.router.reach(to)
            if s is not None:
                s.send(reply)
            return
        self.send(reply)

    def persist(self, room: Room) -> Awaitable[None] | None:
        if not room.config.persistent:
            return None
        return self.store.save_room(room.name, room.config.to_json(), room.subject,
                                    room.subject_by, room.created)

    def remove_room(self, room: Room) -> None:
        if self.rooms.get(room.name) is room:
            del self.rooms[room.name]
            # Its archive goes with it (destroyed, or temporary and empty).
            self.archive.forget(room.name)
        for occ in room.occupants.values():
            for full in occ.resources:
                self._unjoin(full, room.name)

    def _unjoin(self, full: str, room: str) -> None:
        rooms = self.joined.get(full)
        if rooms is not None:
            rooms.discard(room)
            if not rooms:
                del self.joined[full]

    # -- entry point ----------------------------------------------------------------------------
    def on_stanza(self, el: Element, sender: JID, to: JID) -> Awaitable[object] | None:
        name = el.name
        try:
            if not to.local:
                if to.resource:
                    raise StanzaError("item-not-found")
                if name == "iq":
                    self.service_iq(el, sender)
                if name == "message" and el.attrs.get("type") not in ("error", "groupchat"):
                    raise StanzaError("service-unavailable")
                return None
            room = self.rooms.get(to.local)
            if name == "presence":
                return self.on_presence(room, el, sender, to)
            if room is None:
                if el.attrs.get("type") in ("error", "result"):
                    return None
                raise StanzaError("item-not-found", "no such room")
            if name == "message":
                return self.on_message(room, el, sender, to)
            return self.on_iq(room, el, sender, to)
        except StanzaError as exc:
            self.error(el, exc)
            return None

    # -- the service itself ---------------------------------------------------------------------
    def service_iq(self, el: Element, sender: JID) -> None:
        itype = el.attrs.get("type")
        if itype not in ("get", "set"):
            if itype in ("result", "error"):
                return
            raise StanzaError("bad-request")
        payload = el.first
        if payload is None:
            raise StanzaError("bad-request")
        if itype == "get" and payload.name == "query" and payload.xmlns == NS.DISCO_INFO:
            if payload.attrs.get("node"):
                raise StanzaError("item-not-found")
            q = Element("query", NS.DISCO_INFO)
            q.add("identity", attrs={"category": "conference", "type": "text",
                                     "name": "Chatrooms"})
            for f in (NS.DISCO_INFO, NS.DISCO_ITEMS, MUC):
                q.add("feature", attrs={"var": f})
            self.reply(el, q)
            return
        if itype == "get" and payload.name == "query" and payload.xmlns == NS.DISCO_ITEMS:
            if payload.attrs.get("node"):
                raise StanzaError("item-not-found")
            q = Element("query", NS.DISCO_ITEMS)
            for room in sorted(self.rooms.values(), key=lambda r: r.name):
                if room.config.public and not room.locked:
                    q.add("item", attrs={"jid": room.jid_str,
                                         "name": room.config.name or room.name})
            self.reply(el, q)
            return
        raise StanzaError("service-unavailable")

    def reply(self, el: Element, payload: Element | None = None) -> None:
        r = Element("iq", attrs={"type": "result", "id": el.attrs.get("id", ""),
                                 "from": el.attrs.get("to", self.host),
                                 "to": el.attrs.get("from", "")})
        if payload is not None:
            r.children.append(payload)
        self.send(r)

    # -- presence -------------------------------------------------------------------------------
    def on_presence(self, room: Room | None, el: Element, sender: JID, to: JID
                    ) -> Awaitable[object] | None:
        ptype = el.attrs.get("type")
        full = str(sender)
        occ = room.by_jid.get(full) if room is not None else None
        if ptype == "error":
            if room is not None and occ is not None:
                self.leave(room, occ, sender, codes=("333",))
            return None
        if ptype == "unavailable":
            # Leaving is an unavailable presence to one's own occupant JID, to the room, or to
            # a nick the occupant had before (a client that missed its nick change would
            # otherwise leave a ghost); one to another occupant (a blocking client's,
            # XEP-0191 §3.3) changes nothing.
            if room is not None and occ is not None and (
                    to.resource in ("", occ.nick) or to.resource in occ.former):
                if el.children:
                    occ.presence = el
                self.leave(room, occ, sender)
            return None
        if ptype is not None:
            # probe and subscription requests: a room has no subscriptions (XEP-0045 §7.2).
            return None
        nick = to.resource
        if not nick:
            raise StanzaError("jid-malformed", "a nickname is required")
        now = self.api.now()
        x = el.find("x", MUC)
        history = x.find("history", MUC) if x is not None else None
        if room is not None and occ is not None:
            if occ.nick == nick:
                occ.presence = el
                occ.add_resource(sender, self.api.router.reach(sender))
                if x is not None:
                    # A join from a resource already in: the client lost track (Conversations
                    # rejoins when a self-ping fails); give it the whole join again.
                    room.send_join(occ, sender, history, now, False, False)
                    room.broadcast_presence(occ, self_to=())
                else:
                    room.broadcast_presence(occ)
                return None
            self.change_nick(room, occ, el, sender, nick)
            return None
        password = x.find_text("password", MUC) if x is not None else None
        created = False
        bare = sender.bare_str
        if room is None:
            if sender.domain != self.api.domain:
                raise StanzaError("not-allowed", "only local users may create rooms")
            owned = sum(1 for r in self.rooms.values() if r.affiliation(bare) == "owner")
            if owned >= self.options.max_rooms_per_user:
                raise StanzaError("not-allowed", "you own too many rooms")
            room = Room(self, to.local, RoomConfig(max_users=self.max_users,
                                                   archive=self.options.archive),
                        int(now))
            room.affiliations[bare] = Affiliation("owner")
            # A client that speaks MUC gets a locked room to configure (or accept as is);
            # a groupchat 1.0 client gets an instant room (XEP-0045 §10.1.1).
            room.locked = x is not None
            self.rooms[room.name] = room
            created = True
        aff = room.affiliation(bare)
        same = room.occupants.get(nick)
        if not created:
            if room.locked and aff != "owner":
                raise StanzaError("item-not-found", "this room is not configured yet")
            if aff == "outcast":
                raise StanzaError("forbidden", "you are banned from this room")
            if same is not None and same.bare != bare:
                raise StanzaError("conflict", "this nickname is in use")
            holder = room.reserved_by(nick)
            if holder is not None and holder != bare:
                raise StanzaError("conflict", "this nickname is reserved")
            if room.config.members_only and aff in ("none",):
                raise StanzaError("registration-required", "this room is for members only")
            if room.config.password_protected and aff not in ("owner", "admin") and \
                    password != room.config.password:
                raise StanzaError("not-authorized", "a password is required")
            if same is None and len(room.occupants) >= room.config.max_users and \
                    aff not in ("owner", "admin"):
                raise StanzaError("service-unavailable", "this room is full", type="wait")
        new_occupant = same is None
        if same is None:
            occ = Occupant(nick, bare, room.default_role(aff), self.occupant_id(room.name, bare))
            room.occupants[nick] = occ
        else:
            occ = same
        occ.add_resource(sender, self.api.router.reach(sender))
        occ.presence = el
        room.by_jid[full] = occ
        self.joined.setdefault(full, set()).add(room.name)
        room.send_join(occ, sender, history, now, created, new_occupant)
        if new_occupant and self.api.hooks.has(RoomActivity):
            self.api.hooks.fire_sync(RoomActivity("join", room.jid_str, nick, bare))
        return None

    def leave(self, room: Room, occ: Occupant, jid: JID, codes: tuple[str, ...] = ()) -> None:
        full = str(jid)
        room.by_jid.pop(full, None)
        self._unjoin(full, room.name)
        if len(occ.resources) > 1:
            # One of several resources under this nick: only it leaves.
            room.write_to(room.presence_of(occ, with_jid=True, unavailable=True,
                                           codes=(*codes, "110")), jid)
            del occ.resources[full]
            return
        room.occupants.pop(occ.nick, None)
        room.broadcast_presence(occ, unavailable=True, codes=codes)
        occ.resources.clear()
        if self.api.hooks.has(RoomActivity):
            self.api.hooks.fire_sync(RoomActivity("leave", room.jid_str, occ.nick, occ.bare,
                                                  codes=codes))
        self.maybe_vanish(room)

    def remove_occupant(self, room: Room, occ: Occupant, codes: tuple[str, ...],
                        actor: str = "", reason: str = "") -> None:
        """Kicked, banned, or no longer a member: every resource leaves."""
        room.occupants.pop(occ.nick, None)
        for full in occ.resources:
            room.by_jid.pop(full, None)
            self._unjoin(full, room.name)
        room.broadcast_presence(occ, unavailable=True, codes=codes, actor=actor, reason=reason)
        occ.resources.clear()
        if self.api.hooks.has(RoomActivity):
            self.api.hooks.fire_sync(RoomActivity("leave", room.jid_str, occ.nick, occ.bare,
                                                  codes=codes))

    def maybe_vanish(self, room: Room) -> None:
        if not room.occupants and not room.config.persistent:
            self.remove_room(room)

    def change_nick(self, room: Room, occ: Occupant, el: Element, sender: JID, nick: str
                    ) -> None:
        other = room.occupants.get(nick)
        if other is not None:
            raise StanzaError("conflict", "this nickname is in use")
        holder = room.reserved_by(nick)
        if holder is not None and holder != occ.bare:
            raise StanzaError("conflict", "this nickname is reserved")
        room.broadcast_presence(occ, unavailable=True, codes=("303",), new_nick=nick)
        del room.occupants[occ.nick]
        occ.former = (*[n for n in occ.former if n != nick], occ.nick)[-Occupant.FORMER:]
        occ.nick = nick
        occ.presence = el
        room.occupants[nick] = occ
        room.broadcast_presence(occ)

    def _peer_session_gone(self, body: bytes) -> None:
        """A session homed on another worker ended (its stand-in here leaves its rooms)."""
        cluster = self.api.cluster
        assert cluster is not None
        self._session_ended(JID.parse(body.decode()), None)

    @hook(SessionClosed)
    def on_session_closed(self, ev: SessionClosed) -> None:
        home = self.api.service_home(self.host)
        if home is not None:
            # the rooms live on another worker: tell it (they may hold this session)
            jid = ev.session.jid
            if jid is not None:
                self.api.notify("muc-gone", jid.text.encode(), home)
            return
        if ev.session.jid is not None:
            self._session_ended(ev.session.jid, ev.session)

    def _session_ended(self, jid: JID, session: Session | None) -> None:
        """The resource ``jid`` is gone: its ``session`` here, or (None) its session bound on
        another process, which the rooms here reach through an :class:`Endpoint`."""
        full = str(jid)
        for name in list(self.joined.get(full, ())):
            room = self.rooms.get(name)
            if room is None:
                continue
            occ = room.by_jid.get(full)
            # Only if it is this session's (a new session with the same full JID may have
            # joined already).
            if occ is None:
                continue
            s = occ.resources[full][2]
            if s is session if session is not None else isinstance(s, Endpoint):
                self.leave(room, occ, jid)

    @hook(SessionResumed)
    def on_session_resumed(self, ev: SessionResumed) -> None:
        """XEP-0198 resumption: the occupant's resource now lives on the new session object
        (the fan-out writes to the session it looked up at join, which is dead now)."""
        jid = ev.session.jid
        if jid is None:
            return
        full = str(jid)
        for name in self.joined.get(full, ()):
            room = self.rooms.get(name)
            occ = room.by_jid.get(full) if room is not None else None
            if occ is not None and occ.resources[full][2] is ev.old:
                occ.add_resource(jid, ev.session)

    @hook(AccountDeleted)
    async def on_account_deleted(self, ev: AccountDeleted) -> None:
        """A deleted account loses its affiliations (its sessions are closed anyway)."""
        bare = f"{ev.username}@{self.api.domain}"
        for room in list(self.rooms.values()):
            if room.affiliations.pop(bare, None) is not None and room.config.persistent:
                await self.store.set_affiliations(room.name, {bare: None})

    # -- messages -------------------------------------------------------------------------------
    def on_message(self, room: Room, el: Element, sender: JID, to: JID
                   ) -> Awaitable[object] | None:
        mtype = el.attrs.get("type", "normal")
        occ = room.by_jid.get(str(sender))
        if mtype == "error":
            if occ is not None and self.api.router.reach(sender) is None:
                self.leave(room, occ, sender, codes=("333",))
            return None
        if to.resource:
            self.private_message(room, occ, el, to.resource, mtype)
            return None
        if mtype == "groupchat":
            if occ is None:
                raise StanzaError("not-acceptable", "you are not in this room")
            return self.groupchat(room, occ, el)
        x = el.find("x", MUC_USER)
        if x is not None and (x.find("invite", MUC_USER) is not None or
                              x.find("decline", MUC_USER) is not None):
            admin.invitations(self, room, occ, el, sender, x)
            return None
        form = el.find("x", NS.DATA_FORMS)
        if form is not None and admin.form_type(form) == REQUEST:
            admin.voice_request(self, room, occ, form)
            return None
        raise StanzaError("bad-request", "a message to a room is of type groupchat")

    def groupchat(self, room: Room, occ: Occupant, el: Element) -> Awaitable[object] | None:
        if ROLE_RANK[occ.role] < ROLE_RANK["participant"]:
            raise StanzaError("forbidden", "you have no voice in this room")
        subject = el.find("subject")
        has_body = el.find("body") is not None
        out = Element("message", attrs={"from": room.occupant_jid(occ.nick),
                                        "type": "groupchat"})
        for k in ("id", "{http://www.w3.org/XML/1998/namespace}lang"):
            v = el.attrs.get(k)
            if v is not None:
                out.attrs[k] = v
        # A client's muc#user (forged status codes), occupant id and stanza-id claiming the
        # room (XEP-0359 §5) are not passed on.
        out.children = [c for c in el.children
                        if isinstance(c, Element) and c.xmlns not in (MUC_USER, OCCUPANT_ID)
                        and not (c.xmlns == SID and c.attrs.get("by") == room.jid_str)]
        out.children.append(Element("occupant-id", OCCUPANT_ID, {"id": occ.occupant_id}))
        # §8.1: only a <subject/> with neither <body/> nor <thread/> changes the subject; with
        # either it is an ordinary message.
        if subject is not None and not has_body and el.find("thread") is None:
            if occ.role != "moderator" and not room.config.change_subject:
                raise StanzaError("forbidden", "you may not change the subject")
            room.subject = subject.text
            room.subject_by = occ.nick
            room.broadcast(out)
            if self.api.hooks.has(RoomActivity):
                self.api.hooks.fire_sync(RoomActivity("subject", room.jid_str, occ.nick,
                                                      occ.bare, body=subject.text))
            return self.persist(room)
        mid = 0
        if room.config.archive and _archivable(out, has_body):
            mid = self.archive.ids.next()
            out.children.append(Element("stanza-id", SID, {"by": room.jid_str, "id": str(mid)}))
        head, tail = spliced(out)
        blocking = self._blocking
        if blocking is not None and blocking.active:
            self._fan_out_unblocked(room, occ, head, tail, blocking)
        else:
            remote: dict[int, list[tuple[str, bytes]]] | None = None
            for o in room.occupants.values():
                for _, esc, s in o.resources.values():
                    if s is None:
                        continue
                    if isinstance(s, Endpoint):
                        # bound on another process: one frame per process (Cluster.multicast)
                        if remote is None:
                            remote = {}
                        remote.setdefault(s.target.index, []).append((s.jid.text, esc))
                    else:
                        s.send(head + esc + tail)
            if remote is not None:
                cluster = self.api.cluster
                assert cluster is not None
                for index, recipients in remote.items():
                    cluster.multicast(index, head, tail, recipients)
        # the sender waits (its next stanzas are read later) when the archive's queue is full
        wait = self.archive.add(room.name, mid, occ.nick, occ.bare, tail) if mid else None
        if self.api.hooks.has(RoomActivity):
            self.api.hooks.fire_sync(RoomActivity(
                "message", room.jid_str, occ.nick, occ.bare, len(head) + len(tail),
                out.find_text("body") if has_body else None))
        if has_body:
            if room.history.maxlen:
                room.add_history(out, self.api.now(), len(head) + len(tail))
            if room.config.members_only and room.config.persistent and \
                    self.api.hooks.has(MucMemberMissedMessage):
                self._missed(room, occ, out)
        return wait

    def _fan_out_unblocked(self, room: Room, occ: Occupant, head: bytes, tail: bytes,
                           blocking: Blocking) -> None:
        """The fan-out when some user has a blocklist: a local recipient who blocks the
        occupant JID (or the room, or the service) or the sender's real JID does not get it."""
        senders = (JID.parse(room.occupant_jid(occ.nick)), JID.parse(occ.bare))
        for o in room.occupants.values():
            if o is not occ and self._blocks(blocking, o, senders):
                continue
            for _, esc, s in o.resources.values():
                if s is not None:
                    s.send(head + esc + tail)

    def _blocks(self, blocking: Blocking, recipient: Occupant, senders: tuple[JID, JID]
                ) -> bool:
        """Whether ``recipient`` (a local user) blocks one of ``senders`` (the occupant JID
        and the real JID of who speaks)."""
        local, _, domain = recipient.bare.partition("@")
        return domain == self.api.domain and any(blocking.blocks(local, j) for j in senders)

    def _blocked_by(self, recipient: Occupant, room: Room, sender: Occupant) -> bool:
        blocking = self._blocking
        if blocking is None or not blocking.active:
            return False
        return self._blocks(blocking, recipient, (JID.parse(room.occupant_jid(sender.nick)),
                                                  JID.parse(sender.bare)))

    def _missed(self, room: Room, occ: Occupant, out: Element) -> None:
        """``MucMemberMissedMessage`` for each local member with no resource in the room, or
        whose resources all wait for XEP-0198 resumption (a phone whose connection dropped:
        the message waits in its stream's queue, and the user is told by push)."""
        present = {o.bare for o in room.occupants.values()
                   if any(s is None or s.sm is None or not s.sm.hibernated
                          for _, _, s in o.resources.values())}
        suffix = "@" + self.api.domain
        room_jid = JID.parse(room.jid_str)
        body = out.find_text("body") or ""
        fire = self.api.hooks.fire_sync
        for bare, a in room.affiliations.items():
            if a.affiliation in ("member", "admin", "owner") and bare not in present and \
                    bare.endswith(suffix):
                fire(MucMemberMissedMessage(room_jid, JID.parse(bare), occ.nick, body, out))

    def private_message(self, room: Room, occ: Occupant | None, el: Element, nick: str,
                        mtype: str) -> None:
        if mtype == "groupchat":
            raise StanzaError("bad-request", "a private message is not of type groupchat")
        if occ is None:
            raise StanzaError("not-acceptable", "you are not in this room")
        target = room.occupants.get(nick)
        if target is None:
            raise StanzaError("item-not-found", "no such occupant")
        pm = room.config.allow_pm
        if pm == "none" or (pm == "participants" and ROLE_RANK[occ.role] < 2) or \
                (pm == "moderators" and occ.role != "moderator"):
            raise StanzaError("forbidden", "private messages are not allowed here")
        if self._blocked_by(target, room, occ):
            # As the blocking module answers a blocked sender (the block is not revealed).
            raise StanzaError("service-unavailable")
        out = Element("message", el.xmlns, dict(el.attrs))
        out.attrs.pop("to", None)
        out.attrs["from"] = room.occupant_jid(occ.nick)
        out.children = [c for c in el.children
                        if not (isinstance(c, Element) and c.xmlns in (MUC_USER, OCCUPANT_ID))]
        out.children.append(Element("x", MUC_USER))
        out.children.append(Element("occupant-id", OCCUPANT_ID, {"id": occ.occupant_id}))
        head, tail = spliced(out)
        room.write(head, tail, target)

    # -- IQ -------------------------------------------------------------------------------------
    def on_iq(self, room: Room, el: Element, sender: JID, to: JID
              ) -> Awaitable[object] | None:
        itype = el.attrs.get("type")
        if to.resource:
            self.occupant_iq(room, el, sender, to.resource, itype)
            return None
        if itype in ("result", "error"):
            return None
        payload = el.first
        if payload is None or itype not in ("get", "set"):
            raise StanzaError("bad-request")
        xmlns = payload.xmlns
        if xmlns == NS.DISCO_INFO and itype == "get":
            self.room_info(room, el, payload, sender)
            return None
        if xmlns == NS.DISCO_ITEMS and itype == "get":
            self.reply(el, Element("query", NS.DISCO_ITEMS))
            return None
        if xmlns == MUC_ADMIN:
            return self._guarded(el, admin.admin_iq(self, room, el, payload, sender, itype))
        if (payload.name == "query" and xmlns in (MAM, IQ_REGISTER)) or \
                (payload.name == "metadata" and xmlns == MAM):
            if room.locked and room.affiliation(sender.bare_str) != "owner":
                raise StanzaError("item-not-found", "this room is not configured yet")
            if payload.name == "metadata":
                return self._guarded(el, self.archive.on_metadata(room, sender, itype))
            if xmlns == MAM:
                return self._guarded(el, self.archive.on_query(room, payload, sender, itype))
            return self._guarded(el, admin.register_iq(self, room, payload, sender, itype))
        if xmlns == MUC_OWNER:
            return self._guarded(el, admin.owner_iq(self, room, el, payload, sender, itype))
        raise StanzaError("service-unavailable")

    async def _guarded(self, el: Element, pending: Awaitable[Element | None]) -> None:
        try:
            payload = await pending
        except StanzaError as exc:
            self.error(el, exc)
            return
        self.reply(el, payload)

    def room_info(self, room: Room, el: Element, payload: Element, sender: JID) -> None:
        node = payload.attrs.get("node")
        q = Element("query", NS.DISCO_INFO)
        if node == "x-roomuser-item":
            # XEP-0045 §7.12: the user's reserved nickname, if any.
            q.attrs["node"] = node
            nick = room.nick_of(sender.bare_str)
            if nick:
                q.add("identity", attrs={"category": "conference", "type": "text",
                                         "name": nick})
            self.reply(el, q)
            return
        if node:
            raise StanzaError("item-not-found")
        if room.locked and room.affiliation(sender.bare_str) != "owner":
            raise StanzaError("item-not-found", "no such room")
        q.add("identity", attrs={"category": "conference", "type": "text",
                                 "name": room.config.name or room.name})
        for f in room.config.features():
            q.add("feature", attrs={"var": f})
        q.children.append(roominfo_form(room.config, len(room.occupants), room.subject))
        self.reply(el, q)

    def occupant_iq(self, room: Room, el: Element, sender: JID, nick: str, itype: str | None
                    ) -> None:
        if itype in ("result", "error"):
            back = self._proxied.pop(el.attrs.get("id", ""), None)
            if back is not None:
                orig_id, requester, target_nick, room_name = back
                if room_name == room.name:
                    out = Element("iq", attrs={"type": itype, "id": orig_id,
                                               "from": room.occupant_jid(target_nick),
                                               "to": str(requester)})
                    out.children = list(el.children)
                    self.send(out)
            return
        occ = room.by_jid.get(str(sender))
        if occ is None:
            raise StanzaError("not-acceptable", "you are not in this room")
        payload = el.first
        if occ.nick == nick and payload is not None and payload.xmlns == NS.PING:
            # XEP-0410: a ping to one's own occupant JID is answered by the service.
            self.reply(el)
            return
        target = room.occupants.get(nick)
        if target is None:
            raise StanzaError("item-not-found", "no such occupant")
        if len(self._proxied) > 10000:
            self._proxied.clear()
        our_id = f"muc-{next(self._iq_ids)}"
        self._proxied[our_id] = (el.attrs.get("id", ""), sender, nick, room.name)
        # A vCard request goes to the occupant's account (its avatar), as clients expect
        # (Conversations and Gajim fetch occupants' avatars this way); anything else goes
        # to one of the occupant's resources.
        vcard = payload is not None and payload.xmlns == NS.VCARD and itype == "get"
        out = Element("iq", attrs={"type": itype or "get", "id": our_id,
                                   "from": room.occupant_jid(occ.nick),
                                   "to": target.bare if vcard else target.first_jid})
        out.children = list(el.children)
        self.send(out)


async def _wait(pending: Awaitable[Any]) -> None:
    await pending


def _archivable(el: Element, has_body: bool) -> bool:
    """A groupchat message kept in the room's archive: one with a body or a payload clients
    read from the archive when they catch up (reactions, retractions, encrypted or
    out-of-band content), unless a XEP-0334 hint says not to."""
    keep = has_body
    for c in el.children:
        if isinstance(c, Element):
            if c.xmlns == HINTS and c.name in ("no-store", "no-permanent-store"):
                return False
            if c.xmlns in ROOM_ARCHIVABLE:
                keep = True
    return keep


__all__ = ["Muc"]

MODULE = Muc
