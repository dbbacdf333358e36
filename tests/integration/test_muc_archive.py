"""Room archives (XEP-0313 on the room, XEP-0359 stanza ids) and members who are offline, over
real sockets with slixmpp clients, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

from slixmpp import JID

from hongyan.modules.events import MucMemberMissedMessage
from hongyan.xmpp.stamps import parse_xmpp_datetime, xmpp_datetime
from tests.integration.conftest import Harness
from tests.integration.test_mam import bodies, field, fin, query
from tests.integration.test_muc import (
    DISCO_INFO,
    ROOM,
    SERVICE,
    Witch,
    codes,
    features,
    is_message,
    witch,
)
from tests.integration.test_push import app_server, enable_xml, iq_set

MAM = "urn:xmpp:mam:2"
SID = "urn:xmpp:sid:0"
FWD = "urn:xmpp:forward:0"
C = "{jabber:client}"


def sid(el: Any, room: str = ROOM) -> str:
    s = el.findall(f"{{{SID}}}stanza-id")
    assert len(s) == 1 and s[0].get("by") == room, el
    return str(s[0].get("id"))


async def say(w: Witch, *texts: str, room: str = ROOM) -> list[str]:
    """Send groupchat messages; return their stanza-ids as reflected to the sender."""
    ids = []
    for t in texts:
        w.send(f"<message to='{room}' type='groupchat'><body>{t}</body></message>")
        ids.append(sid(await w.expect(is_message(body=t, mtype="groupchat")), room))
    return ids


async def test_room_archive_stanza_ids_and_queries(harness: Harness) -> None:
    crone = await witch(harness, "crone")
    wiccan = await witch(harness, "wiccan")
    pres = await crone.join(ROOM, "firstwitch")
    assert codes(pres) == {"110", "201", "170"}  # 170: the room is archived
    await crone.iq(ROOM, "<query xmlns='http://jabber.org/protocol/muc#owner'>"
                         "<x xmlns='jabber:x:data' type='submit'/></query>", "set")
    await wiccan.join(ROOM, "secondwitch")
    info = await wiccan.iq(ROOM, f"<query xmlns='{DISCO_INFO}'/>")
    assert {MAM, MAM + "#extended", SID} <= features(info)
    # Every recipient gets the same stanza-id, by the room; a forged one is removed.
    wiccan.send(f"<message to='{ROOM}' type='groupchat'><body>m0</body>"
                f"<stanza-id xmlns='{SID}' by='{ROOM}' id='forged'/></message>")
    got = await crone.expect(is_message(body="m0"))
    mine = await wiccan.expect(is_message(body="m0"))
    assert sid(got) == sid(mine) != "forged"
    ids = [sid(got)] + await say(crone, *(f"m{i}" for i in range(1, 10)))
    # Not archived: a no-store hint, a subject change.
    crone.send(f"<message to='{ROOM}' type='groupchat'><body>secret</body>"
               "<no-store xmlns='urn:xmpp:hints'/></message>")
    nostore = await crone.expect(is_message(body="secret"))
    assert nostore.find(f"{{{SID}}}stanza-id") is None
    # Not archived: a chat state alone.
    crone.send(f"<message to='{ROOM}' type='groupchat' id='cs'>"
               "<composing xmlns='http://jabber.org/protocol/chatstates'/></message>")
    cs = await crone.expect(lambda el: el.get("id") == "cs")
    assert cs.find(f"{{{SID}}}stanza-id") is None
    # The whole archive, from the room.
    res, results = await query(wiccan.c, to=ROOM)
    assert bodies(results) == [f"m{i}" for i in range(10)]
    assert [r.get("id") for r in results] == ids
    assert fin(res) == (True, ids[0], ids[-1], 10)
    fwd = results[0].find(f"{{{FWD}}}forwarded")
    assert fwd.find(f"{C}message").get("from") == f"{ROOM}/secondwitch"
    assert fwd.find("{urn:xmpp:delay}delay") is not None
    # Paging forward and backward (RSM).
    res, results = await query(wiccan.c, rsm="<max>3</max>", to=ROOM)
    assert bodies(results) == ["m0", "m1", "m2"] and not fin(res)[0]
    res, results = await query(wiccan.c, rsm=f"<max>3</max><after>{ids[2]}</after>", to=ROOM)
    assert bodies(results) == ["m3", "m4", "m5"]
    res, results = await query(wiccan.c, rsm="<max>3</max><before/>", to=ROOM)
    assert bodies(results) == ["m7", "m8", "m9"] and not fin(res)[0]
    res, results = await query(wiccan.c, rsm=f"<max>3</max><before>{ids[7]}</before>", to=ROOM)
    assert bodies(results) == ["m4", "m5", "m6"]
    # with (an occupant), before-id / after-id, ids, start / end.
    res, results = await query(wiccan.c, field("with", f"{ROOM}/secondwitch"), to=ROOM)
    assert bodies(results) == ["m0"]
    res, results = await query(wiccan.c, field("after-id", ids[7]), to=ROOM)
    assert bodies(results) == ["m8", "m9"]
    res, results = await query(wiccan.c, field("before-id", ids[2]), to=ROOM)
    assert bodies(results) == ["m0", "m1"]
    res, results = await query(wiccan.c, field("ids", ids[3], ids[5]), to=ROOM)
    assert bodies(results) == ["m3", "m5"]
    stamp = xmpp_datetime(int(ids[5]) / 1_000_000)
    res, results = await query(wiccan.c, field("start", stamp), to=ROOM)
    since = int(parse_xmpp_datetime(stamp) * 1_000_000)
    assert bodies(results) == [f"m{i}" for i, x in enumerate(ids) if int(x) >= since]
    assert "m5" in bodies(results)
    res, results = await query(wiccan.c, field("end", xmpp_datetime(0)), to=ROOM)
    assert results == [] and fin(res)[3] == 0
    # Bad input.
    res, _ = await query(wiccan.c, field("after-id", "12345"), to=ROOM)
    assert res["type"] == "error" and res["error"]["condition"] == "item-not-found"
    res, _ = await query(wiccan.c, field("nonsense", "x"), to=ROOM)
    assert res["error"]["condition"] == "bad-request"
    # The real JID filter only where real JIDs are shown (semi-anonymous here).
    res, _ = await query(wiccan.c, field("with", "crone@localhost"), to=ROOM)
    assert res["error"]["condition"] == "not-allowed"
    res, results = await query(crone.c, field("with", "wiccan@localhost"), to=ROOM)
    assert bodies(results) == ["m0"]
    # A reaction has no body, and is archived (clients catch up on reactions too).
    crone.send(f"<message to='{ROOM}' type='groupchat' id='re'><reactions "
               f"xmlns='urn:xmpp:reactions:0' id='{ids[9]}'><reaction>+1</reaction>"
               "</reactions></message>")
    reaction = await wiccan.expect(lambda el: el.get("id") == "re")
    res, results = await query(wiccan.c, field("after-id", ids[9]), to=ROOM)
    assert [r.get("id") for r in results] == [sid(reaction)]
    # The query form.
    form = await wiccan.iq(ROOM, f"<query xmlns='{MAM}'/>")
    assert form.find(f"{{{MAM}}}query/{{jabber:x:data}}x") is not None
    # Archive metadata (XEP-0313 §6, promised by #extended): the first and last message.
    md = (await wiccan.iq(ROOM, f"<metadata xmlns='{MAM}'/>")).find(f"{{{MAM}}}metadata")
    assert md.find(f"{{{MAM}}}start").get("id") == ids[0]
    assert md.find(f"{{{MAM}}}end").get("id") == sid(reaction)
    assert md.find(f"{{{MAM}}}start").get("timestamp") == xmpp_datetime(int(ids[0]) / 1e6)
    # an outsider of a members-only room, and a room not archived, are not told
    await crone.create(f"closed@{SERVICE}", "firstwitch", membersonly="1")
    res = await wiccan.iq(f"closed@{SERVICE}", f"<metadata xmlns='{MAM}'/>")
    assert res.get("type") == "error"
    await crone.create(f"unlogged@{SERVICE}", "firstwitch", enablearchiving="0")
    res = await wiccan.iq(f"unlogged@{SERVICE}", f"<metadata xmlns='{MAM}'/>")
    assert res.get("type") == "error"
    # an empty archive has neither end
    await crone.create(f"empty@{SERVICE}", "firstwitch")
    md = (await wiccan.iq(f"empty@{SERVICE}", f"<metadata xmlns='{MAM}'/>")).find(
        f"{{{MAM}}}metadata")
    assert md is not None and len(md) == 0


async def test_archive_access_switch_restart_and_deletion(harness: Harness) -> None:
    crone = await witch(harness, "crone")
    hag = await witch(harness, "hag")
    await crone.create(ROOM, "firstwitch", persistentroom="1")
    await say(crone, "open1")
    # An open room: anyone who could join reads its archive, an outcast does not.
    res, results = await query(hag.c, to=ROOM)
    assert bodies(results) == ["open1"]
    await crone.muc.set_affiliation(ROOM, "outcast", jid="hag@localhost")
    res, _ = await query(hag.c, to=ROOM)
    assert res["error"]["condition"] == "forbidden"
    # Archiving switched off: announced (171), not advertised, no stanza-ids, no queries.
    form = await crone.muc.get_room_config(ROOM)
    assert form.field["muc#roomconfig_enablearchiving"]["value"] is True
    form.field["muc#roomconfig_enablearchiving"]["value"] = False
    await crone.muc.set_room_config(ROOM, form)
    msg = await crone.expect(lambda el: el.tag == f"{C}message" and "104" in codes(el))
    assert codes(msg) == {"104", "171"}
    info = await crone.iq(ROOM, f"<query xmlns='{DISCO_INFO}'/>")
    assert MAM not in features(info)
    crone.send(f"<message to='{ROOM}' type='groupchat'><body>unlogged</body></message>")
    m = await crone.expect(is_message(body="unlogged"))
    assert m.find(f"{{{SID}}}stanza-id") is None
    res, _ = await query(crone.c, to=ROOM)
    assert res["error"]["condition"] == "service-unavailable"
    # ejabberd's field name is understood too.
    res = await crone.iq(ROOM, "<query xmlns='http://jabber.org/protocol/muc#owner'>"
                               "<x xmlns='jabber:x:data' type='submit'><field var='mam'>"
                               "<value>1</value></field></x></query>", "set")
    assert res.get("type") == "result"
    msg = await crone.expect(lambda el: el.tag == f"{C}message" and "104" in codes(el))
    assert codes(msg) == {"104", "170"}
    await say(crone, "open2")
    # The archive survives a restart.
    await harness.restart()
    crone = await witch(harness, "crone")
    res, results = await query(crone.c, to=ROOM)
    assert bodies(results) == ["open1", "open2"]
    # ... and goes with the room: a new room of the same name starts empty.
    await crone.join(ROOM, "firstwitch")
    await crone.muc.destroy(ROOM)
    await crone.create(ROOM, "firstwitch")
    res, results = await query(crone.c, to=ROOM)
    assert results == [] and fin(res)[3] == 0
    # A temporary room's archive goes when it empties.
    await say(crone, "temp")
    crone.muc.leave_muc(JID(ROOM), "firstwitch")
    await crone.expect(lambda el: el.tag == f"{C}presence" and el.get("type") == "unavailable")
    assert harness.node is not None
    await harness.node.modules["muc"].archive.flush()  # type: ignore[attr-defined]
    await crone.create(ROOM, "firstwitch")
    res, results = await query(crone.c, to=ROOM)
    assert results == []


async def test_offline_member_catches_up_and_is_reported(harness: Harness) -> None:
    """Item 4: a member of a persistent members-only room who is away gets every message it
    missed from the room's archive when it comes back, and each missed message fires
    MucMemberMissedMessage (what push notifications subscribe to)."""
    assert harness.node is not None
    missed: list[MucMemberMissedMessage] = []
    harness.node.hooks.on(MucMemberMissedMessage, missed.append)
    crone = await witch(harness, "crone")
    wiccan = await witch(harness, "wiccan")
    hag = await witch(harness, "hag")
    await crone.create(ROOM, "firstwitch", persistentroom="1", membersonly="1")
    await crone.muc.set_affiliation(ROOM, "member", jid="wiccan@localhost")
    await wiccan.join(ROOM, "secondwitch")
    seen = await say(crone, "before")
    await wiccan.expect(is_message(body="before"))
    # A non-member may not read the archive of a members-only room.
    res, _ = await query(hag.c, to=ROOM)
    assert res["error"]["condition"] == "forbidden"
    assert missed == []  # the only member, wiccan, was there
    # Wiccan goes away (its client closes); the room goes on.
    await wiccan.c.close()
    await crone.expect(lambda el: el.tag == f"{C}presence" and el.get("type") == "unavailable")
    await say(crone, "while", "you", "were", "away")
    assert [(str(e.room_jid), str(e.member_bare_jid), e.sender_nick, e.body) for e in missed] \
        == [(ROOM, "wiccan@localhost", "firstwitch", b)
            for b in ("while", "you", "were", "away")]
    assert missed[0].stanza.find_text("body") == "while"
    # Non-members and temporary rooms fire nothing.
    await crone.create(f"open@{SERVICE}", "firstwitch", persistentroom="1")
    await say(crone, "public", room=f"open@{SERVICE}")
    assert len(missed) == 4
    # Back: its client catches up from the room's archive, before joining, from the last
    # stanza-id it saw (Conversations and Dino do this) or from a time.
    wiccan = await witch(harness, "wiccan")
    res, results = await query(wiccan.c, field("after-id", seen[-1]), to=ROOM)
    assert bodies(results) == ["while", "you", "were", "away"] and fin(res)[0]
    res, results = await query(wiccan.c, rsm="<max>2</max><before/>", to=ROOM)
    assert bodies(results) == ["were", "away"]
    # Joined again, it is no longer reported.
    await wiccan.join(ROOM, "secondwitch", maxchars=0)
    await say(crone, "welcome back")
    assert len(missed) == 4


async def test_offline_member_gets_a_push_notification(harness: Harness) -> None:
    """Item 4 with the push module: a member who enabled push (XEP-0357) and has no client in
    its private group is notified of each message there, from the occupant's JID."""
    app = await app_server(harness)
    crone = await witch(harness, "crone")
    wiccan = await witch(harness, "wiccan")
    await crone.create(ROOM, "firstwitch", persistentroom="1", membersonly="1")
    await crone.muc.set_affiliation(ROOM, "member", jid="wiccan@localhost")
    res = await iq_set(wiccan.c, enable_xml())
    assert res["type"] == "result"
    await wiccan.join(ROOM, "secondwitch")
    await say(crone, "present")
    await app.nothing(0.3)  # there: no notification
    await wiccan.c.close()
    await crone.expect(lambda el: el.tag == f"{C}presence" and el.get("type") == "unavailable")
    await say(crone, "wake up")
    n = await app.next()
    assert n.sender == "wiccan@localhost" and n.node == "n1"
    assert n.summary is not None
    assert n.summary["last-message-sender"] == f"{ROOM}/firstwitch"
    assert n.summary["message-count"] == "1"


