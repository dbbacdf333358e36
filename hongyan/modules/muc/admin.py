"""Moderation and administration: roles and affiliations (XEP-0045 §8-9, ``muc#admin``), room
configuration and destruction (§10, ``muc#owner``), mediated invitations (§7.8.2), registration
with a room (§7.10) and voice requests (§7.13, §8.6)."""

from __future__ import annotations

from typing import Protocol

from hongyan.modules.muc.forms import (
    IQ_REGISTER,
    MUC_ADMIN,
    MUC_OWNER,
    MUC_USER,
    REGISTER,
    REQUEST,
    apply_form,
    config_form,
)
from hongyan.modules.muc.room import AFF_RANK, ROLE_RANK, Occupant, Room, spliced
from hongyan.modules.muc.room import Service as RoomService
from hongyan.modules.muc.store import Affiliation, RoomStore
from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element
from hongyan.xmpp.errors import StanzaError
from hongyan.xmpp.jid import JID, JIDError


class Service(RoomService, Protocol):
    """What the owner's and admins' requests use of the MUC service."""

    max_users: int
    store: RoomStore

    def send(self, el: Element) -> None: ...
    def remove_room(self, room: Room) -> None: ...
    def remove_occupant(self, room: Room, occ: Occupant, codes: tuple[str, ...],
                        actor: str = "", reason: str = "") -> None: ...
    def maybe_vanish(self, room: Room) -> None: ...


def _bare(text: str) -> str:
    try:
        return JID.parse(text).bare_str
    except JIDError:
        raise StanzaError("jid-malformed", f"not a JID: {text!r}") from None


# -- muc#admin ----------------------------------------------------------------------------------
async def admin_iq(muc: Service, room: Room, el: Element, query: Element, sender: JID,
                   itype: str) -> Element | None:
    actor = room.by_jid.get(str(sender))
    actor_aff = room.affiliation(sender.bare_str)
    items = query.find_all("item", MUC_ADMIN)
    if not items:
        raise StanzaError("bad-request", "an item is required")
    if itype == "get":
        return _admin_list(room, items[0], actor, actor_aff)
    # Check every item first: the request is applied whole or not at all.
    role_changes: list[tuple[Occupant, str, str]] = []
    aff_changes: dict[str, Affiliation | None] = {}
    for item in items:
        reason = item.find_text("reason", MUC_ADMIN) or ""
        role = item.attrs.get("role")
        aff = item.attrs.get("affiliation")
        if role is not None:
            if role not in ROLE_RANK:
                raise StanzaError("bad-request", f"unknown role {role!r}")
            if actor is None or actor.role != "moderator":
                raise StanzaError("forbidden", "only moderators change roles")
            nick = item.attrs.get("nick", "")
            target = room.occupants.get(nick)
            if target is None:
                raise StanzaError("item-not-found", f"no occupant {nick!r}")
            target_aff = room.affiliation(target.bare)
            if role in ("none", "visitor") and AFF_RANK[target_aff] >= AFF_RANK["admin"]:
                raise StanzaError("not-allowed", "an admin or owner keeps their role")
            if (role == "moderator" or target.role == "moderator") and \
                    AFF_RANK[actor_aff] < AFF_RANK["admin"] and target is not actor:
                raise StanzaError("not-allowed", "only admins grant or revoke moderation")
            role_changes.append((target, role, reason))
        elif aff is not None:
            if aff not in AFF_RANK:
                raise StanzaError("bad-request", f"unknown affiliation {aff!r}")
            if AFF_RANK[actor_aff] < AFF_RANK["admin"]:
                raise StanzaError("forbidden", "only admins and owners change affiliations")
            if "jid" in item.attrs:
                bare = _bare(item.attrs["jid"])
            else:
                target = room.occupants.get(item.attrs.get("nick", ""))
                if target is None:
                    raise StanzaError("item-not-found", "no such occupant")
                bare = target.bare
            current = room.affiliation(bare)
            if actor_aff != "owner" and (AFF_RANK[current] >= AFF_RANK["admin"] or
                                         AFF_RANK[aff] >= AFF_RANK["admin"]):
                raise StanzaError("not-allowed", "only owners change admins and owners")
            nick = item.attrs.get("nick", "")
            if nick:
                holder = room.reserved_by(nick)
                if holder is not None and holder != bare:
                    raise StanzaError("conflict", "this nickname is reserved by another user")
            aff_changes[bare] = None if aff == "none" else Affiliation(aff, nick, reason)
        else:
            raise StanzaError("bad-request", "an item needs a role or an affiliation")
    if aff_changes:
        owners = {b for b, a in room.affiliations.items() if a.affiliation == "owner"}
        for bare, a in aff_changes.items():
            if a is not None and a.affiliation == "owner":
                owners.add(bare)
            else:
                owners.discard(bare)
        if not owners:
            raise StanzaError("conflict", "a room keeps at least one owner")
    actor_nick = actor.nick if actor is not None else ""
    for target, role, reason in role_changes:
        if target.nick not in room.occupants:
            continue
        if role == "none":
            muc.remove_occupant(room, target, ("307",), actor_nick, reason)
        else:
            target.role = role
            room.broadcast_presence(target, actor=actor_nick, reason=reason)
    for bare, a in aff_changes.items():
        if a is None:
            room.affiliations.pop(bare, None)
        else:
            room.affiliations[bare] = a
        _affiliation_changed(muc, room, bare, actor_nick, a.reason if a else "")
    if aff_changes and room.config.persistent:
        await muc.store.set_affiliations(room.name, aff_changes)
    muc.maybe_vanish(room)
    return None


