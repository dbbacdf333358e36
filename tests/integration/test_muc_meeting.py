"""Group calls through an external SFU: a room's owner puts a meeting link (a Jitsi Meet or
Galène room URL) in the room configuration (``hongyan#roomconfig_meetingurl``), and everyone
who looks at the room's disco#info finds it in the ``muc#roominfo`` form
(``hongyan#roominfo_meetingurl``). On SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from tests.integration.conftest import Harness
from tests.integration.test_muc import (
    DATA,
    DISCO_INFO,
    MUC_OWNER,
    ROOM,
    C,
    codes,
    condition,
    witch,
)

FIELD = "hongyan#roomconfig_meetingurl"
INFO_FIELD = "hongyan#roominfo_meetingurl"
JITSI = "https://meet.jit.si/CovenOfTheDarkCave"
GALENE = "https://galene.example.org:8443/group/coven/"


def roominfo(info: Any) -> dict[str, str | None]:
    form = info.find(f"{{{DISCO_INFO}}}query/{{{DATA}}}x")
    assert form is not None
    return {f.get("var"): f.findtext(f"{{{DATA}}}value") for f in form}


def submit(value: str) -> str:
    return (f"<query xmlns='{MUC_OWNER}'><x xmlns='{DATA}' type='submit'>"
            f"<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value>"
            f"</field><field var='{FIELD}'><value>{value}</value></field></x></query>")


async def test_owner_sets_a_meeting_link_everyone_sees_it(harness: Harness) -> None:
    crone = await witch(harness, "crone")
    await crone.create(ROOM, "firstwitch", persistentroom="1")
    form = await crone.muc.get_room_config(ROOM)
    assert FIELD in form.field and form.field[FIELD]["value"] == ""
    info = await crone.iq(ROOM, f"<query xmlns='{DISCO_INFO}'/>")
    assert INFO_FIELD not in roominfo(info)  # no link, no field

    form.field[FIELD]["value"] = JITSI
    await crone.muc.set_room_config(ROOM, form)
    # the occupants are told the configuration changed (status 104) and look again
    await crone.expect(lambda el: el.tag == f"{C}message" and "104" in codes(el))
    wiccan = await witch(harness, "wiccan")  # not even in the room
    info = await wiccan.iq(ROOM, f"<query xmlns='{DISCO_INFO}'/>")
    assert roominfo(info)[INFO_FIELD] == JITSI
    form = await crone.muc.get_room_config(ROOM)
    assert form.field[FIELD]["value"] == JITSI

    # only owners configure; a bad link is refused with the form's error
    await wiccan.join(ROOM, "secondwitch")
    res = await wiccan.iq(ROOM, submit(GALENE), "set")
    assert condition(res) == "forbidden"
    for bad in ("javascript:alert(1)", "ftp://files.example.org/x", "https://", "meet.jit.si",
                "https://meet.jit.si/" + "a" * 2100):
        res = await crone.iq(ROOM, submit(bad), "set")
        assert condition(res) == "not-acceptable", bad
    info = await wiccan.iq(ROOM, f"<query xmlns='{DISCO_INFO}'/>")
    assert roominfo(info)[INFO_FIELD] == JITSI

    # a persistent room keeps it across a restart; the owner may change it, or clear it
    res = await crone.iq(ROOM, submit(GALENE), "set")
    assert res.get("type") == "result"
    await harness.restart()
    hag = await witch(harness, "hag")
    info = await hag.iq(ROOM, f"<query xmlns='{DISCO_INFO}'/>")
    assert roominfo(info)[INFO_FIELD] == GALENE
    crone = await witch(harness, "crone")
    res = await crone.iq(ROOM, submit(""), "set")
    assert res.get("type") == "result"
    info = await hag.iq(ROOM, f"<query xmlns='{DISCO_INFO}'/>")
    assert INFO_FIELD not in roominfo(info)
