"""XEP-0198 Stream Management through the front door: acks, resumption after a cut TCP
connection, takeover of a connection still open, the resume timeout handing messages to offline
storage, the queue bound, and each bad-input case. The user whose connection is cut speaks raw
XML (so that we control exactly what it acknowledges and when its socket dies); the other side
is a slixmpp client."""

from __future__ import annotations

import asyncio
import html
import re

import pytest

from hongyan.xmpp.jid import JID
from tests.integration.conftest import Harness
from tests.integration.rawstream import PASSWORD, SASL, RawStream, authed_stream, b64, tls_stream
from tests.integration.test_im import subscribe_both, wait_presence
from tests.integration.test_passthrough import Inbox

SM = "urn:xmpp:sm:3"
STANZAS = b"urn:ietf:params:xml:ns:xmpp-stanzas"


async def authed_only(harness: Harness, user: str) -> RawStream:
    """A raw stream authenticated as existing ``user``, not bound."""
    s = await tls_stream(harness)
    await s.header()
    s.send(f"<auth xmlns='{SASL}' mechanism='PLAIN'>{b64(chr(0) + user + chr(0) + PASSWORD)}"
           "</auth>")
    await s.read_until(b"success>")
    feats = await s.header()
    assert f"<sm xmlns='{SM}'/>".encode() in feats, feats
    return s


async def enable(s: RawStream, resume: bool = True) -> str:
    s.send(f"<enable xmlns='{SM}'" + (" resume='true'" if resume else "") + "/>")
    out = await s.read_element(b"<enabled")
    if not resume:
        return ""
    m = re.search(rb" id='([^']+)'", out)
    assert m is not None and b"resume='true'" in out, out
    return m.group(1).decode()


async def bodies(s: RawStream, n: int) -> list[str]:
    out = []
    for _ in range(n):
        el = await s.read_until(b"</message>")
        m = re.search(rb"<body>([^<]*)</body>", el)
        assert m is not None, el
        out.append(html.unescape(m.group(1).decode()))
    return out


def cut(s: RawStream) -> None:
    """Kill the TCP connection: no </stream:stream>, a reset."""
    s.writer.transport.abort()


