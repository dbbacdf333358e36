"""RFC 6121 over real sockets: rosters, subscriptions, presence and message routing.

Romeo and Juliet, as in the RFC, are slixmpp clients logged in to the real server."""

from __future__ import annotations

import asyncio
from typing import Any

from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from hongyan.modules.roster import Roster
from tests.integration.clients import Client
from tests.integration.conftest import Harness

ROSTER = "jabber:iq:roster"


def manual(c: Client) -> Client:
    """No automatic answers to subscription requests: the test decides."""
    c.auto_authorize = None
    c.auto_subscribe = False
    return c


async def raw_iq(c: Client, xml: str, itype: str = "get", to: str | None = None) -> Any:
    iq = c.make_iq_set() if itype == "set" else c.make_iq_get()
    if to:
        iq["to"] = to
    return await c.send_raw_iq(iq, xml, 10)


async def roster_items(c: Client) -> dict[str, dict[str, str]]:
    res = await raw_iq(c, f"<query xmlns='{ROSTER}'/>")
    q = res.xml.find(f"{{{ROSTER}}}query")
    return {i.get("jid"): dict(i.attrib) for i in q.findall(f"{{{ROSTER}}}item")}


async def wait_presence(c: Client, frm: str, ptype: str | None = None,
                        timeout: float = 10) -> Any:
    """The first presence from ``frm`` (full or bare) of type ``ptype`` (None = available)
    received and not yet taken; presences that do not match are kept for later waits."""
    seen: list[Any] = c.__dict__.setdefault("unclaimed", [])

    def matches(p: Any) -> bool:
        src = str(p["from"])
        # slixmpp reports an available presence's <show/> as its type
        kind = None if p["type"] in ("available", "", "away", "chat", "dnd", "xa") else p["type"]
        return (src == frm or src.split("/")[0] == frm) and kind == ptype

    for p in seen:
        if matches(p):
            seen.remove(p)
            return p

    async def loop() -> Any:
        while True:
            p = await c.presences.get()
            if matches(p):
                return p
            seen.append(p)

    return await asyncio.wait_for(loop(), timeout)


async def roster_push(c: Client, timeout: float = 10) -> Any:
    q: asyncio.Queue[Any] = c.pushes  # type: ignore[attr-defined]
    return await asyncio.wait_for(q.get(), timeout)


def track_pushes(c: Client) -> Client:
    c.pushes = asyncio.Queue()  # type: ignore[attr-defined]

    def on_iq(iq: Any) -> None:
        q = iq.xml.find(f"{{{ROSTER}}}query")
        if iq["type"] == "set" and q is not None:
            for item in q.findall(f"{{{ROSTER}}}item"):
                c.pushes.put_nowait(dict(item.attrib))  # type: ignore[attr-defined]

    c.register_handler(Callback("roster pushes", MatchXPath(
        f"{{jabber:client}}iq/{{{ROSTER}}}query"), on_iq))
    return c


async def subscribe_both(romeo: Client, juliet: Client) -> None:
    """The full handshake both ways (RFC 6121 §3.1), accepted by each side."""
    for a, b in ((romeo, juliet), (juliet, romeo)):
        a.send_presence(pto=b.boundjid.bare, ptype="subscribe")
        await wait_presence(b, a.boundjid.bare, "subscribe")
        b.send_presence(pto=a.boundjid.bare, ptype="subscribed")
        await wait_presence(a, b.boundjid.bare, "subscribed")
    await wait_presence(romeo, juliet.boundjid.bare)


# ---- roster -----------------------------------------------------------------------------