def _affiliation_changed(muc: Service, room: Room, bare: str, actor: str, reason: str) -> None:
    aff = room.affiliation(bare)
    for occ in [o for o in room.occupants.values() if o.bare == bare]:
        if aff == "outcast":
            muc.remove_occupant(room, occ, ("301",), actor, reason)
        elif aff == "none" and room.config.members_only:
            muc.remove_occupant(room, occ, ("321",), actor, reason)
        else:
            occ.role = room.default_role(aff)
            room.broadcast_presence(occ, actor=actor, reason=reason)


def _admin_list(room: Room, item: Element, actor: Occupant | None, actor_aff: str) -> Element:
    q = Element("query", MUC_ADMIN)
    role = item.attrs.get("role")
    aff = item.attrs.get("affiliation")
    if role is not None:
        if role not in ROLE_RANK or role == "none":
            raise StanzaError("bad-request", f"cannot list role {role!r}")
        if actor is None or actor.role != "moderator":
            raise StanzaError("forbidden", "only moderators list roles")
        for occ in room.occupants.values():
            if occ.role == role:
                q.add("item", attrs={"nick": occ.nick, "role": occ.role,
                                     "affiliation": room.affiliation(occ.bare),
                                     "jid": occ.first_jid})
        return q
    if aff is None or aff not in AFF_RANK or aff == "none":
        raise StanzaError("bad-request", "list a role or an affiliation")
    # Members may read who belongs to a members-only room: Conversations and Dino show a
    # private group's members from these lists (Prosody allows it too).
    may = AFF_RANK[actor_aff] >= AFF_RANK["admin"] or (
        room.config.members_only and actor_aff == "member" and aff != "outcast")
    if not may:
        raise StanzaError("forbidden", "you may not list affiliations")
    for bare, a in sorted(room.affiliations.items()):
        if a.affiliation == aff:
            attrs = {"jid": bare, "affiliation": aff}
            if a.nick:
                attrs["nick"] = a.nick
            it = q.add("item", attrs=attrs)
            if a.reason:
                it.add("reason", text=a.reason)
    return q


# -- muc#owner ----------------------------------------------------------------------------------
async def owner_iq(muc: Service, room: Room, el: Element, query: Element, sender: JID,
                   itype: str) -> Element | None:
    if room.affiliation(sender.bare_str) != "owner":
        raise StanzaError("forbidden", "only owners configure a room")
    if itype == "get":
        q = Element("query", MUC_OWNER)
        q.children.append(config_form(room.config, muc.max_users))
        return q
    destroy = query.find("destroy", MUC_OWNER)
    if destroy is not None:
        await destroy_room(muc, room, destroy.attrs.get("jid", ""),
                           destroy.find_text("reason", MUC_OWNER) or "")
        return None
    form = query.find("x", NS.DATA_FORMS)
    if form is None:
        raise StanzaError("bad-request", "a data form or <destroy/> is required")
    ftype = form.attrs.get("type")
    if ftype == "cancel":
        if room.locked:
            await destroy_room(muc, room, "", "")
        return None
    if ftype != "submit":
        raise StanzaError("bad-request", "the form is submitted or cancelled")
    old = room.config
    new = apply_form(old, form, muc.max_users)
    was_locked = room.locked
    room.config = new
    room.locked = False
    if new.persistent and not old.persistent:
        await muc.store.save_all(room.name, new.to_json(), room.subject, room.subject_by,
                                 room.created, room.affiliations)
    elif new.persistent:
        await muc.store.save_room(room.name, new.to_json(), room.subject, room.subject_by,
                                  room.created)
    elif old.persistent:
        await muc.store.delete_room(room.name)
    if new.members_only and not old.members_only:
        for occ in list(room.occupants.values()):
            if room.affiliation(occ.bare) == "none":
                muc.remove_occupant(room, occ, ("322",))
    if new.moderated != old.moderated:
        for occ in room.occupants.values():
            role = room.default_role(room.affiliation(occ.bare))
            if role != occ.role and occ.role != "moderator":
                occ.role = role
                room.broadcast_presence(occ)
    if not was_locked:
        codes = ["104"]
        if new.non_anonymous != old.non_anonymous:
            codes.append("172" if new.non_anonymous else "173")
        if new.archive != old.archive:
            codes.append("170" if new.archive else "171")
        room.status_message(codes)
    muc.maybe_vanish(room)
    return None


