"""What users do across domains, between two Hongyan nodes (a.test and b.test) federating
over real sockets, with slixmpp clients on both, on SQLite and PostgreSQL: carbons and MAM of
remote conversations, presence when the remote node goes away, PEP (avatars, OMEMO device
lists and bundles) and vCards of remote contacts, blocking remote JIDs."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import xml.etree.ElementTree as ET

from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from hongyan.server.session import BOUND
from tests.integration.clients import Client
from tests.integration.federation import Pair, pair
from tests.integration.pepkit import (
    EVENT,
    PUBSUB,
    TUNE,
    Events,
    error_of,
    item_ids,
    pep_client,
    raw,
    tune,
)
from tests.integration.test_avatar import photo_in_presence, vcard_photo
from tests.integration.test_carbons import CARBONS, forwarded
from tests.integration.test_im import manual, roster_items, subscribe_both, wait_presence
from tests.integration.test_mam import SID, bodies, query

__all__ = ["pair"]

C = "{jabber:client}"
TIMEOUT = 10.0
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
DEVICELIST = "eu.siacs.conversations.axolotl.devicelist"
BUNDLES = "eu.siacs.conversations.axolotl.bundles"
AXOLOTL = "eu.siacs.conversations.axolotl"
METADATA = "urn:xmpp:avatar:metadata"
DATA = "urn:xmpp:avatar:data"
VCARD = "vcard-temp"
BLOCKING = "urn:xmpp:blocking"
BLOCKING_ERRORS = BLOCKING + ":errors"


class Inbox:
    """Every <message/> a client receives, as raw XML, in order."""

    def __init__(self, c: Client) -> None:
        self.c = c
        self.queue: asyncio.Queue[ET.Element] = asyncio.Queue()
        c.register_handler(Callback(f"inbox {c.boundjid}", MatchXPath(C + "message"),
                                    lambda m: self.queue.put_nowait(m.xml)))

    async def next(self, timeout: float = TIMEOUT) -> ET.Element:
        return await asyncio.wait_for(self.queue.get(), timeout)

    async def body(self, body: str, timeout: float = TIMEOUT) -> ET.Element:
        """The next message with this body, or a carbon of one (others are skipped)."""
        async def find() -> ET.Element:
            while True:
                el = await self.queue.get()
                if el.findtext(C + "body") == body or any(
                        m.findtext(C + "body") == body for m in el.iter(C + "message")
                        if m is not el):
                    return el
        return await asyncio.wait_for(find(), timeout)


async def carbons_on(c: Client) -> None:
    res = await c.iq(f"<enable xmlns='{CARBONS}' type='set'/>")
    assert res["type"] == "result", res


def error_condition(el: ET.Element) -> tuple[str, str | None]:
    """(stanza error condition, application condition) of an error stanza."""
    err = el.find(C + "error")
    assert err is not None, ET.tostring(el)
    cond = next(c.tag.split("}")[1] for c in err if c.tag.startswith(f"{{{STANZAS}}}")
                and not c.tag.endswith("}text"))
    app = next((c.tag for c in err if not c.tag.startswith(f"{{{STANZAS}}}")), None)
    return cond, app


# ---- carbons and MAM ------------------------------------------------------------------------


async def test_carbons_of_a_remote_conversation(pair: Pair) -> None:
    await pair.a.user("alice")
    await pair.b.user("bob")
    phone = await pair.a.client("alice@a.test/phone", plugins=("xep_0280",))
    laptop = await pair.a.client("alice@a.test/laptop", plugins=("xep_0280",))
    bob = await pair.b.client("bob@b.test/test")
    for c in (phone, laptop):
        await carbons_on(c)
    on_phone, on_laptop, at_bob = Inbox(phone), Inbox(laptop), Inbox(bob)
    # sent: Alice writes from her phone to Bob at b.test; her laptop gets a <sent/> copy
    phone.send_message(mto="bob@b.test", mbody="from my phone", mtype="chat")
    got = await at_bob.body("from my phone")
    assert got.get("from") == "alice@a.test/phone"
    assert got.find(f"{{{CARBONS}}}sent") is None
    carbon = await on_laptop.body("from my phone")
    assert (carbon.get("from"), carbon.get("to")) == ("alice@a.test", "alice@a.test/laptop")
    inner = forwarded(carbon, "sent")
    assert (inner.get("from"), inner.get("to")) == ("alice@a.test/phone", "bob@b.test")
    # received: Bob answers her phone; the laptop gets a <received/> copy
    bob.send_message(mto="alice@a.test/phone", mbody="hi phone", mtype="chat")
    got = await on_phone.body("hi phone")
    assert got.get("from") == "bob@b.test/test" and got.find(f"{{{CARBONS}}}received") is None
    carbon = await on_laptop.body("hi phone")
    inner = forwarded(carbon, "received")
    assert (inner.get("from"), inner.get("to")) == ("bob@b.test/test", "alice@a.test/phone")
    # a carbon comes only from the user's own server: one from bob@b.test is refused
    bob.send_raw(f"<message to='alice@a.test/laptop' type='chat'><received xmlns='{CARBONS}'>"
                 "<forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' "
                 "from='carol@a.test/x' to='alice@a.test' type='chat'><body>forged</body>"
                 "</message></forwarded></received></message>")
    err = await at_bob.next()
    assert err.get("type") == "error" and error_condition(err)[0] == "not-acceptable"
    bob.send_message(mto="alice@a.test/laptop", mbody="after the forgery", mtype="chat")
    el = await on_laptop.next()
    assert el.findtext(C + "body") == "after the forgery", ET.tostring(el)


async def test_mam_archives_a_remote_conversation_on_both_sides(pair: Pair) -> None:
    plugins = ("xep_0313", "xep_0059")
    alice = await pair.a.logged_in("alice", plugins=plugins)
    bob = await pair.b.logged_in("bob", plugins=plugins)
    at_bob, at_alice = Inbox(bob), Inbox(alice)
    m = alice.make_message(mto="bob@b.test", mbody="archived across", mtype="chat")
    # a stanza-id claiming Bob's archive, made up on the way, must not reach him
    m.append(ET.fromstring(f"<stanza-id xmlns='{SID}' by='bob@b.test' id='forged'/>"))
    # nor one claiming her own archive into it
    m.append(ET.fromstring(f"<stanza-id xmlns='{SID}' by='alice@a.test' id='forged'/>"))
    m.send()
    got = await at_bob.body("archived across")
    sids = got.findall(f"{{{SID}}}stanza-id")
    assert len(sids) == 1 and sids[0].get("by") == "bob@b.test"
    assert sids[0].get("id") != "forged"
    bob.send_message(mto="alice@a.test/test", mbody="and back", mtype="chat")
    got = await at_alice.body("and back")
    (sid,) = got.findall(f"{{{SID}}}stanza-id")
    assert sid.get("by") == "alice@a.test"
    # each server archived the conversation for its own user
    _res, results = await query(bob)
    assert bodies(results) == ["archived across", "and back"]
    assert results[0].get("id") == sids[0].get("id")
    _res, results = await query(alice)
    assert bodies(results) == ["archived across", "and back"]
    assert results[1].get("id") == sid.get("id")
    inner = results[1].find("{urn:xmpp:forward:0}forwarded/" + C + "message")
    assert inner is not None and inner.get("from") == "bob@b.test/test"
    # her own message as she sent it (the stanza-id she made up for b.test included: only
    # b.test strips those), from her full JID, with none claiming an archive of a.test
    mine = results[0].find("{urn:xmpp:forward:0}forwarded/" + C + "message")
    assert mine is not None and mine.get("from") == "alice@a.test/test"
    assert mine.get("to") == "bob@b.test"
    assert [s.get("by") for s in mine.findall(f"{{{SID}}}stanza-id")] == ["bob@b.test"]
    # a filter by the remote contact's JID
    form = ("<field var='with'><value>bob@b.test</value></field>")
    _res, results = await query(alice, form)
    assert bodies(results) == ["archived across", "and back"]


# ---- presence when the remote node goes away ----------------------------------------------


async def test_remote_contact_offline_when_its_node_stops(pair: Pair) -> None:
    alice = manual(await pair.a.logged_in("alice"))
    bob = manual(await pair.b.logged_in("bob"))
    await subscribe_both(alice, bob)
    await wait_presence(bob, "alice@a.test/test")
    # b.test stops without its users logging out first (a crash closes its sockets too)
    node = pair.b.node
    assert node is not None
    pair.b.node = None
    await node.stop()
    await wait_presence(alice, "bob@b.test/test", "unavailable")
    assert (await roster_items(alice))["bob@b.test"]["subscription"] == "both"
    # b.test comes back, Bob logs in again: Alice sees him online, and he sees her
    for c in pair.b.clients:
        await c.close()
    pair.b.clients.clear()
    await pair.b.start()
    bob = manual(await pair.b.client("bob@b.test/again"))
    await wait_presence(alice, "bob@b.test/again")
    await wait_presence(bob, "alice@a.test/test")


# ---- PEP, avatars, OMEMO, vCard -----------------------------------------------------------


def devicelist(*ids: int) -> str:
    devices = "".join(f"<device id='{i}'/>" for i in ids)
    return (f"<pubsub xmlns='{PUBSUB}'><publish node='{DEVICELIST}'><item id='current'>"
            f"<list xmlns='{AXOLOTL}'>{devices}</list></item></publish>"
            f"<publish-options><x xmlns='jabber:x:data' type='submit'>"
            f"<field var='FORM_TYPE' type='hidden'><value>{PUBSUB}#publish-options</value>"
            "</field><field var='pubsub#access_model'><value>open</value></field></x>"
            "</publish-options></pubsub>")


def bundle(device: int) -> str:
    return (f"<pubsub xmlns='{PUBSUB}'><publish node='{BUNDLES}:{device}'><item id='current'>"
            f"<bundle xmlns='{AXOLOTL}'><signedPreKeyPublic signedPreKeyId='1'>AAAA"
            "</signedPreKeyPublic><signedPreKeySignature>BBBB</signedPreKeySignature>"
            "<identityKey>CCCC</identityKey><prekeys><preKeyPublic preKeyId='1'>DDDD"
            "</preKeyPublic></prekeys></bundle></item></publish></pubsub>")


def event_items(el: ET.Element) -> tuple[str | None, list[ET.Element]]:
    items = el.find(f"{{{EVENT}}}event/{{{EVENT}}}items")
    assert items is not None, ET.tostring(el)
    return items.get("node"), list(items.findall(f"{{{EVENT}}}item"))


async def next_event(events: Events, node: str) -> ET.Element:
    for _ in range(20):
        el = await events.next()
        if event_items(el)[0] == node:
            return el  # type: ignore[no-any-return]
    raise AssertionError(f"no event of {node}")


async def test_omemo_device_list_and_bundle_of_a_remote_contact(pair: Pair) -> None:
    bob, _ = await pep_client(pair.b, "bob")
    # Alice's client says +notify for the device list in its caps, as Conversations does
    alice, events = await pep_client(pair.a, "alice", (DEVICELIST,))
    await subscribe_both(manual(alice), manual(bob))
    res = await raw(bob, None, devicelist(1111, 2222), "set")
    assert res["type"] == "result", res
    # the notification crosses to a.test: b.test learnt Alice's +notify from her caps
    el = await next_event(events, DEVICELIST)
    assert el.get("from") == "bob@b.test"
    _, items = event_items(el)
    ids = {d.get("id") for d in items[0].iter(f"{{{AXOLOTL}}}device")}
    assert ids == {"1111", "2222"}
    # the bundle Alice fetches from Bob's PEP service, across s2s, before writing to him
    res = await raw(bob, None, bundle(1111), "set")
    assert res["type"] == "result", res
    res = await raw(alice, "bob@b.test", f"<pubsub xmlns='{PUBSUB}'>"
                    f"<items node='{BUNDLES}:1111' max_items='1'/></pubsub>")
    assert res["type"] == "result", res
    assert res.xml.find(f".//{{{AXOLOTL}}}identityKey").text == "CCCC"
    res = await raw(alice, "bob@b.test", f"<pubsub xmlns='{PUBSUB}'>"
                    f"<items node='{DEVICELIST}'/></pubsub>")
    assert {d.get("id") for d in res.xml.iter(f"{{{AXOLOTL}}}device")} == {"1111", "2222"}
    # a device added later is notified again
    res = await raw(bob, None, devicelist(1111, 2222, 3333), "set")
    assert res["type"] == "result", res
    el = await next_event(events, DEVICELIST)
    _, items = event_items(el)
    assert "3333" in {d.get("id") for d in items[0].iter(f"{{{AXOLOTL}}}device")}


async def test_last_item_of_a_remote_contact_on_coming_online(pair: Pair) -> None:
    bob, _ = await pep_client(pair.b, "bob")
    alice, _ = await pep_client(pair.a, "alice")
    await subscribe_both(manual(alice), manual(bob))
    res = await raw(bob, None, devicelist(42), "set")
    assert res["type"] == "result", res
    # Alice's second device, with +notify, gets the last item when it comes online
    phone, events = await pep_client(pair.a, "alice", (DEVICELIST,), resource="phone",
                                     create=False)
    el = await next_event(events, DEVICELIST)
    assert el.get("from") == "bob@b.test" and el.get("to") == "alice@a.test/phone"
    assert {d.get("id") for d in el.iter(f"{{{AXOLOTL}}}device")} == {"42"}
    await phone.close()


async def test_avatar_and_vcard_of_a_remote_contact(pair: Pair) -> None:
    plugins = ("xep_0054", "xep_0084")
    bob, _ = await pep_client(pair.b, "bob", plugins=plugins)
    alice, events = await pep_client(pair.a, "alice", (METADATA,), plugins=plugins)
    await subscribe_both(manual(alice), manual(bob))
    image = bytes(range(256)) * 8
    h = hashlib.sha1(image).hexdigest()
    await bob.plugin["xep_0084"].publish_avatar(image)
    await bob.plugin["xep_0084"].publish_avatar_metadata(
        [{"id": h, "type": "image/png", "bytes": len(image)}])
    el = await next_event(events, METADATA)
    assert el.get("from") == "bob@b.test"
    _, items = event_items(el)
    assert items[0].get("id") == h
    # the data node, fetched from b.test
    res = await raw(alice, "bob@b.test", f"<pubsub xmlns='{PUBSUB}'><items node='{DATA}'>"
                    f"<item id='{h}'/></items></pubsub>")
    assert res["type"] == "result", res
    data = res.xml.find(f".//{{{DATA}}}data")
    assert data is not None and base64.b64decode(data.text or "") == image
    # XEP-0398: Bob's server puts the avatar's hash in his presence, which reaches a.test,
    # and in his vCard, which Alice reads from there
    bob.send_presence(pstatus="with avatar")
    assert await photo_in_presence(alice, "bob@b.test", "with avatar") == h
    assert await vcard_photo(alice, "bob@b.test") == image
    # vCard-temp: Bob's own, set at b.test, read by Alice at a.test
    res = await bob.iq(f"<vCard xmlns='{VCARD}' type='set'><FN>Bob of B</FN>"
                       "<NICKNAME>bobby</NICKNAME></vCard>")
    assert res["type"] == "result", res
    res = await raw(alice, "bob@b.test", f"<vCard xmlns='{VCARD}'/>")
    assert res["type"] == "result", res
    assert res.xml.findtext(f".//{{{VCARD}}}FN") == "Bob of B"


# ---- blocking --------------------------------------------------------------------------------


async def test_blocking_a_remote_jid(pair: Pair) -> None:
    alice = manual(await pair.a.logged_in("alice"))
    bob = manual(await pair.b.logged_in("bob"))
    await subscribe_both(alice, bob)
    await wait_presence(bob, "alice@a.test/test")
    at_alice, at_bob = Inbox(alice), Inbox(bob)
    res = await alice.iq(f"<block xmlns='{BLOCKING}' type='set'><item jid='bob@b.test'/>"
                         "</block>")
    assert res["type"] == "result", res
    # Bob is told Alice went away (XEP-0191 §3.3: unavailable to the blocked contact)
    await wait_presence(bob, "alice@a.test/test", "unavailable")
    # what the blocked remote user gets back: a message bounces service-unavailable
    bob.send_message(mto="alice@a.test", mbody="let me in", mtype="chat")
    err = await at_bob.next()
    assert err.get("type") == "error" and err.get("from") == "alice@a.test"
    assert error_condition(err)[0] == "service-unavailable"
    # an IQ to her full JID too
    res = await raw(bob, "alice@a.test/test", "<query xmlns='jabber:iq:version'/>")
    assert res["type"] == "error" and res["error"]["condition"] == "service-unavailable"
    # and Alice writing to him is refused by her own server, with the blocking condition
    alice.send_message(mto="bob@b.test", mbody="hello?", mtype="chat")
    err = await at_alice.next()
    assert err.get("type") == "error"
    cond, app = error_condition(err)
    assert cond == "not-acceptable" and app == f"{{{BLOCKING_ERRORS}}}blocked"
    # Bob's presence changes do not reach her
    bob.send_presence(pstatus="anyone?")
    await asyncio.sleep(0.5)
    seen = [p for p in alice.__dict__.get("unclaimed", []) if p["status"] == "anyone?"]
    assert not seen
    # unblocked: Alice's presence goes to Bob again, messages flow both ways
    res = await alice.iq(f"<unblock xmlns='{BLOCKING}' type='set'><item jid='bob@b.test'/>"
                         "</unblock>")
    assert res["type"] == "result", res
    await wait_presence(bob, "alice@a.test/test")
    bob.send_message(mto="alice@a.test/test", mbody="there you are", mtype="chat")
    assert (await at_alice.body("there you are")).get("from") == "bob@b.test/test"


async def test_blocking_a_remote_domain(pair: Pair) -> None:
    alice = await pair.a.logged_in("alice")
    bob = await pair.b.logged_in("bob")
    at_bob = Inbox(bob)
    res = await alice.iq(f"<block xmlns='{BLOCKING}' type='set'><item jid='b.test'/></block>")
    assert res["type"] == "result", res
    bob.send_message(mto="alice@a.test/test", mbody="from the blocked domain", mtype="chat")
    err = await at_bob.next()
    assert err.get("type") == "error"
    assert error_condition(err)[0] == "service-unavailable"


# ---- subscriptions: waiting, revoked, denied --------------------------------------------


async def test_subscription_request_from_afar_waits_for_an_offline_user(pair: Pair) -> None:
    await pair.b.user("bob")
    alice = manual(await pair.a.logged_in("alice"))
    alice.send_presence(pto="bob@b.test", ptype="subscribe", pstatus="it is Alice")
    await until_established(pair)
    await asyncio.sleep(0.3)
    bob = await pair.b.client("bob@b.test/test", manual=True)
    req = await wait_presence(bob, "alice@a.test", "subscribe")
    assert req["status"] == "it is Alice"
    assert (await roster_items(alice))["bob@b.test"]["ask"] == "subscribe"
    bob.send_presence(pto="alice@a.test", ptype="subscribed")
    await wait_presence(alice, "bob@b.test", "subscribed")
    await wait_presence(alice, "bob@b.test/test")


async def test_unsubscribe_revoke_and_deny_across_domains(pair: Pair) -> None:
    alice = manual(await pair.a.logged_in("alice"))
    bob = manual(await pair.b.logged_in("bob"))
    await subscribe_both(alice, bob)
    alice.send_presence(pto="bob@b.test", ptype="unsubscribe")
    await wait_presence(bob, "alice@a.test", "unsubscribe")
    assert (await roster_items(alice))["bob@b.test"]["subscription"] == "from"
    assert (await roster_items(bob))["alice@a.test"]["subscription"] == "to"
    # Alice revokes Bob's subscription: he sees her go unavailable
    alice.send_presence(pto="bob@b.test", ptype="unsubscribed")
    await wait_presence(bob, "alice@a.test", "unsubscribed")
    await wait_presence(bob, "alice@a.test/test", "unavailable")
    assert (await roster_items(alice))["bob@b.test"]["subscription"] == "none"
    assert (await roster_items(bob))["alice@a.test"]["subscription"] == "none"
    # a request denied by the remote user
    alice.send_presence(pto="bob@b.test", ptype="subscribe")
    await wait_presence(bob, "alice@a.test", "subscribe")
    bob.send_presence(pto="alice@a.test", ptype="unsubscribed")
    await wait_presence(alice, "bob@b.test", "unsubscribed")
    item = (await roster_items(alice))["bob@b.test"]
    assert item["subscription"] == "none" and "ask" not in item


async def until_established(pair: Pair) -> None:
    node = pair.a.node
    assert node is not None and node.federation is not None
    fed = node.federation
    for _ in range(200):
        out = fed.outgoing.get(("a.test", "b.test"))
        if out is not None and out.state == BOUND:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("no stream a.test -> b.test")


# ---- disco of remote entities ---------------------------------------------------------------


async def test_disco_of_a_remote_account_and_its_services(pair: Pair) -> None:
    await pair.b.user("bob")
    alice = await pair.a.logged_in("alice")
    disco = alice.plugin["xep_0030"]
    # the remote account's bare JID, answered by its server: PEP, MAM, push
    info = await disco.get_info(jid="bob@b.test", timeout=TIMEOUT)
    features = set(info["disco_info"]["features"])
    assert {PUBSUB, "urn:xmpp:mam:2", "urn:xmpp:push:0"} <= features
    assert ("account", "registered") in {(i[0], i[1]) for i in info["disco_info"]["identities"]}
    # the remote room service lists a room created there
    owner = await pair.b.client("bob@b.test/test", plugins=("xep_0045", "xep_0004"))
    await owner.plugin["xep_0045"].join_muc_wait("lounge@conference.b.test", "bob",
                                                  timeout=TIMEOUT)
    form = await owner.plugin["xep_0045"].get_room_config("lounge@conference.b.test")
    form.field["muc#roomconfig_publicroom"]["value"] = True
    await owner.plugin["xep_0045"].set_room_config("lounge@conference.b.test", form)
    items = await disco.get_items(jid="conference.b.test", timeout=TIMEOUT)
    assert "lounge@conference.b.test" in {i[0] for i in items["disco_items"]["items"]}
    info = await disco.get_info(jid="lounge@conference.b.test", timeout=TIMEOUT)
    assert ("conference", "text") in {(i[0], i[1]) for i in info["disco_info"]["identities"]}
    # a remote user's client answers disco#info through both servers
    bob2 = await pair.b.client("bob@b.test/phone")
    info = await disco.get_info(jid=str(bob2.boundjid), timeout=TIMEOUT)
    assert "urn:xmpp:ping" in set(info["disco_info"]["features"])


# ---- directed presence, bounces -------------------------------------------------------------


async def test_directed_presence_to_a_remote_user_then_unavailable(pair: Pair) -> None:
    alice = manual(await pair.a.logged_in("alice"))
    bob = manual(await pair.b.logged_in("bob"))
    # no subscription: a presence sent to Bob's full JID, then Alice leaves (RFC 6121 §4.6.3)
    alice.send_presence(pto="bob@b.test/test", pstatus="just for you")
    p = await wait_presence(bob, "alice@a.test/test")
    assert p["status"] == "just for you"
    await alice.close()
    await wait_presence(bob, "alice@a.test/test", "unavailable")


async def test_stanzas_to_a_remote_account_that_does_not_exist_bounce(pair: Pair) -> None:
    alice = await pair.a.logged_in("alice")
    inbox = Inbox(alice)
    alice.send_message(mto="nobody@b.test", mbody="anyone?", mtype="chat")
    err = await inbox.next()
    assert err.get("type") == "error" and err.get("from") == "nobody@b.test"
    assert error_condition(err)[0] == "service-unavailable"
    res = await raw(alice, "nobody@b.test", "<vCard xmlns='vcard-temp'/>")
    assert res["type"] == "error" and res["error"]["condition"] == "service-unavailable"
    res = await raw(alice, "nobody@b.test/x", "<query xmlns='jabber:iq:version'/>")
    assert res["type"] == "error" and res["error"]["condition"] == "service-unavailable"


async def test_occupants_of_a_remote_room_are_not_taken_for_contacts(pair: Pair) -> None:
    from hongyan.modules.pep import Pep
    from tests.integration.test_muc import Witch, is_presence

    bob, _ = await pep_client(pair.b, "bob", (DEVICELIST,), plugins=("xep_0045",))
    alice, _ = await pep_client(pair.a, "alice", plugins=("xep_0045",))
    room = "den@conference.b.test"
    host, guest = Witch(bob), Witch(alice)
    await host.create(room, "bob")
    await guest.join(room, "alice")
    # Bob's occupant presence carries his caps; a.test does not ask the room about them
    p = await guest.expect(is_presence(f"{room}/bob"))
    assert p.find("{http://jabber.org/protocol/caps}c") is not None
    assert pair.a.node is not None
    pep = pair.a.node.modules["pep"]
    assert isinstance(pep, Pep)
    await asyncio.sleep(0.3)
    assert room not in pep.remote


async def test_pep_access_for_remote_strangers_and_contacts(pair: Pair) -> None:
    bob, _ = await pep_client(pair.b, "bob")
    alice, _ = await pep_client(pair.a, "alice")
    stranger, _ = await pep_client(pair.a, "stranger")
    await subscribe_both(manual(alice), manual(bob))
    await bob.plugin["xep_0060"].publish(None, TUNE, id="p", payload=tune("presence"))
    get = f"<pubsub xmlns='{PUBSUB}'><items node='{TUNE}'/></pubsub>"
    # the presence access model (the default) at b.test reads Bob's roster for a.test's users
    assert item_ids(await raw(alice, "bob@b.test", get)) == ["p"]
    assert error_of(await raw(stranger, "bob@b.test", get))[:2] == \
        ("not-authorized", "presence-subscription-required")
    # nobody elsewhere publishes to, creates in or deletes from Bob's PEP
    pub = (f"<pubsub xmlns='{PUBSUB}'><publish node='{TUNE}'><item id='x'>"
           f"<tune xmlns='{TUNE}'/></item></publish></pubsub>")
    assert error_of(await raw(alice, "bob@b.test", pub, "set"))[0] == "forbidden"
    delete = f"<pubsub xmlns='{PUBSUB}#owner'><delete node='{TUNE}'/></pubsub>"
    assert error_of(await raw(alice, "bob@b.test", delete, "set"))[0] == "forbidden"