async def test_roster_add_update_remove_with_pushes_to_every_resource(harness: Harness) -> None:
    await harness.user("romeo")
    a = track_pushes(await harness.client("romeo@localhost/a"))
    b = track_pushes(await harness.client("romeo@localhost/b"))
    await raw_iq(a, f"<query xmlns='{ROSTER}'><item jid='nurse@localhost' name='Nurse'>"
                    "<group>Servants</group></item></query>", "set")
    for c in (a, b):
        push = await roster_push(c)
        assert push["jid"] == "nurse@localhost" and push["name"] == "Nurse"
        assert push["subscription"] == "none"
    await raw_iq(b, f"<query xmlns='{ROSTER}'><item jid='nurse@localhost' name='Angelica'/>"
                    "</query>", "set")
    for c in (a, b):
        assert (await roster_push(c))["name"] == "Angelica"
    items = await roster_items(a)
    assert items["nurse@localhost"]["name"] == "Angelica"
    await raw_iq(a, f"<query xmlns='{ROSTER}'><item jid='nurse@localhost' "
                    "subscription='remove'/></query>", "set")
    assert (await roster_push(b))["subscription"] == "remove"
    assert await roster_items(b) == {}


async def test_roster_versioning(harness: Harness) -> None:
    romeo = await harness.logged_in("romeo")
    res = await raw_iq(romeo, f"<query xmlns='{ROSTER}' ver=''/>")
    ver = res.xml.find(f"{{{ROSTER}}}query").get("ver")
    res = await raw_iq(romeo, f"<query xmlns='{ROSTER}' ver='{ver}'/>")
    assert res.xml.find(f"{{{ROSTER}}}query") is None  # unchanged: empty result
    await raw_iq(romeo, f"<query xmlns='{ROSTER}'><item jid='a@localhost'/></query>", "set")
    res = await raw_iq(romeo, f"<query xmlns='{ROSTER}' ver='{ver}'/>")
    q = res.xml.find(f"{{{ROSTER}}}query")
    assert q.get("ver") != ver and len(q) == 1


async def test_roster_errors(harness: Harness) -> None:
    romeo = await harness.logged_in("romeo")
    cases = [
        ("<item jid='a@localhost'/><item jid='b@localhost'/>", "bad-request"),
        ("<item jid='a b@localhost'/>", "jid-malformed"),
        ("<item jid='ghost@localhost' subscription='remove'/>", "item-not-found"),
        ("<item jid='a@localhost'><group>g</group><group>g</group></item>", "bad-request"),
    ]
    for payload, condition in cases:
        res = await raw_iq(romeo, f"<query xmlns='{ROSTER}'>{payload}</query>", "set")
        assert res["type"] == "error" and res["error"]["condition"] == condition, payload


async def test_roster_for_another_account_is_refused(harness: Harness) -> None:
    await harness.user("juliet")
    romeo = await harness.logged_in("romeo")
    res = await raw_iq(romeo, f"<query xmlns='{ROSTER}'/>", to="juliet@localhost")
    assert res["type"] == "error"


# ---- subscriptions ----------------------------------------------------------------------


async def test_subscription_handshake(harness: Harness) -> None:
    romeo = track_pushes(manual(await harness.logged_in("romeo")))
    juliet = manual(await harness.logged_in("juliet"))
    romeo.send_presence(pto="juliet@localhost", ptype="subscribe")
    push = await roster_push(romeo)
    assert push == {"jid": "juliet@localhost", "subscription": "none", "ask": "subscribe"}
    req = await wait_presence(juliet, "romeo@localhost", "subscribe")
    assert str(req["from"]) == "romeo@localhost"
    juliet.send_presence(pto="romeo@localhost", ptype="subscribed")
    await wait_presence(romeo, "juliet@localhost", "subscribed")
    assert (await roster_push(romeo))["subscription"] == "to"
    await wait_presence(romeo, "juliet@localhost")  # her current presence follows
    assert (await roster_items(juliet))["romeo@localhost"]["subscription"] == "from"
    # the other way round makes it "both"
    juliet.send_presence(pto="romeo@localhost", ptype="subscribe")
    await wait_presence(romeo, "juliet@localhost", "subscribe")
    romeo.send_presence(pto="juliet@localhost", ptype="subscribed")
    assert (await roster_push(romeo))["subscription"] == "both"
    await wait_presence(juliet, "romeo@localhost", "subscribed")
    assert (await roster_items(juliet))["romeo@localhost"]["subscription"] == "both"