async def test_member_with_a_dropped_connection_gets_a_push_notification(
        harness: Harness) -> None:
    """A member whose phone lost its connection (its stream waits for XEP-0198 resumption,
    still an occupant) is notified by push, and gets the message when it resumes."""
    from hongyan.xmpp.jid import JID
    from tests.integration.netcut import NetCut
    from tests.integration.test_sm_resume import phone, resume
    from tests.integration.waiting import until

    app = await app_server(harness)
    crone = await witch(harness, "crone")
    await crone.create(ROOM, "firstwitch", persistentroom="1", membersonly="1")
    await harness.user("wiccan")
    await crone.muc.set_affiliation(ROOM, "member", jid="wiccan@localhost")
    relay = NetCut(harness.port)
    await relay.start()
    try:
        wiccan = Witch(await phone(harness, relay, "wiccan@localhost/mobile",
                                   ("xep_0045", "xep_0004")))
        res = await iq_set(wiccan.c, enable_xml())
        assert res["type"] == "result"
        await wiccan.join(ROOM, "secondwitch")
        await say(crone, "present")
        await wiccan.expect(is_message(body="present"))
        await app.nothing(0.3)  # connected: no notification
        relay.last.cut(server_notices=True)
        await asyncio.wait_for(wiccan.c.gone.wait(), 10)
        assert harness.node is not None
        session = harness.node.sessions.resources(JID("wiccan", "localhost"))[0]
        await until(lambda: session.sm is not None and session.sm.timer is not None)
        await say(crone, "wake up")  # queued to the hibernated stream
        n = await app.next()
        assert n.sender == "wiccan@localhost" and n.summary is not None
        assert n.summary["last-message-sender"] == f"{ROOM}/firstwitch"
        assert n.summary["message-count"] == "1"
        await resume(wiccan.c, relay)
        await wiccan.expect(is_message(body="wake up"))
    finally:
        await relay.close()
