"""XEP-0045 Multi-User Chat over real sockets, on SQLite and PostgreSQL.

The witches of XEP-0045's examples are slixmpp clients (with its xep_0045 plugin) logged in to the
real server; the room service is conference.localhost."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable
from typing import Any

import pytest
from slixmpp import JID
from slixmpp.exceptions import IqError, PresenceError
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from tests.integration.clients import Client
from tests.integration.conftest import Harness
from tests.integration.waiting import quiet

SERVICE = "conference.localhost"
ROOM = f"coven@{SERVICE}"
MUC = "http://jabber.org/protocol/muc"
MUC_USER = MUC + "#user"
MUC_ADMIN = MUC + "#admin"
MUC_OWNER = MUC + "#owner"
DISCO_INFO = "http://jabber.org/protocol/disco#info"
DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
DATA = "jabber:x:data"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
OCCUPANT_ID = "urn:xmpp:occupant-id:0"
MAM = "urn:xmpp:mam:2"
C = "{jabber:client}"


class Witch:
    """A logged-in client and every message and presence it received, in order."""

    def __init__(self, client: Client) -> None:
        self.c = client
        self.muc = client.plugin["xep_0045"]
        self.jid = str(client.boundjid)
        self.stanzas: asyncio.Queue[Any] = asyncio.Queue()
        for name in ("message", "presence"):
            client.register_handler(Callback(
                f"muc-test-{name}", MatchXPath(f"{C}{name}"),
                lambda st: self.stanzas.put_nowait(st.xml)))

    async def expect(self, pred: Callable[[Any], bool], timeout: float = 10) -> Any:
        """The next stanza matching ``pred`` (others received meanwhile are skipped)."""
        async def find() -> Any:
            while True:
                el = await self.stanzas.get()
                if pred(el):
                    return el
        return await asyncio.wait_for(find(), timeout)

    async def quiet(self, pred: Callable[[Any], bool], wait: float = 0.3) -> None:
        """Nothing matching ``pred`` arrives within ``wait`` seconds."""
        await quiet(self.expect(pred, 60), wait, "stanza")

    def send(self, xml: str) -> None:
        self.c.send_raw(xml)

    async def iq(self, to: str, payload: str, itype: str = "get") -> Any:
        iq = self.c.make_iq_set() if itype == "set" else self.c.make_iq_get()
        iq["to"] = to
        return (await self.c.send_raw_iq(iq, payload, 10)).xml

    async def join(self, room: str, nick: str, **kw: Any) -> Any:
        pres, _subject, _occ, _hist = await self.muc.join_muc_wait(JID(room), nick, timeout=10,
                                                                  **kw)
        return pres.xml

    async def join_error(self, room: str, nick: str, **kw: Any) -> str:
        with pytest.raises(PresenceError) as exc:
            await self.muc.join_muc_wait(JID(room), nick, timeout=10, **kw)
        return str(exc.value.presence["error"]["condition"])

    async def create(self, room: str, nick: str, **config: str) -> Any:
        """Create a room (reserved: fetch the form, change ``config`` fields, submit)."""
        pres = await self.join(room, nick)
        assert codes(pres) >= {"110", "201"}
        form = await self.muc.get_room_config(room)
        for var, value in config.items():
            form.field[f"muc#roomconfig_{var}"]["value"] = value
        await self.muc.set_room_config(room, form)
        return pres


def codes(el: Any) -> set[str]:
    x = el.find(f"{{{MUC_USER}}}x")
    return set() if x is None else {s.get("code") for s in x.findall(f"{{{MUC_USER}}}status")}


def item(el: Any) -> dict[str, str]:
    it = el.find(f"{{{MUC_USER}}}x/{{{MUC_USER}}}item")
    return {} if it is None else dict(it.attrib)


def condition(el: Any) -> str:
    err = el.find(f"{C}error")
    assert err is not None, f"not an error: {el}"
    return next(c.tag.split("}")[1] for c in err if c.tag.startswith(f"{{{STANZAS}}}")
                and not c.tag.endswith("}text"))


def is_presence(frm: str, ptype: str | None = None) -> Callable[[Any], bool]:
    return lambda el: el.tag == f"{C}presence" and el.get("from") == frm and \
        el.get("type") == ptype


def is_message(frm: str | None = None, body: str | None = None,
               mtype: str | None = None) -> Callable[[Any], bool]:
    def pred(el: Any) -> bool:
        return el.tag == f"{C}message" and (frm is None or el.get("from") == frm) and \
            (body is None or el.findtext(f"{C}body") == body) and \
            (mtype is None or el.get("type") == mtype)
    return pred


def features(info: Any) -> set[str]:
    return {f.get("var") for f in info.iter(f"{{{DISCO_INFO}}}feature")}


async def witch(h: Harness, name: str, resource: str = "broom") -> Witch:
    jid = f"{name}@localhost"
    assert h.node is not None
    if not await h.node.accounts.exists(name):
        await h.user(name)
    return Witch(await h.client(f"{jid}/{resource}", plugins=("xep_0045", "xep_0004")))


# -- rooms ---------------------------------------------------------------------------------------
async def test_instant_room_locked_until_configured_then_discoverable(harness: Harness) -> None:
    crone = await witch(harness, "crone")
    wiccan = await witch(harness, "wiccan")
    pres = await crone.join(ROOM, "firstwitch")
    assert codes(pres) == {"110", "201", "170"}  # 170: its messages are archived
    assert item(pres)["affiliation"] == "owner" and item(pres)["role"] == "moderator"
    # Locked: nobody else enters before the owner configures it (XEP-0045 §10.1.1).
    assert await wiccan.join_error(ROOM, "secondwitch") == "item-not-found"
    # Instant room: an empty submitted form accepts the defaults.
    res = await crone.iq(ROOM, f"<query xmlns='{MUC_OWNER}'><x xmlns='{DATA}' type='submit'/>"
                               "</query>", "set")
    assert res.get("type") == "result"
    pres = await wiccan.join(ROOM, "secondwitch")
    assert codes(pres) == {"110", "170"}
    assert item(pres) == {"affiliation": "none", "role": "participant", "jid": wiccan.jid}
    # Service discovery: the server lists the service, the service lists the room.
    items = await crone.iq("localhost", f"<query xmlns='{DISCO_ITEMS}'/>")
    assert SERVICE in {i.get("jid") for i in items.iter(f"{{{DISCO_ITEMS}}}item")}
    sinfo = await crone.iq(SERVICE, f"<query xmlns='{DISCO_INFO}'/>")
    ident = sinfo.find(f"{{{DISCO_INFO}}}query/{{{DISCO_INFO}}}identity")
    assert (ident.get("category"), ident.get("type")) == ("conference", "text")
    assert features(sinfo) == {MUC, DISCO_INFO, DISCO_ITEMS}
    items = await wiccan.iq(SERVICE, f"<query xmlns='{DISCO_ITEMS}'/>")
    assert [i.get("jid") for i in items.iter(f"{{{DISCO_ITEMS}}}item")] == [ROOM]
    info = await wiccan.iq(ROOM, f"<query xmlns='{DISCO_INFO}'/>")
    assert features(info) == {MUC, DISCO_INFO, DISCO_ITEMS, OCCUPANT_ID,
                              MUC + "#self-ping-optimization", "muc_temporary", "muc_public",
                              "muc_open", "muc_unmoderated", "muc_semianonymous",
                              "muc_unsecured", MAM, MAM + "#extended", "urn:xmpp:sid:0",
                              "jabber:iq:register", MUC + "#request"}
    form = info.find(f"{{{DISCO_INFO}}}query/{{{DATA}}}x")
    fields = {f.get("var"): f.findtext(f"{{{DATA}}}value") for f in form}
    assert fields["FORM_TYPE"] == "http://jabber.org/protocol/muc#roominfo"
    assert fields["muc#roominfo_occupants"] == "2"
    # Temporary: gone when the last occupant leaves.
    wiccan.muc.leave_muc(JID(ROOM), "secondwitch")
    crone.muc.leave_muc(JID(ROOM), "firstwitch")
    await crone.expect(is_presence(f"{ROOM}/firstwitch", "unavailable"))
    res = await crone.iq(ROOM, f"<query xmlns='{DISCO_INFO}'/>")
    assert condition(res) == "item-not-found"


async def test_reserved_room_configuration_shows_in_disco(harness: Harness) -> None:
    crone = await witch(harness, "crone")
    form = None
    await crone.join(ROOM, "firstwitch")
    form = await crone.muc.get_room_config(ROOM)
    assert {"muc#roomconfig_roomname", "muc#roomconfig_persistentroom",
            "muc#roomconfig_membersonly", "muc#roomconfig_moderatedroom",
            "muc#roomconfig_passwordprotectedroom", "muc#roomconfig_roomsecret",
            "muc#roomconfig_maxusers", "muc#roomconfig_whois", "muc#roomconfig_allowpm",
            "muc#roomconfig_changesubject", "muc#roomconfig_publicroom",
            "muc#roomconfig_roomdesc"} <= set(form.field)
    form.field["muc#roomconfig_roomname"]["value"] = "A Dark Cave"
    form.field["muc#roomconfig_roomdesc"]["value"] = "The place for witches"
    form.field["muc#roomconfig_persistentroom"]["value"] = True
    form.field["muc#roomconfig_publicroom"]["value"] = False
    form.field["muc#roomconfig_moderatedroom"]["value"] = True
    form.field["muc#roomconfig_passwordprotectedroom"]["value"] = True
    form.field["muc#roomconfig_roomsecret"]["value"] = "cauldronburn"
    form.field["muc#roomconfig_whois"]["value"] = "anyone"
    form.field["muc#roomconfig_maxusers"]["value"] = "20"
    await crone.muc.set_room_config(ROOM, form)
    info = await crone.iq(ROOM, f"<query xmlns='{DISCO_INFO}'/>")
    assert features(info) >= {"muc_persistent", "muc_hidden", "muc_open", "muc_moderated",
                              "muc_nonanonymous", "muc_passwordprotected"}
    ident = info.find(f"{{{DISCO_INFO}}}query/{{{DISCO_INFO}}}identity")
    assert ident.get("name") == "A Dark Cave"
    # Hidden: not listed.
    items = await crone.iq(SERVICE, f"<query xmlns='{DISCO_ITEMS}'/>")
    assert list(items.iter(f"{{{DISCO_ITEMS}}}item")) == []
    # A later change tells the occupants (status 104, and 173 as it becomes semi-anonymous).
    form = await crone.muc.get_room_config(ROOM)
    assert form.field["muc#roomconfig_roomname"]["value"] == "A Dark Cave"
    form.field["muc#roomconfig_whois"]["value"] = "moderators"
    await crone.muc.set_room_config(ROOM, form)
    msg = await crone.expect(lambda el: el.tag == f"{C}message" and codes(el) >= {"104"})
    assert codes(msg) == {"104", "173"}
    # Bad values are refused with the form's error.
    res = await crone.iq(ROOM, f"<query xmlns='{MUC_OWNER}'><x xmlns='{DATA}' type='submit'>"
                               "<field var='muc#roomconfig_whois'><value>everyone</value></field>"
                               "</x></query>", "set")
    assert condition(res) == "not-acceptable"
    # Only owners configure.
    wiccan = await witch(harness, "wiccan")
    res = await wiccan.iq(ROOM, f"<query xmlns='{MUC_OWNER}'/>")
    assert condition(res) == "forbidden"


async def test_destroy_with_reason_and_alternate_venue(harness: Harness) -> None:
    crone = await witch(harness, "crone")
    wiccan = await witch(harness, "wiccan")
    await crone.create(ROOM, "firstwitch", persistentroom="1")
    await wiccan.join(ROOM, "secondwitch")
    await crone.muc.destroy(ROOM, reason="Macbeth doth come.", altroom=f"heath@{SERVICE}")
    gone = await wiccan.expect(is_presence(f"{ROOM}/secondwitch", "unavailable"))
    d = gone.find(f"{{{MUC_USER}}}x/{{{MUC_USER}}}destroy")
    assert d.get("jid") == f"heath@{SERVICE}"
    assert d.findtext(f"{{{MUC_USER}}}reason") == "Macbeth doth come."
    res = await crone.iq(ROOM, f"<query xmlns='{DISCO_INFO}'/>")
    assert condition(res) == "item-not-found"
    await harness.restart()
    crone = await witch(harness, "crone")
    res = await crone.iq(ROOM, f"<query xmlns='{DISCO_INFO}'/>")
    assert condition(res) == "item-not-found"


async def test_persistent_rooms_survive_restart(harness: Harness) -> None:
    crone = await witch(harness, "crone")
    await crone.create(ROOM, "firstwitch", persistentroom="1", membersonly="1",
                       roomname="Cave")
    await crone.muc.set_affiliation(ROOM, "member", jid="wiccan@localhost")
    await crone.muc.set_affiliation(ROOM, "outcast", jid="hag@localhost", reason="rude")
    crone.send(f"<message to='{ROOM}' type='groupchat'><subject>Fire burn</subject></message>")
    await crone.expect(lambda el: el.findtext(f"{C}subject") == "Fire burn")
    await crone.create(f"temp@{SERVICE}", "firstwitch")
    await harness.restart()
    wiccan = await witch(harness, "wiccan")
    hag = await witch(harness, "hag")
    info = await wiccan.iq(ROOM, f"<query xmlns='{DISCO_INFO}'/>")
    assert features(info) >= {"muc_persistent", "muc_membersonly"}
    assert info.find(f"{{{DISCO_INFO}}}query/{{{DISCO_INFO}}}identity").get("name") == "Cave"
    res = await wiccan.iq(f"temp@{SERVICE}", f"<query xmlns='{DISCO_INFO}'/>")
    assert condition(res) == "item-not-found"
    pres = await wiccan.join(ROOM, "secondwitch")
    assert item(pres)["affiliation"] == "member"
    subject = await wiccan.expect(lambda el: el.find(f"{C}subject") is not None)
    assert subject.findtext(f"{C}subject") == "Fire burn"
    assert await hag.join_error(ROOM, "thirdwitch") == "forbidden"
    crone = await witch(harness, "crone")
    await crone.join(ROOM, "firstwitch")
    outcasts = await crone.iq(ROOM, f"<query xmlns='{MUC_ADMIN}'><item affiliation='outcast'/>"
                                    "</query>")
    its = list(outcasts.iter(f"{{{MUC_ADMIN}}}item"))
    assert [(i.get("jid"), i.findtext(f"{{{MUC_ADMIN}}}reason")) for i in its] == \
        [("hag@localhost", "rude")]
    # A deleted account loses its affiliations, for good.
    assert harness.node is not None
    await harness.node.delete_account("wiccan")
    await harness.restart()
    crone = await witch(harness, "crone")
    assert await crone.muc.get_affiliation_list(ROOM, "member") == []
    # Made temporary again: it is forgotten at the next restart.
    await crone.join(ROOM, "firstwitch")
    form = await crone.muc.get_room_config(ROOM)
    form.field["muc#roomconfig_persistentroom"]["value"] = False
    await crone.muc.set_room_config(ROOM, form)
    await harness.restart()
    crone = await witch(harness, "crone")
    res = await crone.iq(ROOM, f"<query xmlns='{DISCO_INFO}'/>")
    assert condition(res) == "item-not-found"


# -- occupants -----------------------------------------------------------------------------------
async def test_join_order_messages_subject_and_leave(harness: Harness) -> None:
    crone = await witch(harness, "crone")
    wiccan = await witch(harness, "wiccan")
    await crone.create(ROOM, "firstwitch", whois="anyone", changesubject="1")
    crone.send(f"<message to='{ROOM}' type='groupchat'><subject>Fire burn</subject></message>")
    await crone.expect(lambda el: el.findtext(f"{C}subject") == "Fire burn")
    wiccan.send(f"<presence to='{ROOM}/secondwitch'><x xmlns='{MUC}'/></presence>")
    # The others' presence first, then its own (110, 100: the room is not anonymous), then the
    # subject.
    first = await wiccan.expect(lambda el: el.tag == f"{C}presence")
    assert first.get("from") == f"{ROOM}/firstwitch"
    assert item(first)["jid"] == crone.jid
    own = await wiccan.expect(lambda el: el.tag == f"{C}presence")
    assert own.get("from") == f"{ROOM}/secondwitch" and codes(own) == {"110", "100", "170"}
    subj = await wiccan.expect(lambda el: el.tag == f"{C}message")
    assert subj.findtext(f"{C}subject") == "Fire burn"
    assert subj.get("from") == f"{ROOM}/firstwitch"
    seen = await crone.expect(is_presence(f"{ROOM}/secondwitch"))
    assert item(seen) == {"affiliation": "none", "role": "participant", "jid": wiccan.jid}
    assert seen.find(f"{{{OCCUPANT_ID}}}occupant-id") is not None
    # A message reaches everyone, the sender too, with its id and an occupant id.
    wiccan.send(f"<message to='{ROOM}' type='groupchat' id='m1'><body>Thrice</body></message>")
    for w in (crone, wiccan):
        m = await w.expect(is_message(f"{ROOM}/secondwitch", "Thrice", "groupchat"))
        assert m.get("id") == "m1"
        assert m.find(f"{{{OCCUPANT_ID}}}occupant-id").get("id")
    # Private message between occupants.
    crone.send(f"<message to='{ROOM}/secondwitch' type='chat'><body>psst</body></message>")
    pm = await wiccan.expect(is_message(f"{ROOM}/firstwitch", "psst", "chat"))
    assert pm.find(f"{{{MUC_USER}}}x") is not None
    # Nick change: unavailable with 303 and the new nick, then available under the new one.
    wiccan.send(f"<presence to='{ROOM}/oldhag'/>")
    old = await crone.expect(is_presence(f"{ROOM}/secondwitch", "unavailable"))
    assert codes(old) == {"303"} and item(old)["nick"] == "oldhag"
    # §7.6: the 303 presence carries the occupant's role (it stays in the room).
    assert item(old)["role"] == "participant"
    await crone.expect(is_presence(f"{ROOM}/oldhag"))
    mine = await wiccan.expect(is_presence(f"{ROOM}/secondwitch", "unavailable"))
    assert codes(mine) == {"303", "110"} and item(mine)["role"] == "participant"
    # Status change, then leave.
    wiccan.send(f"<presence to='{ROOM}/oldhag'><show>away</show></presence>")
    away = await crone.expect(is_presence(f"{ROOM}/oldhag"))
    assert away.findtext(f"{C}show") == "away"
    wiccan.send(f"<presence to='{ROOM}/oldhag' type='unavailable'><status>bye</status>"
                "</presence>")
    left = await crone.expect(is_presence(f"{ROOM}/oldhag", "unavailable"))
    assert left.findtext(f"{C}status") == "bye"
    own = await wiccan.expect(is_presence(f"{ROOM}/oldhag", "unavailable"))
    assert "110" in codes(own)
    # A session that ends leaves its rooms.
    hag = await witch(harness, "hag")
    await hag.join(ROOM, "thirdwitch")
    await hag.c.close()
    await crone.expect(is_presence(f"{ROOM}/thirdwitch", "unavailable"))


async def test_history_on_join(harness: Harness) -> None:
    crone = await witch(harness, "crone")
    await crone.create(ROOM, "firstwitch")
    for i in range(5):
        crone.send(f"<message to='{ROOM}' type='groupchat'><body>m{i}</body></message>")
        await crone.expect(is_message(body=f"m{i}"))

    async def history(name: str, **kw: Any) -> list[str]:
        w = await witch(harness, name)
        _p, _s, _o, hist = await w.muc.join_muc_wait(JID(ROOM), name, timeout=10, **kw)
        for m in hist:
            assert m.xml.find("{urn:xmpp:delay}delay").get("from") == ROOM
        return [m["body"] for m in hist]

    assert await history("a1") == ["m0", "m1", "m2", "m3", "m4"]
    assert await history("a2", maxstanzas=2) == ["m3", "m4"]
    assert await history("a3", maxstanzas=0) == []
    assert await history("a4", seconds=3600) == ["m0", "m1", "m2", "m3", "m4"]
    assert await history("a5", since=datetime.datetime.now(datetime.UTC)
                         + datetime.timedelta(seconds=60)) == []
    # One message: its text, occupant-id and stanza-id, and little more.
    one = len(f"<message from='{ROOM}/firstwitch' type='groupchat'><body>m4</body>")
    got = await history("a6", maxchars=one + 250)
    assert got == ["m4"]


async def test_subject_with_a_thread_is_a_message(harness: Harness) -> None:
    """XEP-0045 §8.1: a <subject/> with a <body/> or a <thread/> is a message, not a subject
    change (and needs no right to change the subject)."""
    crone = await witch(harness, "crone")
    await crone.create(ROOM, "firstwitch")
    crone.send(f"<message to='{ROOM}' type='groupchat'><subject>Fire burn</subject></message>")
    await crone.expect(lambda el: el.findtext(f"{C}subject") == "Fire burn")
    wiccan = await witch(harness, "wiccan")
    await wiccan.join(ROOM, "secondwitch")
    for w, nick in ((crone, "firstwitch"), (wiccan, "secondwitch")):
        w.send(f"<message to='{ROOM}' type='groupchat' id='t-{nick}'><subject>About {nick}"
               "</subject><thread>t1</thread></message>")
        for receiver in (crone, wiccan):
            m = await receiver.expect(lambda el, n=nick: el.get("id") == f"t-{n}")
            assert m.get("type") == "groupchat" and m.get("from") == f"{ROOM}/{nick}"
            assert m.findtext(f"{C}thread") == "t1"
    hag = await witch(harness, "hag")
    _p, subject, _o, _h = await hag.muc.join_muc_wait(JID(ROOM), "thirdwitch", timeout=10)
    assert subject["subject"] == "Fire burn"


async def test_leaving_by_a_former_nick_leaves_no_ghost(harness: Harness) -> None:
    """A client that missed its nick change leaves with an unavailable presence to the nick
    it had: that is a leave (as Prosody treats it), never a ghost left in the room."""
    crone = await witch(harness, "crone")
    await crone.create(ROOM, "firstwitch")
    wiccan = await witch(harness, "wiccan")
    await wiccan.join(ROOM, "secondwitch")
    wiccan.send(f"<presence to='{ROOM}/oldhag'/>")
    await crone.expect(is_presence(f"{ROOM}/oldhag"))
    wiccan.send(f"<presence to='{ROOM}/secondwitch' type='unavailable'/>")
    gone = await crone.expect(is_presence(f"{ROOM}/oldhag", "unavailable"))
    assert item(gone)["role"] == "none" and "303" not in codes(gone)
    own = await wiccan.expect(is_presence(f"{ROOM}/oldhag", "unavailable"))
    assert "110" in codes(own)
    # whoever joins now sees only the owner
    hag = await witch(harness, "hag")
    _p, _s, occupants, _h = await hag.muc.join_muc_wait(JID(ROOM), "thirdwitch", timeout=10)
    assert {str(o["from"]) for o in occupants} == {f"{ROOM}/firstwitch", f"{ROOM}/thirdwitch"}
    # An unavailable presence to a nick the user never had (XEP-0191's, to a blocked
    # occupant) is no leave.
    wiccan.send(f"<presence to='{ROOM}/blocked'><x xmlns='{MUC}'/></presence>")
    await crone.expect(is_presence(f"{ROOM}/blocked"))
    wiccan.send(f"<presence to='{ROOM}/thirdwitch' type='unavailable'/>")
    await crone.quiet(is_presence(f"{ROOM}/blocked", "unavailable"))


async def test_multiple_resources_under_one_nick_and_self_ping(harness: Harness) -> None:
    crone = await witch(harness, "crone")
    await crone.create(ROOM, "firstwitch")
    desk = await witch(harness, "wiccan", "desktop")
    phone = await witch(harness, "wiccan", "phone")
    await desk.join(ROOM, "secondwitch")
    await phone.join(ROOM, "secondwitch")
    crone.send(f"<message to='{ROOM}' type='groupchat'><body>hail</body></message>")
    for w in (desk, phone):
        await w.expect(is_message(f"{ROOM}/firstwitch", "hail"))
    crone.send(f"<message to='{ROOM}/secondwitch' type='chat'><body>pm</body></message>")
    for w in (desk, phone):
        await w.expect(is_message(f"{ROOM}/firstwitch", "pm"))
    # XEP-0410: a ping to one's own occupant JID is answered by the service.
    res = await phone.iq(f"{ROOM}/secondwitch", "<ping xmlns='urn:xmpp:ping'/>")
    assert res.get("type") == "result"
    # One resource leaves: the nick stays in the room.
    phone.muc.leave_muc(JID(ROOM), "secondwitch")
    await phone.expect(is_presence(f"{ROOM}/secondwitch", "unavailable"))
    await crone.quiet(is_presence(f"{ROOM}/secondwitch", "unavailable"))
    res = await phone.iq(f"{ROOM}/secondwitch", "<ping xmlns='urn:xmpp:ping'/>")
    assert condition(res) == "not-acceptable"
    res = await desk.iq(f"{ROOM}/secondwitch", "<ping xmlns='urn:xmpp:ping'/>")
    assert res.get("type") == "result"
    # A join from a resource already in (a client that lost track) gets the join again.
    desk.send(f"<presence to='{ROOM}/secondwitch'><x xmlns='{MUC}'/></presence>")
    own = await desk.expect(is_presence(f"{ROOM}/secondwitch"))
    assert "110" in codes(own)
    await desk.expect(lambda el: el.tag == f"{C}message" and el.find(f"{C}subject") is not None)
    # An IQ to another occupant is forwarded to it and its answer comes back.
    res = await crone.iq(f"{ROOM}/secondwitch", "<ping xmlns='urn:xmpp:ping'/>")
    assert res.get("type") == "result" and res.get("from") == f"{ROOM}/secondwitch"
    await desk.iq("wiccan@localhost", "<vCard xmlns='vcard-temp'><FN>Hecate</FN></vCard>", "set")
    res = await crone.iq(f"{ROOM}/secondwitch", "<vCard xmlns='vcard-temp'/>")
    assert res.get("from") == f"{ROOM}/secondwitch"
    assert res.findtext("{vcard-temp}vCard/{vcard-temp}FN") == "Hecate"
    res = await crone.iq(f"{ROOM}/secondwitch", "<query xmlns='jabber:iq:version'/>")
    assert condition(res) == "feature-not-implemented"  # slixmpp's own answer, passed back


async def test_invitations(harness: Harness) -> None:
    crone = await witch(harness, "crone")
    wiccan = await witch(harness, "wiccan")
    await crone.create(ROOM, "firstwitch", membersonly="1")
    # Mediated: through the room, which makes the invitee a member of a members-only room.
    crone.muc.invite(ROOM, wiccan.jid, reason="Hey Hecate")
    inv = await wiccan.expect(lambda el: el.tag == f"{C}message" and el.get("from") == ROOM)
    i = inv.find(f"{{{MUC_USER}}}x/{{{MUC_USER}}}invite")
    assert i.get("from") == crone.jid
    assert i.findtext(f"{{{MUC_USER}}}reason") == "Hey Hecate"
    pres = await wiccan.join(ROOM, "secondwitch")
    assert item(pres)["affiliation"] == "member"
    # Declined: the room tells the inviter.
    hag = await witch(harness, "hag")
    hag.muc.decline(ROOM, crone.jid, reason="Sorry")
    d = await crone.expect(lambda el: el.find(f"{{{MUC_USER}}}x/{{{MUC_USER}}}decline")
                           is not None)
    assert d.find(f"{{{MUC_USER}}}x/{{{MUC_USER}}}decline").get("from") == "hag@localhost"
    # XEP-0249 direct invitation: a message from user to user, routed as is.
    crone.send(f"<message to='{hag.jid}'><x xmlns='jabber:x:conference' jid='{ROOM}' "
               "reason='come'/></message>")
    direct = await hag.expect(lambda el: el.find("{jabber:x:conference}x") is not None)
    assert direct.find("{jabber:x:conference}x").get("jid") == ROOM
    # A non-occupant cannot invite through the room.
    hag.send(f"<message to='{ROOM}' id='i1'><x xmlns='{MUC_USER}'><invite to='x@localhost'/>"
             "</x></message>")
    err = await hag.expect(lambda el: el.get("type") == "error")
    assert condition(err) == "not-acceptable"


# -- moderation ----------------------------------------------------------------------------------
async def test_kick_ban_voice_and_affiliation_lists(harness: Harness) -> None:
    crone = await witch(harness, "crone")
    wiccan = await witch(harness, "wiccan")
    hag = await witch(harness, "hag")
    await crone.create(ROOM, "firstwitch", moderatedroom="1")
    pres = await wiccan.join(ROOM, "secondwitch")
    assert item(pres)["role"] == "visitor"
    # A visitor in a moderated room has no voice.
    wiccan.send(f"<message to='{ROOM}' type='groupchat' id='v1'><body>hi</body></message>")
    err = await wiccan.expect(lambda el: el.get("id") == "v1")
    assert condition(err) == "forbidden"
    await crone.muc.set_role(ROOM, "secondwitch", "participant")
    granted = await wiccan.expect(is_presence(f"{ROOM}/secondwitch"))
    assert item(granted)["role"] == "participant"
    wiccan.send(f"<message to='{ROOM}' type='groupchat'><body>voiced</body></message>")
    await crone.expect(is_message(f"{ROOM}/secondwitch", "voiced"))
    roles = await crone.iq(ROOM, f"<query xmlns='{MUC_ADMIN}'><item role='participant'/>"
                                 "</query>")
    assert [i.get("nick") for i in roles.iter(f"{{{MUC_ADMIN}}}item")] == ["secondwitch"]
    # Kick: 307 for everyone, 110 too for the kicked.
    await hag.join(ROOM, "thirdwitch")
    await crone.muc.set_role(ROOM, "thirdwitch", "none", reason="Avaunt")
    kicked = await hag.expect(is_presence(f"{ROOM}/thirdwitch", "unavailable"))
    assert codes(kicked) == {"307", "110"}
    seen = await wiccan.expect(is_presence(f"{ROOM}/thirdwitch", "unavailable"))
    assert codes(seen) == {"307"}
    # Ban: 301, on the outcast list, and no way back in.
    await hag.join(ROOM, "thirdwitch")
    await crone.muc.set_affiliation(ROOM, "outcast", jid="hag@localhost", reason="Treason")
    banned = await hag.expect(is_presence(f"{ROOM}/thirdwitch", "unavailable"))
    assert codes(banned) == {"301", "110"}
    assert await hag.join_error(ROOM, "thirdwitch") == "forbidden"
    assert await crone.muc.get_affiliation_list(ROOM, "outcast") == [JID("hag@localhost")]
    # Membership, and its loss in a members-only room (321).
    await crone.muc.set_affiliation(ROOM, "member", jid="wiccan@localhost")
    upd = await wiccan.expect(is_presence(f"{ROOM}/secondwitch"))
    assert item(upd)["affiliation"] == "member"
    form = await crone.muc.get_room_config(ROOM)
    form.field["muc#roomconfig_membersonly"]["value"] = True
    await crone.muc.set_room_config(ROOM, form)
    members = await wiccan.iq(ROOM, f"<query xmlns='{MUC_ADMIN}'><item affiliation='member'/>"
                                    "</query>")
    assert [i.get("jid") for i in members.iter(f"{{{MUC_ADMIN}}}item")] == ["wiccan@localhost"]
    await crone.muc.set_affiliation(ROOM, "none", jid="wiccan@localhost")
    out = await wiccan.expect(is_presence(f"{ROOM}/secondwitch", "unavailable"))
    assert codes(out) == {"321", "110"}
    # Admins and owners, listed by an owner; a member may not list admins of an open room.
    await crone.muc.set_affiliation(ROOM, "admin", jid="hag@localhost")
    assert await crone.muc.get_affiliation_list(ROOM, "admin") == [JID("hag@localhost")]
    assert await crone.muc.get_affiliation_list(ROOM, "owner") == [JID("crone@localhost")]
    pres = await hag.join(ROOM, "thirdwitch")  # no longer banned: an admin, a moderator
    assert (item(pres)["affiliation"], item(pres)["role"]) == ("admin", "moderator")
    # Owners keep their room: the last owner cannot step down.
    with pytest.raises(IqError) as exc:
        await crone.muc.set_affiliation(ROOM, "none", jid="crone@localhost")
    assert exc.value.iq["error"]["condition"] == "conflict"


async def test_voice_request_approved_by_a_moderator(harness: Harness) -> None:
    """XEP-0045 §7.13 and §8.6: a visitor asks for voice, the moderators get a form, one
    approves it by submitting it back."""
    crone = await witch(harness, "crone")
    wiccan = await witch(harness, "wiccan")
    await crone.create(ROOM, "firstwitch", moderatedroom="1")
    await wiccan.join(ROOM, "secondwitch")
    wiccan.muc.request_voice(ROOM, "participant")
    req = await crone.expect(lambda el: el.find(f"{{{DATA}}}x") is not None)
    assert req.get("from") == ROOM
    form = req.find(f"{{{DATA}}}x")
    fields = {f.get("var"): f.findtext(f"{{{DATA}}}value")
              for f in form.iter(f"{{{DATA}}}field")}
    assert fields == {"FORM_TYPE": MUC + "#request", "muc#role": "participant",
                      "muc#jid": wiccan.jid, "muc#roomnick": "secondwitch",
                      "muc#request_allow": "false"}
    # A visitor cannot approve requests.
    approve = (f"<message to='{ROOM}' id='ap'><x xmlns='{DATA}' type='submit'>"
               f"<field var='FORM_TYPE'><value>{MUC}#request</value></field>"
               "<field var='muc#role'><value>participant</value></field>"
               "<field var='muc#roomnick'><value>secondwitch</value></field>"
               "<field var='muc#request_allow'><value>true</value></field></x></message>")
    wiccan.send(approve)
    err = await wiccan.expect(lambda el: el.get("id") == "ap")
    assert condition(err) == "forbidden"
    crone.send(approve)
    granted = await wiccan.expect(is_presence(f"{ROOM}/secondwitch"))
    assert item(granted)["role"] == "participant"
    wiccan.send(f"<message to='{ROOM}' type='groupchat'><body>thanks</body></message>")
    await crone.expect(is_message(f"{ROOM}/secondwitch", "thanks"))
    # Not in the room: not-acceptable.
    hag = await witch(harness, "hag")
    hag.send(f"<message to='{ROOM}' id='vr'><x xmlns='{DATA}' type='submit'>"
             f"<field var='FORM_TYPE'><value>{MUC}#request</value></field></x></message>")
    err = await hag.expect(lambda el: el.get("id") == "vr")
    assert condition(err) == "not-acceptable"


async def test_registration_with_a_room(harness: Harness) -> None:
    """XEP-0045 §7.10: jabber:iq:register on the room reserves a nick and makes a member."""
    reg = "jabber:iq:register"
    crone = await witch(harness, "crone")
    wiccan = await witch(harness, "wiccan")
    hag = await witch(harness, "hag")
    await crone.create(ROOM, "firstwitch", persistentroom="1")
    res = await wiccan.iq(ROOM, f"<query xmlns='{reg}'/>")
    form = res.find(f"{{{reg}}}query/{{{DATA}}}x")
    fields = {f.get("var"): f.findtext(f"{{{DATA}}}value") for f in form
              if f.tag == f"{{{DATA}}}field"}
    assert fields == {"FORM_TYPE": MUC + "#register", "muc#register_roomnick": None}

    def submit(nick: str) -> str:
        return (f"<query xmlns='{reg}'><x xmlns='{DATA}' type='submit'>"
                f"<field var='FORM_TYPE'><value>{MUC}#register</value></field>"
                f"<field var='muc#register_roomnick'><value>{nick}</value></field></x></query>")

    res = await wiccan.iq(ROOM, submit("hecate"), "set")
    assert res.get("type") == "result"
    res = await wiccan.iq(ROOM, f"<query xmlns='{reg}'/>")
    q = res.find(f"{{{reg}}}query")
    assert q.find(f"{{{reg}}}registered") is not None
    assert q.findtext(f"{{{reg}}}username") == "hecate"
    assert await crone.muc.get_affiliation_list(ROOM, "member") == [JID("wiccan@localhost")]
    # The nick is reserved: another user may not take it, nor register it.
    assert await hag.join_error(ROOM, "hecate") == "conflict"
    res = await hag.iq(ROOM, submit("hecate"), "set")
    assert condition(res) == "conflict"
    res = await hag.iq(ROOM, submit(""), "set")
    assert condition(res) == "not-acceptable"
    res = await hag.iq(ROOM, f"<query xmlns='{reg}'/>", "set")
    assert condition(res) == "bad-request"
    # It survives a restart with the room.
    await harness.restart()
    crone = await witch(harness, "crone")
    wiccan = await witch(harness, "wiccan")
    hag = await witch(harness, "hag")
    res = await wiccan.iq(ROOM, f"<query xmlns='{DISCO_INFO}' node='x-roomuser-item'/>")
    assert res.find(f"{{{DISCO_INFO}}}query/{{{DISCO_INFO}}}identity").get("name") == "hecate"
    # A members-only room: closed to newcomers unless its owner allows registration.
    await crone.join(ROOM, "firstwitch")
    form = await crone.muc.get_room_config(ROOM)
    form.field["muc#roomconfig_membersonly"]["value"] = True
    await crone.muc.set_room_config(ROOM, form)
    res = await hag.iq(ROOM, f"<query xmlns='{reg}'/>")
    assert condition(res) == "not-allowed"
    res = await hag.iq(ROOM, submit("maiden"), "set")
    assert condition(res) == "not-allowed"
    res = await wiccan.iq(ROOM, submit("hecate2"), "set")  # a member changes its nick
    assert res.get("type") == "result"
    form = await crone.muc.get_room_config(ROOM)
    form.field["hongyan#roomconfig_allowregister"]["value"] = True
    await crone.muc.set_room_config(ROOM, form)
    res = await hag.iq(ROOM, submit("maiden"), "set")
    assert res.get("type") == "result"
    pres = await hag.join(ROOM, "maiden")
    assert item(pres)["affiliation"] == "member"
    # Unregistering gives the membership up; banned users may not register.
    res = await hag.iq(ROOM, f"<query xmlns='{reg}'><remove/></query>", "set")
    assert res.get("type") == "result"
    out = await hag.expect(is_presence(f"{ROOM}/maiden", "unavailable"))
    assert "321" in codes(out)
    await crone.muc.set_affiliation(ROOM, "outcast", jid="hag@localhost")
    res = await hag.iq(ROOM, submit("maiden"), "set")
    assert condition(res) == "forbidden"


async def test_fan_out_respects_the_recipients_blocklist(harness: Harness) -> None:
    crone = await witch(harness, "crone")
    wiccan = await witch(harness, "wiccan")
    hag = await witch(harness, "hag")
    await crone.create(ROOM, "firstwitch")
    await wiccan.join(ROOM, "secondwitch")
    await hag.join(ROOM, "thirdwitch")
    block = "urn:xmpp:blocking"
    # Wiccan blocks an occupant JID (and stays in the room: the unavailable presence blocking
    # sends to it is not a leave), Hag blocks Crone's real JID.
    await wiccan.iq("wiccan@localhost", f"<block xmlns='{block}'><item jid='{ROOM}/firstwitch'/>"
                                        "</block>", "set")
    await hag.iq("hag@localhost", f"<block xmlns='{block}'><item jid='crone@localhost'/>"
                                  "</block>", "set")
    crone.send(f"<message to='{ROOM}' type='groupchat'><body>unheard</body></message>")
    await crone.expect(is_message(body="unheard"))
    await wiccan.quiet(is_message(body="unheard"))
    await hag.quiet(is_message(body="unheard"))
    wiccan.send(f"<message to='{ROOM}' type='groupchat'><body>heard</body></message>")
    for w in (crone, wiccan, hag):
        await w.expect(is_message(f"{ROOM}/secondwitch", "heard"))
    # A private message to someone who blocks the sender: refused, the block not revealed.
    crone.send(f"<message to='{ROOM}/thirdwitch' type='chat' id='pm1'><body>psst</body>"
               "</message>")
    err = await crone.expect(lambda el: el.get("id") == "pm1")
    assert condition(err) == "service-unavailable"
    await hag.quiet(is_message(body="psst"))
    # Unblocked: the fan-out reaches everyone again.
    await wiccan.iq("wiccan@localhost", f"<unblock xmlns='{block}'/>", "set")
    await hag.iq("hag@localhost", f"<unblock xmlns='{block}'/>", "set")
    crone.send(f"<message to='{ROOM}' type='groupchat'><body>again</body></message>")
    for w in (wiccan, hag):
        await w.expect(is_message(f"{ROOM}/firstwitch", "again"))


async def test_non_members_leave_when_a_room_becomes_members_only(harness: Harness) -> None:
    crone = await witch(harness, "crone")
    wiccan = await witch(harness, "wiccan")
    await crone.create(ROOM, "firstwitch")
    await wiccan.join(ROOM, "secondwitch")
    form = await crone.muc.get_room_config(ROOM)
    form.field["muc#roomconfig_membersonly"]["value"] = True
    await crone.muc.set_room_config(ROOM, form)
    out = await wiccan.expect(is_presence(f"{ROOM}/secondwitch", "unavailable"))
    assert codes(out) == {"322", "110"}
    seen = await crone.expect(is_presence(f"{ROOM}/secondwitch", "unavailable"))
    assert codes(seen) == {"322"}


# -- bad input -----------------------------------------------------------------------------------
async def test_join_refusals(harness: Harness) -> None:
    crone = await witch(harness, "crone")
    wiccan = await witch(harness, "wiccan")
    hag = await witch(harness, "hag")
    await crone.create(f"members@{SERVICE}", "firstwitch", membersonly="1")
    assert await wiccan.join_error(f"members@{SERVICE}", "w") == "registration-required"
    await crone.create(f"secret@{SERVICE}", "firstwitch", passwordprotectedroom="1",
                       roomsecret="cauldronburn")
    assert await wiccan.join_error(f"secret@{SERVICE}", "w", password="nope") == \
        "not-authorized"
    assert await wiccan.join_error(f"secret@{SERVICE}", "w") == "not-authorized"
    await wiccan.join(f"secret@{SERVICE}", "w", password="cauldronburn")
    await crone.create(f"banned@{SERVICE}", "firstwitch")
    await crone.muc.set_affiliation(f"banned@{SERVICE}", "outcast", jid="wiccan@localhost")
    assert await wiccan.join_error(f"banned@{SERVICE}", "w") == "forbidden"
    await crone.create(f"small@{SERVICE}", "firstwitch", maxusers="2")
    await hag.join(f"small@{SERVICE}", "h")
    with pytest.raises(PresenceError) as exc:
        await wiccan.muc.join_muc_wait(JID(f"small@{SERVICE}"), "w", timeout=10)
    assert exc.value.presence["error"]["condition"] == "service-unavailable"
    assert exc.value.presence["error"]["type"] == "wait"
    assert await wiccan.join_error(f"small@{SERVICE}", "h") == "conflict"
    # A nick reserved by a member is theirs.
    await crone.muc.set_affiliation(f"members@{SERVICE}", "member", jid="hag@localhost",
                                    nick="hecate")
    await crone.muc.set_affiliation(f"members@{SERVICE}", "member", jid="wiccan@localhost")
    assert await wiccan.join_error(f"members@{SERVICE}", "hecate") == "conflict"
    res = await hag.iq(f"members@{SERVICE}",
                       f"<query xmlns='{DISCO_INFO}' node='x-roomuser-item'/>")
    assert res.find(f"{{{DISCO_INFO}}}query/{{{DISCO_INFO}}}identity").get("name") == "hecate"
    # No nick at all.
    wiccan.send(f"<presence to='{ROOM}' id='nn'><x xmlns='{MUC}'/></presence>")
    err = await wiccan.expect(lambda el: el.get("id") == "nn")
    assert condition(err) == "jid-malformed"


async def test_occupant_errors(harness: Harness) -> None:
    crone = await witch(harness, "crone")
    wiccan = await witch(harness, "wiccan")
    hag = await witch(harness, "hag")
    await crone.create(ROOM, "firstwitch")
    await wiccan.join(ROOM, "secondwitch")
    # A non-moderator kicking.
    with pytest.raises(IqError) as exc:
        await wiccan.muc.set_role(ROOM, "firstwitch", "none")
    assert exc.value.iq["error"]["condition"] == "forbidden"
    # A message to a room one has not joined.
    hag.send(f"<message to='{ROOM}' type='groupchat' id='e1'><body>hi</body></message>")
    err = await hag.expect(lambda el: el.get("id") == "e1")
    assert condition(err) == "not-acceptable"
    # A private message to an occupant that does not exist.
    wiccan.send(f"<message to='{ROOM}/nobody' type='chat' id='e2'><body>hi</body></message>")
    err = await wiccan.expect(lambda el: el.get("id") == "e2")
    assert condition(err) == "item-not-found"
    # A "private" message of type groupchat (XEP-0045 §7.5: bad-request).
    wiccan.send(f"<message to='{ROOM}/firstwitch' type='groupchat' id='e3'><body>hi</body>"
                "</message>")
    err = await wiccan.expect(lambda el: el.get("id") == "e3")
    assert condition(err) == "bad-request"
    await crone.quiet(is_message(body="hi"))
    # A chat message to the room itself.
    wiccan.send(f"<message to='{ROOM}' type='chat' id='e4'><body>hi</body></message>")
    err = await wiccan.expect(lambda el: el.get("id") == "e4")
    assert condition(err) == "bad-request"
    # A room that does not exist.
    wiccan.send(f"<message to='nowhere@{SERVICE}' type='groupchat' id='e5'><body>x</body>"
                "</message>")
    err = await wiccan.expect(lambda el: el.get("id") == "e5")
    assert condition(err) == "item-not-found"
    # Changing the subject without the right to.
    wiccan.send(f"<message to='{ROOM}' type='groupchat' id='e6'><subject>mine</subject>"
                "</message>")
    err = await wiccan.expect(lambda el: el.get("id") == "e6")
    assert condition(err) == "forbidden"
    # Malformed or unknown requests.
    res = await crone.iq(ROOM, f"<query xmlns='{MUC_ADMIN}'/>", "set")
    assert condition(res) == "bad-request"
    res = await crone.iq(ROOM, f"<query xmlns='{MUC_ADMIN}'><item nick='secondwitch' "
                               "role='emperor'/></query>", "set")
    assert condition(res) == "bad-request"
    res = await crone.iq(ROOM, "<query xmlns='jabber:iq:version'/>")
    assert condition(res) == "service-unavailable"
    res = await crone.iq(ROOM, f"<query xmlns='{MUC_ADMIN}'><item affiliation='member' "
                               "jid='not@@valid'/></query>", "set")
    assert condition(res) == "jid-malformed"
    # Private messages switched off.
    form = await crone.muc.get_room_config(ROOM)
    form.field["muc#roomconfig_allowpm"]["value"] = "none"
    await crone.muc.set_room_config(ROOM, form)
    wiccan.send(f"<message to='{ROOM}/firstwitch' type='chat' id='e7'><body>hi</body></message>")
    err = await wiccan.expect(lambda el: el.get("id") == "e7")
    assert condition(err) == "forbidden"
    # A forged status in a groupchat message is not passed on.
    wiccan.send(f"<message to='{ROOM}' type='groupchat'><body>forged</body>"
                f"<x xmlns='{MUC_USER}'><status code='104'/></x></message>")
    m = await crone.expect(is_message(body="forged"))
    assert m.find(f"{{{MUC_USER}}}x") is None


async def test_host_is_configurable_and_muc_can_be_switched_off(harness: Harness) -> None:
    await harness.stop_node()
    # (the pubsub and upload services, other components, off: the list holds only MUC's)
    harness.extra_config = ('[muc]\nhost = "rooms.localhost"\n[pubsub]\nservice = false\n'
                            '[modules]\ndisabled = ["upload"]\n')
    await harness.start()
    crone = await witch(harness, "crone")
    await crone.create("coven@rooms.localhost", "firstwitch")
    items = await crone.iq("localhost", f"<query xmlns='{DISCO_ITEMS}'/>")
    assert {i.get("jid") for i in items.iter(f"{{{DISCO_ITEMS}}}item")} == {"rooms.localhost"}
    await harness.stop_node()
    harness.extra_config = '[modules]\ndisabled = ["muc", "upload"]\n[pubsub]\nservice = false\n'
    await harness.start()
    crone = await witch(harness, "crone")
    items = await crone.iq("localhost", f"<query xmlns='{DISCO_ITEMS}'/>")
    assert list(items.iter(f"{{{DISCO_ITEMS}}}item")) == []
    res = await crone.iq(SERVICE, f"<query xmlns='{DISCO_INFO}'/>")
    assert condition(res) == "remote-server-not-found"


async def test_occupant_keeps_receiving_after_stream_resumption(harness: Harness) -> None:
    """XEP-0198: an occupant whose connection was cut and who resumed gets the room's
    messages on the resumed stream (the fan-out used to write to the dead session)."""
    from tests.integration.netcut import NetCut
    from tests.integration.test_sm_resume import phone, resume

    hag = await witch(harness, "hag")
    await hag.create(ROOM, "Hag")
    await harness.user("crone")
    relay = NetCut(harness.port)
    await relay.start()
    try:
        crone = Witch(await phone(harness, relay, "crone@localhost/mobile",
                                  ("xep_0045", "xep_0004")))
        await crone.join(ROOM, "Crone")
        hag.send(f"<message to='{ROOM}' type='groupchat'><body>before</body></message>")
        await crone.expect(is_message(f"{ROOM}/Hag", "before", "groupchat"))
        assert relay.last is not None
        relay.last.cut()  # the server does not notice: the next message is lost on the way
        await asyncio.wait_for(crone.c.gone.wait(), 10)
        hag.send(f"<message to='{ROOM}' type='groupchat'><body>while cut</body></message>")
        await hag.expect(is_message(f"{ROOM}/Hag", "while cut", "groupchat"))
        await resume(crone.c, relay)
        await crone.expect(is_message(f"{ROOM}/Hag", "while cut", "groupchat"))
        hag.send(f"<message to='{ROOM}' type='groupchat'><body>after</body></message>")
        await crone.expect(is_message(f"{ROOM}/Hag", "after", "groupchat"))
        # and it still speaks in the room as the same occupant
        crone.send(f"<message to='{ROOM}' type='groupchat'><body>back</body></message>")
        await hag.expect(is_message(f"{ROOM}/Crone", "back", "groupchat"))
    finally:
        await relay.close()