async def destroy_room(muc: Service, room: Room, venue: str, reason: str) -> None:
    for occ in list(room.occupants.values()):
        for jid, _, _ in list(occ.resources.values()):
            el = Element("presence", attrs={"from": room.occupant_jid(occ.nick),
                                            "type": "unavailable"})
            x = el.add("x", MUC_USER)
            x.add("item", attrs={"affiliation": "none", "role": "none"})
            d = x.add("destroy")
            if venue:
                d.attrs["jid"] = venue
            if reason:
                d.add("reason", text=reason)
            room.write_to(el, jid)
    muc.remove_room(room)
    room.occupants.clear()
    room.by_jid.clear()
    if room.config.persistent:
        await muc.store.delete_room(room.name)


# -- mediated invitations -----------------------------------------------------------------------
def invitations(muc: Service, room: Room, occ: Occupant | None, el: Element, sender: JID,
                x: Element) -> None:
    for decline in x.find_all("decline", MUC_USER):
        to = decline.attrs.get("to")
        if not to:
            raise StanzaError("bad-request", "a decline names the inviter")
        _bare(to)
        out = Element("message", attrs={"from": room.jid_str, "to": to})
        ox = out.add("x", MUC_USER)
        d = ox.add("decline", attrs={"from": sender.bare_str})
        reason = decline.find_text("reason", MUC_USER)
        if reason:
            d.add("reason", text=reason)
        muc.send(out)
    invites = x.find_all("invite", MUC_USER)
    if not invites:
        return
    if occ is None:
        raise StanzaError("not-acceptable", "you are not in this room")
    aff = room.affiliation(occ.bare)
    privileged = AFF_RANK[aff] >= AFF_RANK["admin"]
    if room.config.members_only and not privileged and not room.config.allow_invites:
        raise StanzaError("forbidden", "only admins invite to this room")
    for invite in invites:
        to = invite.attrs.get("to")
        if not to:
            raise StanzaError("bad-request", "an invitation names the invitee")
        bare = _bare(to)
        if room.config.members_only and room.affiliation(bare) == "none":
            # XEP-0045 §7.8.2: the invitee becomes a member, so that it can enter.
            room.affiliations[bare] = Affiliation("member")
            if room.config.persistent:
                muc.api.spawn(muc.store.set_affiliations(room.name,
                                                         {bare: room.affiliations[bare]}))
        out = Element("message", attrs={"from": room.jid_str, "to": to})
        ox = out.add("x", MUC_USER)
        inv = ox.add("invite", attrs={"from": str(sender)})
        reason = invite.find_text("reason", MUC_USER)
        if reason:
            inv.add("reason", text=reason)
        if room.config.password_protected:
            ox.add("password", text=room.config.password)
        out.add("body", text=f"{sender.bare_str} invites you to the room {room.jid_str}"
                + (f": {reason}" if reason else ""))
        muc.send(out)


# -- registration (§7.10) -----------------------------------------------------------------------
def _may_register(room: Room, aff: str) -> bool:
    """Who may become a member by registering: anyone in an open, unmoderated room (membership
    then only reserves a nick), anyone where the owner allowed it (Hongyan's own room option
    ``hongyan#roomconfig_allowregister``); a member, admin or owner may always change the nick
    it reserved."""
    if AFF_RANK[aff] >= AFF_RANK["member"]:
        return True
    c = room.config
    return c.allow_register or not (c.members_only or c.moderated)


def _register_form() -> Element:
    form = Element("x", NS.DATA_FORMS, {"type": "form"})
    form.add("title", text="Register with the room")
    form.add("instructions", text="Reserve a nickname in this room; you become a member.")
    f = form.add("field", attrs={"var": "FORM_TYPE", "type": "hidden"})
    f.add("value", text=REGISTER)
    f = form.add("field", attrs={"var": "muc#register_roomnick", "type": "text-single",
                                 "label": "Nickname"})
    f.add("required")
    return form