async def test_features_ack_counting(harness: Harness) -> None:
    s = await authed_stream(harness, "alice")
    bob = await harness.logged_in("bob")
    await enable(s, resume=False)
    s.send("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
    await s.read_element(b"id='p1'")
    s.send(f"<r xmlns='{SM}'/>")
    assert b"h='1'" in await s.read_element(b"<a ")  # one stanza handled (the ping)
    for i in range(3):
        bob.send_message(mto="alice@localhost/raw", mbody=f"m{i}")
    assert await bodies(s, 3) == ["m0", "m1", "m2"]
    # the ping result and three messages were sent: h=4 acknowledges them all
    s.send(f"<a xmlns='{SM}' h='4'/>")
    s.send(f"<r xmlns='{SM}'/>")
    assert b"h='1'" in await s.read_element(b"<a ")
    # the server asks for an ack once request_every (5) stanzas are unacknowledged
    for i in range(5):
        bob.send_message(mto="alice@localhost/raw", mbody=f"n{i}")
    await bodies(s, 5)
    await s.read_element(b"<r xmlns")
    s.close()


async def test_cut_connection_resume(harness: Harness) -> None:
    s = await authed_stream(harness, "alice")
    bob = await harness.logged_in("bob")
    sid = await enable(s)
    sent = ["one", "two <&> 'quoted'", "three", "four", "five ☃"]
    for body in sent[:2]:
        bob.send_message(mto="alice@localhost/raw", mbody=body)
    got = await bodies(s, 2)
    s.send(f"<a xmlns='{SM}' h='1'/>")  # only the first one acknowledged
    await asyncio.sleep(0.1)
    cut(s)
    await asyncio.sleep(0.3)
    for body in sent[2:]:
        bob.send_message(mto="alice@localhost/raw", mbody=body)
    await asyncio.sleep(0.3)
    s2 = await authed_only(harness, "alice")
    s2.send(f"<resume xmlns='{SM}' previd='{sid}' h='1'/>")
    resumed = await s2.read_element(b"<resumed")
    assert f"previd='{sid}'".encode() in resumed and b"h='0'" in resumed, resumed
    again = await bodies(s2, 4)
    assert got[0:1] + again == sent  # every message, exactly as sent, in order, once
    # the resumed stream works both ways and keeps counting
    s2.send("<message to='bob@localhost/test' type='chat'><body>back</body></message>")
    msg = await bob.next_message()
    assert msg["body"] == "back" and str(msg["from"]) == "alice@localhost/raw"
    s2.send(f"<r xmlns='{SM}'/>")
    assert b"h='1'" in await s2.read_element(b"<a ")
    s2.send(f"<a xmlns='{SM}' h='5'/>")
    s2.send(f"<r xmlns='{SM}'/>")
    assert b"h='1'" in await s2.read_element(b"<a ")
    s2.close()


async def test_takeover_of_open_connection(harness: Harness) -> None:
    s = await authed_stream(harness, "alice")
    bob = await harness.logged_in("bob")
    sid = await enable(s)
    bob.send_message(mto="alice@localhost/raw", mbody="first")
    assert await bodies(s, 1) == ["first"]
    # the old connection is still open (the server has not noticed anything)
    s2 = await authed_only(harness, "alice")
    s2.send(f"<resume xmlns='{SM}' previd='{sid}' h='0'/>")
    await s2.read_element(b"<resumed")
    assert await bodies(s2, 1) == ["first"]  # unacknowledged: sent again
    rest = await s.read_to_close()
    assert b"first" not in rest  # the old transport was closed, nothing more on it
    bob.send_message(mto="alice@localhost/raw", mbody="second")
    assert await bodies(s2, 1) == ["second"]
    s2.close()


async def test_resume_timeout_goes_offline(harness: Harness) -> None:
    await harness.stop_node()
    await harness.start(extra="[sm]\nresume_timeout = 1\n")
    s = await authed_stream(harness, "alice")
    bob = await harness.logged_in("bob")
    await enable(s)
    bob.send_message(mto="alice@localhost/raw", mbody="kept 1")
    bob.send_message(mto="alice@localhost/raw", mbody="kept 2")
    await bodies(s, 2)  # received, never acknowledged
    cut(s)
    await asyncio.sleep(0.3)
    bob.send_message(mto="alice@localhost/raw", mbody="kept 3")  # queued while hibernated
    await harness.clock.advance(1.1)  # past the resumption timeout
    alice = await harness.client("alice@localhost/phone")
    got = [(await alice.next_message())["body"] for _ in range(3)]
    assert got == ["kept 1", "kept 2", "kept 3"]


async def test_clean_close_without_resume_goes_offline(harness: Harness) -> None:
    s = await authed_stream(harness, "alice")
    bob = await harness.logged_in("bob")
    await enable(s)
    bob.send_message(mto="alice@localhost/raw", mbody="unacked")
    await bodies(s, 1)
    s.send("</stream:stream>")
    await s.read_to_close()
    await asyncio.sleep(0.3)
    alice = await harness.client("alice@localhost/phone")
    assert (await alice.next_message())["body"] == "unacked"


async def test_iq_unacked_bounced(harness: Harness) -> None:
    await harness.stop_node()
    await harness.start(extra="[sm]\nresume_timeout = 1\n")
    s = await authed_stream(harness, "alice")
    bob = await harness.logged_in("bob")
    await enable(s)
    cut(s)
    await asyncio.sleep(0.3)
    # an IQ to the hibernated session waits in its queue; when the session times out, the
    # sender gets an error instead of silence
    iq = bob.make_iq_get(ito="alice@localhost/raw")
    res = await bob.send_raw_iq(iq, "<query xmlns='jabber:iq:version'/>", 5)
    assert res["type"] == "error" and res["error"]["condition"] == "service-unavailable"


async def test_bad_resume_and_enable(harness: Harness) -> None:
    await harness.user("alice")
    s = await authed_only(harness, "alice")
    s.send(f"<enable xmlns='{SM}'/>")  # before bind
    out = await s.read_element(b"failed xmlns")
    assert b"<unexpected-request xmlns='" + STANZAS + b"'/>" in out, out
    s.send(f"<resume xmlns='{SM}' previd='nope' h='0'/>")
    out = await s.read_element(b"failed xmlns")
    assert b"<item-not-found xmlns='" + STANZAS + b"'/>" in out, out
    # the client may bind afresh
    s.send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
           "<resource>raw</resource></bind></iq>")
    assert b"alice@localhost/raw" in await s.read_until(b"</iq>")
    await enable(s)
    s.send(f"<enable xmlns='{SM}' resume='true'/>")  # twice
    out = await s.read_element(b"failed xmlns")
    assert b"unexpected-request" in out, out
    s.close()