async def test_unsubscribe_and_revoke(harness: Harness) -> None:
    romeo = manual(await harness.logged_in("romeo"))
    juliet = manual(await harness.logged_in("juliet"))
    await subscribe_both(romeo, juliet)
    romeo.send_presence(pto="juliet@localhost", ptype="unsubscribe")
    await wait_presence(juliet, "romeo@localhost", "unsubscribe")
    assert (await roster_items(romeo))["juliet@localhost"]["subscription"] == "from"
    assert (await roster_items(juliet))["romeo@localhost"]["subscription"] == "to"
    # Romeo now revokes Juliet's subscription to his presence.
    romeo.send_presence(pto="juliet@localhost", ptype="unsubscribed")
    await wait_presence(juliet, "romeo@localhost", "unsubscribed")
    await wait_presence(juliet, "romeo@localhost/test", "unavailable")
    assert (await roster_items(romeo))["juliet@localhost"]["subscription"] == "none"
    assert (await roster_items(juliet))["romeo@localhost"]["subscription"] == "none"


async def test_denied_request(harness: Harness) -> None:
    romeo = manual(await harness.logged_in("romeo"))
    tybalt = manual(await harness.logged_in("tybalt"))
    romeo.send_presence(pto="tybalt@localhost", ptype="subscribe")
    await wait_presence(tybalt, "romeo@localhost", "subscribe")
    tybalt.send_presence(pto="romeo@localhost", ptype="unsubscribed")
    await wait_presence(romeo, "tybalt@localhost", "unsubscribed")
    item = (await roster_items(romeo))["tybalt@localhost"]
    assert item["subscription"] == "none" and "ask" not in item


async def test_pre_approval(harness: Harness) -> None:
    romeo = manual(await harness.logged_in("romeo"))
    juliet = manual(await harness.logged_in("juliet"))
    juliet.send_presence(pto="romeo@localhost", ptype="subscribed")  # before any request
    await asyncio.sleep(0.2)
    assert (await roster_items(juliet))["romeo@localhost"].get("approved") == "true"
    romeo.send_presence(pto="juliet@localhost", ptype="subscribe")
    await wait_presence(romeo, "juliet@localhost", "subscribed")
    assert (await roster_items(juliet))["romeo@localhost"]["subscription"] == "from"


async def test_request_to_offline_contact_waits_and_survives_restart(harness: Harness) -> None:
    await harness.user("juliet")
    romeo = manual(await harness.logged_in("romeo"))
    romeo.send_presence(pto="juliet@localhost", ptype="subscribe", pstatus="It is I")
    await asyncio.sleep(0.3)
    await harness.restart()
    juliet = await harness.client("juliet@localhost/test", manual=True)
    req = await wait_presence(juliet, "romeo@localhost", "subscribe")
    assert req["status"] == "It is I"
    romeo = await harness.client("romeo@localhost/test", manual=True)
    assert (await roster_items(romeo))["juliet@localhost"]["ask"] == "subscribe"


async def test_states_survive_restart(harness: Harness) -> None:
    romeo = manual(await harness.logged_in("romeo"))
    juliet = manual(await harness.logged_in("juliet"))
    await subscribe_both(romeo, juliet)
    await harness.restart()
    romeo = manual(await harness.client("romeo@localhost/test"))
    assert (await roster_items(romeo))["juliet@localhost"]["subscription"] == "both"


# ---- presence ---------------------------------------------------------------------------