async def register_iq(muc: Service, room: Room, query: Element, sender: JID, itype: str
                      ) -> Element | None:
    bare = sender.bare_str
    aff = room.affiliation(bare)
    if aff == "outcast":
        raise StanzaError("forbidden", "you are banned from this room")
    if itype == "get":
        q = Element("query", IQ_REGISTER)
        nick = room.nick_of(bare)
        if nick and AFF_RANK[aff] >= AFF_RANK["member"]:
            q.add("registered")
            q.add("username", text=nick)
            return q
        if not _may_register(room, aff):
            raise StanzaError("not-allowed", "registration with this room is closed")
        q.add("instructions", text="Reserve a nickname in this room.")
        q.children.append(_register_form())
        return q
    if query.find("remove", IQ_REGISTER) is not None:
        # Unregister: a member becomes none again (admins and owners keep their rank, only
        # the reserved nick goes).
        a = room.affiliations.get(bare)
        if a is None or AFF_RANK[aff] < AFF_RANK["member"]:
            raise StanzaError("item-not-found", "you are not registered with this room")
        new = None if aff == "member" else Affiliation(aff, "", a.reason)
        await _set_affiliation(muc, room, bare, new)
        return None
    form = query.find("x", NS.DATA_FORMS)
    if form is None:
        raise StanzaError("bad-request", "submit the registration form")
    if form.attrs.get("type") == "cancel":
        return None
    values = _form_values(form)
    if values.get("FORM_TYPE", REGISTER) != REGISTER:
        raise StanzaError("bad-request", "not a muc#register form")
    nick = values.get("muc#register_roomnick", "").strip()
    if not nick:
        raise StanzaError("not-acceptable", "a nickname is required")
    try:
        nick = JID.parse(room.occupant_jid(nick)).resource
    except JIDError:
        raise StanzaError("jid-malformed", "not a valid nickname") from None
    holder = room.reserved_by(nick)
    present = room.occupants.get(nick)
    if (holder is not None and holder != bare) or (present is not None and present.bare != bare):
        raise StanzaError("conflict", "this nickname is taken")
    if not _may_register(room, aff):
        raise StanzaError("not-allowed", "registration with this room is closed")
    a = room.affiliations.get(bare)
    await _set_affiliation(muc, room, bare, Affiliation(
        aff if AFF_RANK[aff] >= AFF_RANK["member"] else "member", nick,
        a.reason if a is not None else ""))
    return None


async def _set_affiliation(muc: Service, room: Room, bare: str, a: Affiliation | None) -> None:
    before = room.affiliation(bare)
    if a is None:
        room.affiliations.pop(bare, None)
    else:
        room.affiliations[bare] = a
    if room.affiliation(bare) != before:
        _affiliation_changed(muc, room, bare, "", "")
    if room.config.persistent:
        await muc.store.set_affiliations(room.name, {bare: a})


def _form_values(form: Element) -> dict[str, str]:
    out: dict[str, str] = {}
    for f in form.find_all("field", NS.DATA_FORMS):
        out[f.attrs.get("var", "")] = f.find_text("value", NS.DATA_FORMS) or ""
    return out


def form_type(form: Element) -> str:
    return _form_values(form).get("FORM_TYPE", "")


# -- voice requests (§7.13, §8.6) ---------------------------------------------------------------
def voice_request(muc: Service, room: Room, occ: Occupant | None, form: Element) -> None:
    """A visitor's request (a submitted ``muc#request`` form) goes to the moderators as a form;
    a moderator's submitted form with ``muc#request_allow`` true gives the occupant voice."""
    if occ is None:
        raise StanzaError("not-acceptable", "you are not in this room")
    values = _form_values(form)
    if "muc#request_allow" in values:
        if occ.role != "moderator":
            raise StanzaError("forbidden", "only moderators grant voice")
        if values["muc#request_allow"] not in ("1", "true"):
            return
        target = room.occupants.get(values.get("muc#roomnick", ""))
        if target is None:
            raise StanzaError("item-not-found", "no such occupant")
        if target.role == "visitor":
            target.role = "participant"
            room.broadcast_presence(target, actor=occ.nick)
        return
    if values.get("muc#role", "participant") != "participant":
        raise StanzaError("bad-request", "only voice (participant) can be requested")
    if occ.role != "visitor":
        return  # it has voice already
    out = Element("message", attrs={"from": room.jid_str})
    x = out.add("x", NS.DATA_FORMS, {"type": "form"})
    x.add("title", text="Voice request")
    x.add("instructions", text="To grant voice to this person, set muc#request_allow to true "
                               "and submit the form; to skip the request, do nothing.")
    for var, ftype, label, value in (
            ("FORM_TYPE", "hidden", "", REQUEST),
            ("muc#role", "list-single", "Requested role", "participant"),
            ("muc#jid", "jid-single", "User ID", occ.first_jid),
            ("muc#roomnick", "text-single", "Room nickname", occ.nick),
            ("muc#request_allow", "boolean", "Grant voice to this person?", "false")):
        f = x.add("field", attrs={"var": var, "type": ftype})
        if label:
            f.attrs["label"] = label
        f.add("value", text=value)
    head, tail = spliced(out)
    for o in room.occupants.values():
        if o.role == "moderator":
            room.write(head, tail, o)