async def test_expired_id_fails(harness: Harness) -> None:
    await harness.stop_node()
    await harness.start(extra="[sm]\nresume_timeout = 1\n")
    s = await authed_stream(harness, "alice")
    sid = await enable(s)
    cut(s)
    await asyncio.sleep(0.3)
    await harness.clock.advance(1.1)  # past the resumption timeout
    s2 = await authed_only(harness, "alice")
    s2.send(f"<resume xmlns='{SM}' previd='{sid}' h='0'/>")
    assert b"item-not-found" in await s2.read_element(b"failed xmlns")
    s2.close()


async def test_other_account_cannot_resume(harness: Harness) -> None:
    s = await authed_stream(harness, "alice")
    sid = await enable(s)
    await harness.user("mallory")
    m = await authed_only(harness, "mallory")
    m.send(f"<resume xmlns='{SM}' previd='{sid}' h='0'/>")
    assert b"item-not-found" in await m.read_element(b"failed xmlns")
    s.close()
    m.close()


async def test_ack_too_high(harness: Harness) -> None:
    s = await authed_stream(harness, "alice")
    bob = await harness.logged_in("bob")
    await enable(s)
    bob.send_message(mto="alice@localhost/raw", mbody="x")
    await bodies(s, 1)
    s.send(f"<a xmlns='{SM}' h='2'/>")
    out = await s.read_to_close()
    assert b"<undefined-condition xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in out, out
    assert f"<handled-count-too-high xmlns='{SM}' h='2' send-count='1'/>".encode() in out, out


async def test_ack_backwards(harness: Harness) -> None:
    s = await authed_stream(harness, "alice")
    bob = await harness.logged_in("bob")
    await enable(s)
    bob.send_message(mto="alice@localhost/raw", mbody="x")
    bob.send_message(mto="alice@localhost/raw", mbody="y")
    await bodies(s, 2)
    s.send(f"<a xmlns='{SM}' h='2'/>")
    s.send(f"<a xmlns='{SM}' h='1'/>")
    out = await s.read_to_close()
    assert f"<handled-count-too-high xmlns='{SM}' h='1' send-count='2'/>".encode() in out, out


async def test_never_acks_policy_violation(harness: Harness) -> None:
    await harness.stop_node()
    await harness.start(extra="[sm]\nmax_unacked = 10\n")
    s = await authed_stream(harness, "alice")
    bob = await harness.logged_in("bob")
    await enable(s)
    for i in range(12):
        bob.send_message(mto="alice@localhost/raw", mbody=f"m{i}")
    out = await s.read_to_close()
    assert b"<policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in out, out
    assert b"unacknowledged" in out
    # nothing lost: what was not acknowledged waits in offline storage
    await asyncio.sleep(0.3)
    alice = await harness.client("alice@localhost/phone")
    got = [(await alice.next_message())["body"] for _ in range(11)]
    assert got == [f"m{i}" for i in range(11)]


async def test_slixmpp_sm_plugin(harness: Harness) -> None:
    await harness.user("alice")
    alice = await harness.client("alice@localhost/sx", plugins=("xep_0198",))
    bob = await harness.logged_in("bob")
    await asyncio.sleep(0.3)
    assert alice.plugin["xep_0198"].sm_id is not None
    for i in range(7):
        bob.send_message(mto="alice@localhost/sx", mbody=f"m{i}")
    got = [(await alice.next_message())["body"] for _ in range(7)]
    assert got == [f"m{i}" for i in range(7)]
    await asyncio.sleep(0.3)
    # slixmpp answered our <r/> requests (one every 5 stanzas): at most 4 wait for the next
    assert harness.node is not None
    sess = harness.node.sessions.get(JID.parse(str(alice.boundjid)))
    assert sess is not None and sess.sm is not None and sess.sm.acked > 0 and sess.sm.pending < 5


