"""XMPP over BOSH (XEP-0206 over XEP-0124) against the real server: a byte-level BOSH client
on aiohttp (tests/integration/boshclient.py) on one side, slixmpp over TCP on the other. The
session is the TCP one, so SASL, bind and everything after work unchanged; what is checked
here is what BOSH adds: session creation and its attributes, long polling (on the node's
SteppedClock), restarts, pause, the rid window and retransmission, terminate, inactivity,
and bad input. Runs on SQLite and PostgreSQL (sessions end with presence and offline state)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from tests.integration.boshclient import EMPTY, HTTPBIND, Bosh, attr, bosh_url
from tests.integration.conftest import Harness
from tests.integration.rawstream import SASL

MSG = "<message xmlns='jabber:client' to='{to}' type='chat'><body>{text}</body></message>"


@pytest.fixture
async def bosh(harness: Harness) -> AsyncIterator[Bosh]:
    assert harness.node is not None
    b = Bosh(bosh_url(harness.node.https_port, tls=True))
    try:
        yield b
    finally:
        await b.close()


async def settle(harness: Harness) -> None:
    """Let the node's timers that a clock step made due run (their effects are tasks)."""
    for _ in range(5):
        await asyncio.sleep(0.01)


def terminated(body: str, condition: str | None = None) -> bool:
    return "type='terminate'" in body and (condition is None
                                           or f"condition='{condition}'" in body)


async def test_create_login_bind_and_chat_both_ways_with_a_tcp_user(harness: Harness,
                                                                    bosh: Bosh) -> None:
    await harness.user("alice")
    bob = await harness.logged_in("bob")
    got = await bosh.create(wait=30, hold=1)
    assert bosh.status == 200
    assert bosh.headers["Content-Type"] == "text/xml; charset=utf-8"
    assert got.startswith(f"<body xmlns='{HTTPBIND}'"), got
    # XEP-0124 §7.2 (and XEP-0206 §3): what the session is
    assert attr(got, "wait") == "30" and attr(got, "hold") == "1"
    assert attr(got, "requests") == "2"
    assert attr(got, "inactivity") == "60" and attr(got, "polling") == "2"
    assert attr(got, "maxpause") == "120" and attr(got, "ver") == "1.11"
    assert attr(got, "from") == "localhost" and attr(got, "xmpp:version") == "1.0"
    assert attr(got, "xmpp:restartlogic") == "true" and attr(got, "secure") == "true"
    sid = attr(got, "sid")
    assert sid and sid.endswith(".0") and len(sid) > 20
    assert "<stream:features" in got and ">PLAIN<" in got and "starttls" not in got
    ok = await bosh.request(f"<auth xmlns='{SASL}' mechanism='PLAIN'>"
                            "AGFsaWNlAHNlY3JldC1wYXNzd29yZA==</auth>")
    assert f"<success xmlns='{SASL}'" in ok
    feats = await bosh.request(to="localhost", xmpp__restart="true")
    assert "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>" in feats, feats
    bound = await bosh.request("<iq xmlns='jabber:client' type='set' id='b'><bind "
                               "xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>web"
                               "</resource></bind></iq>")
    assert "<jid>alice@localhost/web</jid>" in bound
    # a message from BOSH to the TCP user: its request is held (nothing to say to alice)
    held = bosh.send(MSG.format(to="bob@localhost", text="over bosh"))
    m = await bob.next_message()
    assert (m["body"], str(m["from"])) == ("over bosh", "alice@localhost/web")
    await asyncio.sleep(0.1)
    assert not held.done()
    # the next request releases it (hold=1), and is held in turn (long polling)...
    poll = bosh.send()
    assert await asyncio.wait_for(held, 5) == f"<body xmlns='{HTTPBIND}'/>"
    await asyncio.sleep(0.2)
    assert not poll.done()
    started = time.monotonic()
    bob.send_message(mto="alice@localhost/web", mbody="to bosh", mtype="chat")
    got = await asyncio.wait_for(poll, 5)
    assert time.monotonic() - started < 2
    assert "<body>to bosh</body>" in got and "from='bob@localhost/test'" in got
    assert "<message xmlns='jabber:client'" in got
    bye = await bosh.request(type="terminate")
    assert bye == f"<body xmlns='{HTTPBIND}' type='terminate'/>"


async def test_rid_order_holds_a_request_until_the_gap_closes(harness: Harness,
                                                               bosh: Bosh) -> None:
    await harness.user("erin")
    bob = await harness.logged_in("bob")
    await bosh.login("erin@localhost")
    one, two = bosh.next_rid(), bosh.next_rid()
    later = bosh.send(MSG.format(to="bob@localhost", text="two"), rid=two)
    await asyncio.sleep(0.3)
    assert not later.done()  # waits for the missing one, unhandled
    assert bob.messages.empty()
    first = bosh.send(MSG.format(to="bob@localhost", text="one"), rid=one)
    got = [(await bob.next_message())["body"] for _ in range(2)]
    assert got == ["one", "two"]
    # answered in rid order: the first released by the second (hold=1), which is held
    assert await asyncio.wait_for(first, 5) == EMPTY
    await asyncio.sleep(0.1)
    assert not later.done()
    bob.send_message(mto="erin@localhost/bosh", mbody="back", mtype="chat")
    assert "<body>back</body>" in await asyncio.wait_for(later, 5)