async def test_presence_broadcast_probe_and_unavailable(harness: Harness) -> None:
    romeo = manual(await harness.logged_in("romeo"))
    juliet = manual(await harness.logged_in("juliet"))
    await subscribe_both(romeo, juliet)
    juliet.send_presence(pshow="away", pstatus="on the balcony", ppriority=5)
    p = await wait_presence(romeo, "juliet@localhost/test")
    assert p["show"] == "away" and p["status"] == "on the balcony" and p["priority"] == 5
    # a new resource of Romeo gets Juliet's presence (probe) and his other resource's presence
    romeo2 = await harness.client("romeo@localhost/second")
    p = await wait_presence(romeo2, "juliet@localhost/test")
    assert p["status"] == "on the balcony"
    await wait_presence(romeo2, "romeo@localhost/test")
    # clean disconnect: unavailable to contacts
    await juliet.close()
    await wait_presence(romeo, "juliet@localhost/test", "unavailable")


async def test_probe_is_answered_as_rfc_6121_says(harness: Harness) -> None:
    """RFC 6121 §4.3.2: a probe from a subscriber gets each available resource's presence,
    or unavailable from the bare JID; from anyone else (or for an account that does not
    exist) unsubscribed from the bare JID, which cancels what the prober's side believed."""
    romeo = manual(await harness.logged_in("romeo"))
    juliet = manual(await harness.logged_in("juliet"))
    await subscribe_both(romeo, juliet)
    juliet.send_presence(pstatus="on the balcony")
    await wait_presence(romeo, "juliet@localhost/test")
    romeo.send_presence(pto="juliet@localhost", ptype="probe")
    p = await wait_presence(romeo, "juliet@localhost/test")
    assert p["status"] == "on the balcony" and str(p["to"]) == "romeo@localhost/test"
    await juliet.close()
    await wait_presence(romeo, "juliet@localhost/test", "unavailable")
    romeo.send_presence(pto="juliet@localhost", ptype="probe")
    p = await wait_presence(romeo, "juliet@localhost", "unavailable")
    assert str(p["from"]) == "juliet@localhost"  # the bare JID: no resource is leaked
    # A stranger waiting for approval probes: unsubscribed, and its request is cancelled.
    stranger = manual(await harness.logged_in("stranger"))
    track_pushes(stranger)
    stranger.send_presence(pto="romeo@localhost", ptype="subscribe")
    await wait_presence(romeo, "stranger@localhost", "subscribe")
    assert (await roster_push(stranger))["ask"] == "subscribe"
    stranger.send_presence(pto="romeo@localhost/test", ptype="probe")
    p = await wait_presence(stranger, "romeo@localhost", "unsubscribed")
    assert str(p["from"]) == "romeo@localhost"
    assert "ask" not in (await roster_push(stranger))
    # No presence of Romeo's went to the stranger.
    await asyncio.sleep(0.2)
    while not stranger.presences.empty():
        stranger.__dict__["unclaimed"].append(stranger.presences.get_nowait())
    assert not [p for p in stranger.__dict__["unclaimed"] if str(p["from"]).startswith(
        "romeo@") and p["type"] not in ("unsubscribed", "unavailable")]
    # Sides out of step (Juliet's item for Romeo lost, say from a backup): Romeo's probe
    # brings his side back to none.
    assert harness.node is not None
    roster = harness.node.modules["roster"]
    assert isinstance(roster, Roster)
    await roster.change("juliet", "romeo@localhost",
                        lambda c: c.evolve(subscription="to") if c else None)
    track_pushes(romeo)
    romeo.send_presence(pto="juliet@localhost", ptype="probe")
    await wait_presence(romeo, "juliet@localhost", "unsubscribed")
    assert (await roster_push(romeo))["subscription"] == "from"
    # An account that does not exist answers the same.
    stranger.send_presence(pto="ghost@localhost", ptype="subscribe")
    await roster_push(stranger)
    stranger.send_presence(pto="ghost@localhost", ptype="probe")
    await wait_presence(stranger, "ghost@localhost", "unsubscribed")


async def test_unavailable_when_the_connection_is_cut(harness: Harness) -> None:
    romeo = manual(await harness.logged_in("romeo"))
    juliet = manual(await harness.logged_in("juliet"))
    await subscribe_both(romeo, juliet)
    assert juliet.transport is not None
    juliet.transport.abort()  # no closing tag, just a dead socket
    await wait_presence(romeo, "juliet@localhost/test", "unavailable")