async def test_presence_kept_while_hibernated(harness: Harness) -> None:
    await harness.stop_node()
    await harness.start(extra="[sm]\nresume_timeout = 2\n")
    await harness.user("alice")
    first = await harness.client("alice@localhost/setup")
    bob = await harness.logged_in("bob")
    await subscribe_both(first, bob)
    await first.close()
    await wait_presence(bob, "alice@localhost/setup", "unavailable")
    s = await authed_only(harness, "alice")
    s.send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
           "<resource>raw</resource></bind></iq>")
    await s.read_until(b"</iq>")
    await enable(s)
    s.send("<presence/>")
    await wait_presence(bob, "alice@localhost/raw")
    cut(s)
    # contacts keep seeing the session online while it can be resumed ...
    with pytest.raises(TimeoutError):
        await wait_presence(bob, "alice@localhost/raw", "unavailable", timeout=1.0)
    # ... a message to the bare JID still reaches it (it is available) ...
    bob.send_message(mto="alice@localhost", mbody="while away", mtype="chat")
    # ... and once the resume timeout passed, it goes offline, the message to offline storage
    await wait_presence(bob, "alice@localhost/raw", "unavailable", timeout=5)
    await asyncio.sleep(0.3)
    alice = await harness.client("alice@localhost/phone")
    assert (await alice.next_message())["body"] == "while away"


async def test_rebind_without_resume_hands_over(harness: Harness) -> None:
    s = await authed_stream(harness, "alice")
    bob = await harness.logged_in("bob")
    await enable(s)
    bob.send_message(mto="alice@localhost/raw", mbody="not acked")
    await bodies(s, 1)
    cut(s)
    await asyncio.sleep(0.3)
    # the client comes back without resuming and binds the same resource afresh
    s2 = await authed_only(harness, "alice")
    s2.send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
            "<resource>raw</resource></bind></iq>")
    assert b"alice@localhost/raw" in await s2.read_until(b"</iq>")
    await asyncio.sleep(0.3)
    alice = await harness.client("alice@localhost/phone")
    assert (await alice.next_message())["body"] == "not acked"
    s2.close()


async def test_server_restart_keeps_unacked_of_hibernated(harness: Harness) -> None:
    s = await authed_stream(harness, "alice")
    bob = await harness.logged_in("bob")
    await enable(s)
    cut(s)
    await asyncio.sleep(0.3)
    bob.send_message(mto="alice@localhost/raw", mbody="before restart")
    await asyncio.sleep(0.3)
    await harness.restart()  # hibernated sessions live in memory: their messages go offline
    alice = await harness.client("alice@localhost/phone")
    assert (await alice.next_message())["body"] == "before restart"


async def test_unacked_hand_over_follows_offline_rules(harness: Harness) -> None:
    """A session that ends with unacknowledged messages treats each as offline storage would
    have: a receipt and a bodiless marker are kept, a chat state alone is dropped, a
    <no-store/> message is bounced to its sender."""
    s = await authed_stream(harness, "alice")
    bob = await harness.logged_in("bob")
    errors: asyncio.Queue[str] = asyncio.Queue()
    bob.add_event_handler("message_error", lambda m: errors.put_nowait(m["id"]))
    await enable(s)
    to = "alice@localhost/raw"
    bob.send_raw(f"<message to='{to}' id='r1' type='chat'>"
                 "<received xmlns='urn:xmpp:receipts' id='x'/></message>")
    bob.send_raw(f"<message to='{to}' id='c1' type='chat'>"
                 "<composing xmlns='http://jabber.org/protocol/chatstates'/></message>")
    bob.send_raw(f"<message to='{to}' id='n1' type='chat'><body>transient</body>"
                 "<no-store xmlns='urn:xmpp:hints'/></message>")
    bob.send_raw(f"<message to='{to}' id='d1' type='chat'>"
                 "<displayed xmlns='urn:xmpp:chat-markers:0' id='x'/></message>")
    await s.read_until(b"id='d1'")
    s.send("</stream:stream>")
    await s.read_to_close()
    assert await asyncio.wait_for(errors.get(), 5) == "n1"
    await asyncio.sleep(0.3)  # the hand-over runs in the SessionClosed hooks
    alice = await harness.client("alice@localhost/phone", login=False)
    inbox = Inbox(alice)
    assert await alice.login(harness.port)
    got = [(await inbox.next()).get("id") for _ in range(2)]
    assert got == ["r1", "d1"]
    assert errors.empty()


