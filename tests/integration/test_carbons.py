"""XEP-0280 Message Carbons, end to end: slixmpp clients (plugin xep_0280) on real sockets,
on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from slixmpp import JID
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from tests.integration.clients import Client
from tests.integration.conftest import Harness
from tests.integration.netcut import NetCut
from tests.integration.test_sm_resume import phone, resume

CARBONS = "urn:xmpp:carbons:2"
FORWARD = "urn:xmpp:forward:0"
MUC_USER = "http://jabber.org/protocol/muc#user"
SID = "urn:xmpp:sid:0"
C = "{jabber:client}"
WAIT = 5.0


@dataclass
class Device:
    """One resource: the client and every <message/> it receives, in order."""

    client: Client
    inbox: asyncio.Queue[Any]
    jid: str

    async def next(self) -> ET.Element:
        msg = await asyncio.wait_for(self.inbox.get(), WAIT)
        return msg.xml  # type: ignore[no-any-return]

    def send(self, to: str, body: str | None, mtype: str = "chat", extra: str = "") -> None:
        body_xml = "" if body is None else f"<body>{body}</body>"
        self.client.send_raw(f"<message to='{to}' type='{mtype}'>{body_xml}{extra}</message>")

    async def body(self, body: str) -> ET.Element:
        """The next message with this body (others received meanwhile are skipped)."""
        while True:
            el = await self.next()
            if el.findtext(C + "body") == body:
                return el

    async def quiet(self) -> ET.Element | None:
        """None if nothing is waiting for this device: it sends itself a marker (messages to
        one's own JID are never copied) and returns what arrived before it. Anything caused by
        a stanza whose effect the test already saw was written to this socket earlier."""
        self.send(self.jid, "marker", "chat")
        first = await self.next()
        if first.findtext(C + "body") == "marker":
            return None
        return first


async def device(h: Harness, user: str, resource: str, *, enable: bool = True,
                 priority: int | None = None, muc: bool = False) -> Device:
    jid = f"{user}@localhost/{resource}"
    c = await h.client(jid, plugins=("xep_0280", "xep_0045") if muc else ("xep_0280",))
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    c.register_handler(Callback(f"all messages {resource}", MatchXPath(C + "message"),
                                inbox.put_nowait))
    if priority is not None:
        c.send_presence(ppriority=priority)
    if enable:
        result = await c.plugin["xep_0280"].enable(timeout=WAIT)
        assert result["type"] == "result"
    return Device(c, inbox, jid)


def forwarded(carbon: ET.Element, kind: str) -> ET.Element:
    """The original message inside a <sent/> or <received/> carbon."""
    inner = carbon.find(f"{{{CARBONS}}}{kind}/{{{FORWARD}}}forwarded/{C}message")
    assert inner is not None, ET.tostring(carbon)
    return inner


async def users(h: Harness, *names: str) -> None:
    for n in names:
        await h.user(n)


async def test_disco_and_enable_disable(harness: Harness) -> None:
    await users(harness, "alice")
    a = await device(harness, "alice", "a", enable=False)
    info = await a.client.plugin["xep_0030"].get_info(jid=JID("localhost"), timeout=WAIT)
    assert CARBONS in info["disco_info"]["features"]
    # enabling or disabling twice is not an error (§8.1)
    for payload in ("enable", "enable", "disable", "disable"):
        res = await a.client.iq(f"<{payload} xmlns='{CARBONS}' type='set'/>")
        assert res["type"] == "result", res
    res = await a.client.iq(f"<enable xmlns='{CARBONS}' type='set'/>")
    assert res["type"] == "result"


async def test_disco_without_the_module(harness: Harness) -> None:
    await harness.stop_node()
    await harness.start(extra='[modules]\ndisabled = ["carbons"]\n')
    await users(harness, "alice")
    a = await device(harness, "alice", "a", enable=False)
    info = await a.client.plugin["xep_0030"].get_info(jid=JID("localhost"), timeout=WAIT)
    assert CARBONS not in info["disco_info"]["features"]
    res = await a.client.iq(f"<enable xmlns='{CARBONS}' type='set'/>")
    assert res["type"] == "error"
    assert res["error"]["condition"] == "service-unavailable"


async def test_sent_carbons_two_resources(harness: Harness) -> None:
    await users(harness, "alice", "bob")
    a = await device(harness, "alice", "a")
    b = await device(harness, "alice", "b")
    bob = await device(harness, "bob", "phone", enable=False)
    a.send("bob@localhost", "hello bob")
    got = await bob.next()
    assert got.findtext(C + "body") == "hello bob"
    assert got.find(f"{{{CARBONS}}}sent") is None
    carbon = await b.next()
    assert carbon.get("from") == "alice@localhost"
    assert carbon.get("to") == "alice@localhost/b"
    assert carbon.get("type") == "chat"
    inner = forwarded(carbon, "sent")
    assert inner.findtext(C + "body") == "hello bob"
    assert inner.get("from") == "alice@localhost/a"
    assert inner.get("to") == "bob@localhost"
    # the sending session gets no copy of its own message
    assert await a.quiet() is None


async def test_received_carbons_full_jid(harness: Harness) -> None:
    await users(harness, "alice", "bob")
    a = await device(harness, "alice", "a")
    b = await device(harness, "alice", "b")
    bob = await device(harness, "bob", "phone", enable=False)
    bob.send("alice@localhost/a", "to a only")
    got = await a.next()
    assert got.findtext(C + "body") == "to a only"
    assert got.get("from") == "bob@localhost/phone"
    carbon = await b.next()
    assert (carbon.get("from"), carbon.get("to")) == ("alice@localhost", "alice@localhost/b")
    inner = forwarded(carbon, "received")
    assert inner.findtext(C + "body") == "to a only"
    assert inner.get("to") == "alice@localhost/a"
    assert inner.get("from") == "bob@localhost/phone"
    # a got the original, not a copy as well
    assert await a.quiet() is None


async def test_bare_jid_delivered_to_one_resource(harness: Harness) -> None:
    await users(harness, "alice", "bob")
    a = await device(harness, "alice", "a")
    # negative priority: RFC 6121 delivery to the bare JID skips it, carbons do not
    b = await device(harness, "alice", "b", priority=-1)
    bob = await device(harness, "bob", "phone", enable=False)
    bob.send("alice@localhost", "to the bare jid")
    assert (await a.next()).findtext(C + "body") == "to the bare jid"
    carbon = await b.next()
    assert forwarded(carbon, "received").findtext(C + "body") == "to the bare jid"
    assert await a.quiet() is None


async def test_bare_jid_delivered_to_all_resources_gets_no_carbons(harness: Harness) -> None:
    await users(harness, "alice", "bob")
    a = await device(harness, "alice", "a")
    b = await device(harness, "alice", "b")
    bob = await device(harness, "bob", "phone", enable=False)
    bob.send("alice@localhost", "to everyone")
    for d in (a, b):
        assert (await d.next()).findtext(C + "body") == "to everyone"
        assert await d.quiet() is None


async def test_three_resources_and_an_unenabled_one(harness: Harness) -> None:
    await users(harness, "alice", "bob")
    a = await device(harness, "alice", "a")
    b = await device(harness, "alice", "b")
    c = await device(harness, "alice", "c")
    plain = await device(harness, "alice", "plain", enable=False)
    bob = await device(harness, "bob", "phone", enable=False)
    a.send("bob@localhost/phone", "from a")
    assert (await bob.next()).findtext(C + "body") == "from a"
    for d in (b, c):
        assert forwarded(await d.next(), "sent").findtext(C + "body") == "from a"
    bob.send("alice@localhost/b", "to b")
    assert (await b.next()).findtext(C + "body") == "to b"
    for d in (a, c):
        carbon = await d.next()
        assert carbon.get("to") == d.jid
        assert forwarded(carbon, "received").findtext(C + "body") == "to b"
    # the resource that did not enable carbons got neither copy
    assert await plain.quiet() is None
    for d in (a, c):
        assert await d.quiet() is None


async def test_private_and_no_copy(harness: Harness) -> None:
    await users(harness, "alice", "bob")
    a = await device(harness, "alice", "a")
    b = await device(harness, "alice", "b")
    bob = await device(harness, "bob", "phone")
    bob2 = await device(harness, "bob", "laptop")
    a.send("bob@localhost/phone", "secret", extra=f"<private xmlns='{CARBONS}'/>")
    got = await bob.next()
    assert got.findtext(C + "body") == "secret"
    # the receiving server removes <private/> (§7)
    assert got.find(f"{{{CARBONS}}}private") is None
    a.send("bob@localhost/phone", "no copy", extra="<no-copy xmlns='urn:xmpp:hints'/>")
    got = await bob.next()
    assert got.findtext(C + "body") == "no copy"
    assert got.find("{urn:xmpp:hints}no-copy") is not None
    # neither alice's nor bob's other resource got a copy
    assert await b.quiet() is None
    assert await bob2.quiet() is None
    # and the other way round, inbound
    bob.send("alice@localhost/a", "secret back", extra=f"<private xmlns='{CARBONS}'/>")
    got = await a.next()
    assert got.find(f"{{{CARBONS}}}private") is None
    assert await b.quiet() is None
    assert await bob2.quiet() is None


async def test_disable_stops_copies(harness: Harness) -> None:
    await users(harness, "alice", "bob")
    a = await device(harness, "alice", "a")
    b = await device(harness, "alice", "b")
    bob = await device(harness, "bob", "phone", enable=False)
    res = await b.client.plugin["xep_0280"].disable(timeout=WAIT)
    assert res["type"] == "result"
    a.send("bob@localhost", "after disable")
    assert (await bob.next()).findtext(C + "body") == "after disable"
    bob.send("alice@localhost/a", "reply")
    assert (await a.next()).findtext(C + "body") == "reply"
    assert await b.quiet() is None
    # and on again
    await b.client.plugin["xep_0280"].enable(timeout=WAIT)
    a.send("bob@localhost", "enabled again")
    assert forwarded(await b.next(), "sent").findtext(C + "body") == "enabled again"


async def test_type_rules(harness: Harness) -> None:
    await users(harness, "alice", "bob")
    a = await device(harness, "alice", "a")
    b = await device(harness, "alice", "b")
    bob = await device(harness, "bob", "phone", enable=False)
    # not copied: headline, normal without a body, groupchat (bounced: not from a room)
    a.send("bob@localhost/phone", "news", "headline")
    a.send("bob@localhost/phone", None, "normal", "<active xmlns='http://jabber.org/protocol/chatstates'/>")
    bob.send("alice@localhost/a", "headline in", "headline")
    bob.send("alice@localhost/a", "groupchat in", "groupchat")
    assert (await bob.next()).findtext(C + "body") == "news"
    assert (await bob.next()).find("{http://jabber.org/protocol/chatstates}active") is not None
    assert (await a.next()).findtext(C + "body") == "headline in"
    assert (await a.next()).findtext(C + "body") == "groupchat in"
    assert await b.quiet() is None
    # copied: normal with a body
    a.send("bob@localhost/phone", "a normal message", "normal")
    assert (await bob.next()).findtext(C + "body") == "a normal message"
    carbon = await b.next()
    assert carbon.get("type") == "normal"
    assert forwarded(carbon, "sent").findtext(C + "body") == "a normal message"
    # an error in reply to a copied message sent to a bare JID is copied too
    a.send("nobody@localhost", "anyone there?")
    assert forwarded(await b.next(), "sent").findtext(C + "body") == "anyone there?"
    bounce = await a.next()
    assert bounce.get("type") == "error"
    assert bounce.get("from") == "nobody@localhost"
    carbon = await b.next()
    assert carbon.get("type") == "error"
    inner = forwarded(carbon, "received")
    assert inner.get("type") == "error"
    assert inner.find(f"{C}error") is not None


async def test_messages_to_own_jid_are_not_copied(harness: Harness) -> None:
    await users(harness, "alice")
    a = await device(harness, "alice", "a")
    b = await device(harness, "alice", "b")
    c = await device(harness, "alice", "c")
    a.send("alice@localhost", "note to self")
    for d in (a, b, c):
        assert (await d.next()).findtext(C + "body") == "note to self"
    a.send("alice@localhost/b", "to my laptop")
    assert (await b.next()).findtext(C + "body") == "to my laptop"
    assert await c.quiet() is None
    assert await a.quiet() is None


async def test_forged_carbon_is_refused(harness: Harness) -> None:
    await users(harness, "alice", "mallory")
    a = await device(harness, "alice", "a")
    b = await device(harness, "alice", "b")
    mallory = await device(harness, "mallory", "evil", enable=False)
    for kind in ("sent", "received"):
        mallory.client.send_raw(
            f"<message to='alice@localhost/a' type='chat'><{kind} xmlns='{CARBONS}'>"
            f"<forwarded xmlns='{FORWARD}'><message xmlns='jabber:client' type='chat' "
            f"from='bob@localhost/x' to='alice@localhost'><body>forged</body></message>"
            f"</forwarded></{kind}></message>")
        err = await mallory.next()
        assert err.get("type") == "error"
        assert err.find(f"{C}error/{{urn:ietf:params:xml:ns:xmpp-stanzas}}not-acceptable") \
            is not None
    # with a body of its own, a refused forgery is not archived either (the archive keeps
    # only what a hook did not stop)
    mallory.client.send_raw(
        f"<message to='alice@localhost/a' type='chat'><body>look</body>"
        f"<received xmlns='{CARBONS}'><forwarded xmlns='{FORWARD}'><message "
        f"xmlns='jabber:client' type='chat' from='bob@localhost/x' to='alice@localhost'>"
        f"<body>forged</body></message></forwarded></received></message>")
    assert (await mallory.next()).get("type") == "error"
    for d in (a, b):
        assert await d.quiet() is None
    assert harness.node is not None
    mam = harness.node.modules["mam"]
    await mam.flush()  # type: ignore[attr-defined]
    rows, _, _ = await mam.page("alice", {}, 100)  # type: ignore[attr-defined]
    assert rows and not [xml for _, xml in rows if "look" in xml or "forged" in xml]


async def test_offline_full_jid_with_another_resource_online(harness: Harness) -> None:
    await users(harness, "alice", "bob")
    b = await device(harness, "alice", "b")
    c = await device(harness, "alice", "c", priority=-5)
    bob = await device(harness, "bob", "phone", enable=False)
    # alice/gone is offline: the message goes to the bare JID (RFC 6121 §8.5.3.2.1): b gets it
    # once, directly; c (negative priority, carbons on) gets a received-carbon
    bob.send("alice@localhost/gone", "are you there?")
    got = await b.next()
    assert got.findtext(C + "body") == "are you there?"
    assert got.find(f"{{{CARBONS}}}received") is None
    assert forwarded(await c.next(), "received").findtext(C + "body") == "are you there?"
    assert await b.quiet() is None
    assert await c.quiet() is None


async def test_muc_messages(harness: Harness) -> None:
    """Nothing a room sends is copied (groupchat, private messages through the room); a private
    message alice sends into the room is copied to her other devices."""
    await users(harness, "alice", "bob")
    a = await device(harness, "alice", "a", muc=True)
    b = await device(harness, "alice", "b")
    bob = await device(harness, "bob", "phone", enable=False, muc=True)
    room = "coven@conference.localhost"
    await a.client.plugin["xep_0045"].join_muc_wait(JID(room), "alice", timeout=WAIT)
    # an instant room: submit the default configuration (XEP-0045 §10.1.2)
    res = await a.client.send_raw_iq(
        a.client.make_iq_set(ito=room),
        "<query xmlns='http://jabber.org/protocol/muc#owner'>"
        "<x xmlns='jabber:x:data' type='submit'/></query>", WAIT)
    assert res["type"] == "result"
    await bob.client.plugin["xep_0045"].join_muc_wait(JID(room), "bob", timeout=WAIT)
    x = f"<x xmlns='{MUC_USER}'/>"
    bob.send(room, "hello room", "groupchat")
    assert (await a.body("hello room")).get("from") == f"{room}/bob"
    bob.send(f"{room}/alice", "psst alice", "chat", x)
    assert (await a.body("psst alice")).get("from") == f"{room}/bob"
    a.send(room, "hello all", "groupchat")
    await bob.body("hello all")
    assert await b.quiet() is None
    a.send(f"{room}/bob", "psst bob", "chat", x)
    assert (await bob.body("psst bob")).get("from") == f"{room}/alice"
    inner = forwarded(await b.next(), "sent")
    assert inner.get("to") == f"{room}/bob"
    assert inner.findtext(C + "body") == "psst bob"
    assert await b.quiet() is None


async def test_offline_bare_jid_with_a_negative_priority_resource_online(harness: Harness) -> None:
    """No resource takes bare-JID messages (priority < 0): the message is stored offline, and the
    online resource that enabled carbons sees it as a received-carbon."""
    await users(harness, "alice", "bob")
    c = await device(harness, "alice", "c", priority=-1)
    bob = await device(harness, "bob", "phone", enable=False)
    bob.send("alice@localhost", "while you were out")
    carbon = await c.next()
    assert forwarded(carbon, "received").findtext(C + "body") == "while you were out"
    assert await c.quiet() is None
    # offline delivery follows initial presence, before device() registers its inbox handler
    later = await harness.client("alice@localhost/later")
    got = await later.next_message()
    assert got["body"] == "while you were out"
    assert str(got["from"]) == "bob@localhost/phone"


async def test_received_carbon_carries_the_users_stanza_id(harness: Harness) -> None:
    """MAM and carbons: the copy's inner message has the stanza-id of the user's own archive
    (Conversations takes it from there to dedupe MAM catch-up), the same one the delivered
    original has; a sent carbon carries the original as the client sent it."""
    await users(harness, "alice", "bob")
    a = await device(harness, "alice", "a")
    b = await device(harness, "alice", "b")
    bob = await device(harness, "bob", "phone", enable=False)
    bob.send("alice@localhost/a", "archived")
    got = await a.next()
    ids = got.findall(f"{{{SID}}}stanza-id")
    assert [i.get("by") for i in ids] == ["alice@localhost"]
    inner = forwarded(await b.next(), "received")
    copied = inner.findall(f"{{{SID}}}stanza-id")
    assert [(i.get("by"), i.get("id")) for i in copied] == [("alice@localhost", ids[0].get("id"))]
    a.send("bob@localhost/phone", "reply")
    theirs = await bob.next()
    assert [i.get("by") for i in theirs.findall(f"{{{SID}}}stanza-id")] == ["bob@localhost"]
    inner = forwarded(await b.next(), "sent")
    assert inner.findtext(C + "body") == "reply"
    assert inner.findall(f"{{{SID}}}stanza-id") == []


async def test_carbons_survive_stream_resumption(harness: Harness) -> None:
    """A session resumed after a cut connection keeps carbons enabled: copies queued while it
    was away come again, and new ones reach the resumed connection."""
    await users(harness, "alice", "bob")
    relay = NetCut(harness.port)
    await relay.start()
    try:
        c = await phone(harness, relay, "alice@localhost/mobile", ("xep_0280",))
        inbox: asyncio.Queue[Any] = asyncio.Queue()
        c.register_handler(Callback("all messages mobile", MatchXPath(C + "message"),
                                    inbox.put_nowait))
        assert (await c.plugin["xep_0280"].enable(timeout=WAIT))["type"] == "result"
        mobile = Device(c, inbox, "alice@localhost/mobile")
        desk = await device(harness, "alice", "desk")
        bob = await device(harness, "bob", "phone", enable=False)
        bob.send("alice@localhost/desk", "before")
        assert forwarded(await mobile.next(), "received").findtext(C + "body") == "before"
        relay.last.cut()  # the server does not notice: the next copy is lost on the way
        await asyncio.wait_for(c.gone.wait(), WAIT)
        bob.send("alice@localhost/desk", "while cut")
        await desk.body("while cut")
        await resume(c, relay)
        assert forwarded(await mobile.next(), "received").findtext(C + "body") == "while cut"
        bob.send("alice@localhost/desk", "after")
        assert forwarded(await mobile.next(), "received").findtext(C + "body") == "after"
        desk.send("bob@localhost/phone", "from desk")
        assert forwarded(await mobile.next(), "sent").findtext(C + "body") == "from desk"
        assert harness.node is not None
        carbons = harness.node.modules["carbons"]
        assert all(s.jid is not None for s in carbons.users["alice"])  # no stale session
        assert await mobile.quiet() is None
    finally:
        await relay.close()