async def test_a_repeated_rid_gets_the_same_response_again(harness: Harness,
                                                           bosh: Bosh) -> None:
    await harness.user("frank")
    bob = await harness.logged_in("bob")
    await bosh.login("frank@localhost")
    poll = bosh.send()
    rid = bosh.rid
    await asyncio.sleep(0.1)
    bob.send_message(mto="frank@localhost/bosh", mbody="once", mtype="chat")
    original = await asyncio.wait_for(poll, 5)
    assert "<body>once</body>" in original
    # the client lost that response: it sends the same request again, and gets a copy
    again = await bosh.request(rid=rid)
    assert again == original
    # ... also of the one before (the last 'requests' = 2 are kept)
    copy = await bosh.request(rid=rid - 1)
    assert "<jid>frank@localhost/bosh</jid>" in copy
    # the next rid goes on as usual, nothing lost or repeated
    bob.send_message(mto="frank@localhost/bosh", mbody="twice", mtype="chat")
    got = await bosh.until("twice")
    assert "once" not in got
    # a rid older than that buffer: item-not-found, and the session is over (§14.3)
    gone = await bosh.request(rid=rid - 3)
    assert terminated(gone, "item-not-found")
    assert terminated(await bosh.request(), "item-not-found")


async def test_inactivity_ends_the_session_with_unavailable_presence(harness: Harness,
                                                                     bosh: Bosh) -> None:
    from tests.integration.pepkit import befriend
    await harness.user("mia")
    await harness.user("noah")
    await befriend(harness, "mia", "noah")
    noah = await harness.client("noah@localhost/tcp")
    await bosh.login("mia@localhost")
    sent = bosh.send("<presence xmlns='jabber:client'/>")  # (answered by what comes next)
    p = await noah.next_presence()
    while str(p["from"]) != "mia@localhost/bosh":
        p = await noah.next_presence()
    assert p["type"] == "available"
    # the client goes away: its held request is answered at 'wait', then nothing comes
    held = bosh.send()
    assert not terminated(await asyncio.wait_for(sent, 5))
    await asyncio.sleep(0.1)
    await harness.clock.advance(61)
    assert not terminated(await asyncio.wait_for(held, 5))
    await harness.clock.advance(59)
    await settle(harness)
    assert harness.node is not None and harness.node.sessions.count() == 2  # (still there)
    await harness.clock.advance(2)
    p = await noah.next_presence()
    assert (str(p["from"]), p["type"]) == ("mia@localhost/bosh", "unavailable")
    assert terminated(await bosh.request(), "item-not-found")
    assert harness.node.bosh is not None and not harness.node.bosh.sessions


async def test_terminate_with_a_payload_ends_cleanly(harness: Harness, bosh: Bosh) -> None:
    from tests.integration.pepkit import befriend
    await harness.user("olga")
    await harness.user("pete")
    await befriend(harness, "olga", "pete")
    pete = await harness.client("pete@localhost/tcp")
    await bosh.login("olga@localhost")
    sent = bosh.send("<presence xmlns='jabber:client'/>")
    held = bosh.send()
    assert not terminated(await asyncio.wait_for(sent, 5))
    await asyncio.sleep(0.1)
    bye = await bosh.request(MSG.format(to="pete@localhost", text="bye")
                             + "<presence xmlns='jabber:client' type='unavailable'/>",
                             type="terminate")
    assert bye == f"<body xmlns='{HTTPBIND}' type='terminate'/>"
    assert not terminated(await asyncio.wait_for(held, 5))
    assert (await pete.next_message())["body"] == "bye"
    p = await pete.next_presence()
    while not (str(p["from"]) == "olga@localhost/bosh" and p["type"] == "unavailable"):
        p = await pete.next_presence()
    assert terminated(await bosh.request(), "item-not-found")
    assert harness.node is not None and harness.node.bosh is not None
    assert not harness.node.bosh.sessions


async def test_a_stream_error_is_remote_stream_error(harness: Harness, bosh: Bosh) -> None:
    await harness.user("quinn")
    await bosh.login("quinn@localhost")
    held = bosh.send()
    await asyncio.sleep(0.1)
    # another login of the same resource replaces this one: <conflict/>
    other = await harness.client("quinn@localhost/bosh")
    got = await asyncio.wait_for(held, 5)
    assert terminated(got, "remote-stream-error"), got
    assert "<stream:error" in got and "<conflict" in got
    assert other.boundjid.full == "quinn@localhost/bosh"