async def test_server_asks_a_silent_client_for_acks_on_a_timer(harness: Harness) -> None:
    """Below sm.request_every, the module-wide sweep asks every sm.request_interval seconds
    (only sessions with something unacknowledged); an answer empties the queue and the asking
    stops."""
    await harness.stop_node()
    await harness.start(extra="[sm]\nrequest_every = 100\nrequest_interval = 0.3\n")
    s = await authed_stream(harness, "alice")
    bob = await harness.logged_in("bob")
    await enable(s)
    clock = harness.clock
    for _ in range(2):
        await clock.advance(0.35)  # two sweeps
    with pytest.raises(TimeoutError):  # nothing unacknowledged: nothing asked
        await s.read_element(b"<r xmlns", timeout=0.1)
    bob.send_message(mto="alice@localhost/raw", mbody="one")
    assert await bodies(s, 1) == ["one"]
    await clock.advance(0.35)
    await s.read_element(b"<r xmlns", timeout=2)
    await clock.advance(0.35)
    await s.read_element(b"<r xmlns", timeout=2)  # asked again while it stays silent
    s.send(f"<a xmlns='{SM}' h='1'/>")
    await asyncio.sleep(0.1)
    s.buffer = b""
    for _ in range(2):
        await clock.advance(0.35)
    with pytest.raises(TimeoutError):
        await s.read_element(b"<r xmlns", timeout=0.1)
    s.close()


async def test_timeout_keeps_no_carbon_copies_and_one_delay(harness: Harness) -> None:
    """At the resume timeout, carbon copies in the queue are dropped (the original reached
    another resource), and a message that came from offline storage goes back there once, with
    its first delay stamp only."""
    await harness.stop_node()
    await harness.start(extra="[sm]\nresume_timeout = 1\n")
    await harness.user("alice")
    bob = await harness.logged_in("bob")
    bob.send_message(mto="alice@localhost", mbody="early", mtype="chat")
    await asyncio.sleep(0.3)
    s = await authed_only(harness, "alice")
    s.send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
           "<resource>raw</resource></bind></iq>")
    await s.read_until(b"</iq>")
    await enable(s)
    s.send("<iq type='set' id='c'><enable xmlns='urn:xmpp:carbons:2'/></iq>")
    await s.read_element(b"id='c'")
    s.send("<presence/>")
    assert await bodies(s, 1) == ["early"]
    desk = await harness.client("alice@localhost/desk")
    bob.send_message(mto="alice@localhost/desk", mbody="to desk", mtype="chat")
    assert (await desk.next_message())["body"] == "to desk"
    carbon = await s.read_until(b"</message>")
    assert b"urn:xmpp:carbons:2" in carbon and b"to desk" in carbon, carbon
    cut(s)
    await asyncio.sleep(0.3)
    await harness.clock.advance(1.1)  # past the resumption timeout
    phone = await harness.client("alice@localhost/phone", login=False)
    inbox = Inbox(phone)
    assert await phone.login(harness.port)
    got = await inbox.next()
    assert got.findtext("{jabber:client}body") == "early"
    assert len(got.findall("{urn:xmpp:delay}delay")) == 1
    phone.send_raw("<message to='alice@localhost/phone' id='marker' type='chat'>"
                   "<body>.</body></message>")
    assert (await inbox.next()).get("id") == "marker"  # nothing else: no stored carbon
