"""XEP-0045 rooms across domains, between two Hongyan nodes (a.test and b.test) federating
over real sockets, with slixmpp clients on both, on SQLite and PostgreSQL: a user of one node
in a room of the other (both ways), messages, private messages, leaving, a remote occupant
gone with its server, and invitations across domains (mediated, XEP-0045 §7.8.2, and direct,
XEP-0249)."""

from __future__ import annotations

from tests.integration.conftest import Harness
from tests.integration.federation import Pair, pair
from tests.integration.test_mam import SID, bodies, query
from tests.integration.test_muc import (
    MUC_USER,
    OCCUPANT_ID,
    C,
    Witch,
    codes,
    is_message,
    is_presence,
    item,
)

__all__ = ["pair"]

ROOM_B = "coven@conference.b.test"
ROOM_A = "hall@conference.a.test"


async def witch(h: Harness, name: str, resource: str = "broom") -> Witch:
    assert h.node is not None
    if not await h.node.accounts.exists(name):
        await h.user(name)
    return Witch(await h.client(f"{name}@{h.domain}/{resource}",
                                plugins=("xep_0045", "xep_0004")))


async def test_remote_occupant_in_a_local_room_and_back(pair: Pair) -> None:
    for room, home, away in ((ROOM_B, pair.b, pair.a), (ROOM_A, pair.a, pair.b)):
        owner = await witch(home, "owner")
        guest = await witch(away, "guest")
        await owner.create(room, "host", whois="anyone")
        # the remote user joins: the others' presence, then its own with 110 and its real
        # JID (the room is not anonymous)
        own = await guest.join(room, "visitor")
        assert "110" in codes(own) and item(own)["jid"] == guest.jid
        seen = await owner.expect(is_presence(f"{room}/visitor"))
        assert item(seen)["jid"] == guest.jid and item(seen)["role"] == "participant"
        assert seen.find(f"{{{OCCUPANT_ID}}}occupant-id") is not None
        # messages both ways, the sender's echo included
        guest.send(f"<message to='{room}' type='groupchat' id='g1'><body>from afar</body>"
                   "</message>")
        for w in (owner, guest):
            m = await w.expect(is_message(f"{room}/visitor", "from afar", "groupchat"))
            assert m.get("id") == "g1"
        owner.send(f"<message to='{room}' type='groupchat'><body>welcome</body></message>")
        await guest.expect(is_message(f"{room}/host", "welcome", "groupchat"))
        # private messages through the room
        owner.send(f"<message to='{room}/visitor' type='chat'><body>psst</body></message>")
        pm = await guest.expect(is_message(f"{room}/host", "psst", "chat"))
        assert pm.find(f"{{{MUC_USER}}}x") is not None
        guest.send(f"<message to='{room}/host' type='chat'><body>hi back</body></message>")
        await owner.expect(is_message(f"{room}/visitor", "hi back", "chat"))
        # leaving
        guest.send(f"<presence to='{room}/visitor' type='unavailable'/>")
        await owner.expect(is_presence(f"{room}/visitor", "unavailable"))
        own = await guest.expect(is_presence(f"{room}/visitor", "unavailable"))
        assert "110" in codes(own)
        # a remote user whose session ends leaves the room too
        await guest.join(room, "again")
        await owner.expect(is_presence(f"{room}/again"))
        await guest.c.close()
        await owner.expect(is_presence(f"{room}/again", "unavailable"))


async def test_remote_occupant_leaves_when_its_server_goes(pair: Pair) -> None:
    owner = await witch(pair.b, "owner")
    guest = await witch(pair.a, "guest")
    await owner.create(ROOM_B, "host")
    await guest.join(ROOM_B, "visitor")
    await owner.expect(is_presence(f"{ROOM_B}/visitor"))
    # a.test stops without its users leaving first
    node = pair.a.node
    assert node is not None
    pair.a.node = None
    await node.stop()
    await owner.expect(is_presence(f"{ROOM_B}/visitor", "unavailable"))