async def test_no_presence_without_subscription(harness: Harness) -> None:
    romeo = await harness.logged_in("romeo")
    stranger = await harness.logged_in("stranger")
    stranger.send_presence(pstatus="hello?")
    romeo.send_presence(pto="stranger@localhost/test", pstatus="directed")  # marker
    p = await wait_presence(stranger, "romeo@localhost/test")
    assert p["status"] == "directed"
    await asyncio.sleep(0.2)
    seen = romeo.__dict__.get("unclaimed", [])
    while not romeo.presences.empty():
        seen.append(romeo.presences.get_nowait())
    assert not [p for p in seen if str(p["from"]).startswith("stranger@")]


async def test_directed_presence_then_unavailable_on_disconnect(harness: Harness) -> None:
    romeo = await harness.logged_in("romeo")
    friar = await harness.logged_in("friar")
    romeo.send_presence(pto="friar@localhost/test", pstatus="a word")
    assert (await wait_presence(friar, "romeo@localhost/test"))["status"] == "a word"
    await romeo.close()
    await wait_presence(friar, "romeo@localhost/test", "unavailable")


# ---- messages ---------------------------------------------------------------------------


async def test_routing_by_priority_and_full_jid(harness: Harness) -> None:
    await harness.user("juliet")
    high = await harness.client("juliet@localhost/high", presence=False)
    low = await harness.client("juliet@localhost/low", presence=False)
    neg = await harness.client("juliet@localhost/neg", presence=False)
    for c, prio in ((high, 10), (low, 0), (neg, -1)):
        c.send_presence(ppriority=prio)
        await asyncio.wait_for(c.get_roster(), 10)
    romeo = await harness.logged_in("romeo")
    romeo.send_message(mto="juliet@localhost", mbody="to all", mtype="chat")
    assert (await high.next_message())["body"] == "to all"
    assert (await low.next_message())["body"] == "to all"
    romeo.send_message(mto="juliet@localhost/neg", mbody="only neg", mtype="chat")
    assert (await neg.next_message())["body"] == "only neg"
    # the negative-priority resource got nothing addressed to the bare JID
    assert neg.messages.empty()
    # an unknown resource falls back to the bare JID rules
    romeo.send_message(mto="juliet@localhost/gone", mbody="fallback", mtype="chat")
    assert (await high.next_message())["body"] == "fallback"
    assert high.messages.empty() and neg.messages.empty()


async def test_message_types(harness: Harness) -> None:
    juliet = await harness.logged_in("juliet")
    romeo = await harness.logged_in("romeo")
    for mtype in ("normal", "chat", "headline"):
        romeo.send_message(mto="juliet@localhost", mbody=mtype, mtype=mtype)
        m = await juliet.next_message()
        assert m["body"] == mtype and m["type"] == mtype
    romeo.send_message(mto="juliet@localhost", mbody="gc", mtype="groupchat")
    err = await romeo.next_message()
    assert err["type"] == "error" and err["error"]["condition"] == "service-unavailable"


async def test_concurrent_roster_writers_lose_nothing(harness: Harness) -> None:
    await harness.user("romeo")
    a = await harness.client("romeo@localhost/a")
    b = await harness.client("romeo@localhost/b")

    async def add(c: Client, prefix: str) -> None:
        await asyncio.gather(*(
            raw_iq(c, f"<query xmlns='{ROSTER}'><item jid='{prefix}{i}@localhost'/></query>",
                   "set") for i in range(20)))

    await asyncio.gather(add(a, "x"), add(b, "y"))
    items = await roster_items(a)
    assert len(items) == 40
    await harness.restart()
    c = await harness.client("romeo@localhost/c")
    assert len(await roster_items(c)) == 40
    assert harness.node is not None
    ver = await harness.node.db.fetchval(
        "SELECT version FROM roster_versions WHERE username=?", "romeo")
    assert ver == 40