async def test_invitations_across_domains(pair: Pair) -> None:
    owner = await witch(pair.b, "owner")
    member = await witch(pair.b, "member")
    guest = await witch(pair.a, "guest")
    await owner.create(ROOM_B, "host", membersonly="1", allowinvites="1")
    # mediated: the room invites the remote user and makes it a member of a members-only room
    owner.muc.invite(ROOM_B, guest.jid, reason="join us")
    inv = await guest.expect(lambda el: el.tag == f"{C}message" and el.get("from") == ROOM_B)
    i = inv.find(f"{{{MUC_USER}}}x/{{{MUC_USER}}}invite")
    assert i is not None and i.get("from") == owner.jid
    assert i.findtext(f"{{{MUC_USER}}}reason") == "join us"
    pres = await guest.join(ROOM_B, "visitor")
    assert item(pres)["affiliation"] == "member"
    # a remote occupant invites a local user through the room
    guest.muc.invite(ROOM_B, member.jid, reason="you too")
    inv = await member.expect(lambda el: el.tag == f"{C}message" and el.get("from") == ROOM_B)
    i = inv.find(f"{{{MUC_USER}}}x/{{{MUC_USER}}}invite")
    assert i is not None and i.get("from") == guest.jid
    # a remote user declines: the room tells the local inviter
    other = await witch(pair.a, "other")
    owner.muc.invite(ROOM_B, other.jid)
    await other.expect(lambda el: el.tag == f"{C}message" and el.get("from") == ROOM_B)
    other.muc.decline(ROOM_B, owner.jid, reason="busy")
    d = await owner.expect(lambda el: el.find(f"{{{MUC_USER}}}x/{{{MUC_USER}}}decline")
                           is not None)
    dec = d.find(f"{{{MUC_USER}}}x/{{{MUC_USER}}}decline")
    assert dec.get("from") == "other@a.test"
    assert dec.findtext(f"{{{MUC_USER}}}reason") == "busy"
    # XEP-0249 direct invitation: a message from user to user, across domains
    owner.send(f"<message to='{other.jid}'><x xmlns='jabber:x:conference' jid='{ROOM_B}' "
               "reason='come'/></message>")
    direct = await other.expect(lambda el: el.find("{jabber:x:conference}x") is not None)
    assert direct.get("from") == owner.jid
    assert direct.find("{jabber:x:conference}x").get("jid") == ROOM_B
    # and a room at a.test invites a user of b.test
    host = await witch(pair.a, "hostess")
    await host.create(ROOM_A, "hostess")
    host.muc.invite(ROOM_A, member.jid)
    inv = await member.expect(lambda el: el.tag == f"{C}message" and el.get("from") == ROOM_A)
    assert inv.find(f"{{{MUC_USER}}}x/{{{MUC_USER}}}invite").get("from") == host.jid


async def test_remote_user_gets_history_and_queries_the_room_archive(pair: Pair) -> None:
    owner = await witch(pair.b, "owner")
    await owner.create(ROOM_B, "host")
    for t in ("one", "two", "three"):
        owner.send(f"<message to='{ROOM_B}' type='groupchat'><body>{t}</body></message>")
        await owner.expect(is_message(f"{ROOM_B}/host", t, "groupchat"))
    user = await pair.a.user("guest")
    c = await pair.a.client(f"{user}/broom", plugins=("xep_0045", "xep_0004", "xep_0313",
                                                      "xep_0059"))
    guest = Witch(c)
    # history on join (XEP-0045 §7.2.15), with the room's delay stamp
    await guest.join(ROOM_B, "visitor")
    for t in ("one", "two", "three"):
        h = await guest.expect(is_message(f"{ROOM_B}/host", t, "groupchat"))
        assert h.find("{urn:xmpp:delay}delay").get("from") == ROOM_B
    # the room's archive, queried from a.test (what Conversations does on joining)
    _res, results = await query(c, to=ROOM_B)
    assert bodies(results) == ["one", "two", "three"]
    guest.send(f"<message to='{ROOM_B}' type='groupchat'><body>four</body></message>")
    m = await guest.expect(is_message(f"{ROOM_B}/visitor", "four", "groupchat"))
    sids = m.findall(f"{{{SID}}}stanza-id")
    assert [s.get("by") for s in sids] == [ROOM_B]
    _res, results = await query(c, to=ROOM_B)
    assert bodies(results)[-1] == "four" and results[-1].get("id") == sids[0].get("id")
