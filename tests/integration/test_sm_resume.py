"""XEP-0198 resumption with slixmpp's own xep_0198 plugin, over a relay (``netcut``) that breaks
the TCP connection mid-conversation the way a phone's network breaks: the client's socket is
reset, and the server's side of the connection stays open and silent, so the server has not
noticed anything when the client comes back and resumes. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from hongyan.server.c2s import CLOSED, C2SSession
from hongyan.xmpp.jid import JID
from tests.integration.clients import TIMEOUT, Client
from tests.integration.conftest import Harness
from tests.integration.netcut import NetCut
from tests.integration.rawstream import PASSWORD
from tests.integration.waiting import until

ALICE = "alice@localhost/phone"


@pytest.fixture
async def netcut(harness: Harness) -> AsyncIterator[NetCut]:
    relay = NetCut(harness.port)
    await relay.start()
    try:
        yield relay
    finally:
        await relay.close()


async def phone(harness: Harness, relay: NetCut, jid: str = ALICE,
                plugins: tuple[str, ...] = ()) -> Client:
    """A slixmpp client with stream management, connected through the relay."""
    c = Client(jid, PASSWORD, ("xep_0198", *plugins))
    harness.clients.append(c)
    assert relay.server is not None
    ok = await c.login(relay.server.sockets[0].getsockname()[1])
    assert ok
    sm = c.plugin["xep_0198"]
    await until(lambda: sm.enabled_in and sm.sm_id is not None)
    return c


async def resume(c: Client, relay: NetCut) -> Any:
    """Reconnect through the relay; slixmpp resumes by itself. Returns the <resumed/>."""
    resumed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def ok(el: Any) -> None:
        if not resumed.done():
            resumed.set_result(el)

    def failed(el: Any) -> None:
        if not resumed.done():
            resumed.set_exception(AssertionError(f"resumption failed: {el}"))

    c.add_event_handler("session_resumed", ok, disposable=True)
    c.add_event_handler("sm_failed", failed, disposable=True)
    assert relay.server is not None
    c.connect("127.0.0.1", relay.server.sockets[0].getsockname()[1])
    return await asyncio.wait_for(resumed, TIMEOUT)


def session_of(harness: Harness, jid: str) -> C2SSession:
    assert harness.node is not None
    s = harness.node.sessions.get(JID.parse(jid))
    assert s is not None and s.sm is not None
    return s


async def bodies(c: Client, n: int) -> list[str]:
    return [str((await c.next_message())["body"]) for _ in range(n)]


async def counters_agree(harness: Harness, c: Client) -> None:
    """Both sides acknowledge everything; then the server's counters are the client's."""
    sm = c.plugin["xep_0198"]
    sm.send_ack()
    sm.request_ack()
    await until(lambda: sm.last_ack == sm.seq and not sm.unacked_queue)
    s = session_of(harness, str(c.boundjid))
    await until(lambda: s.sm is not None and s.sm.pending == 0)
    assert s.sm is not None
    assert s.sm.h_in == sm.seq  # every stanza the client sent, counted once
    assert s.sm.acked == sm.handled  # every stanza the server sent, acknowledged


async def test_cut_mid_conversation_resume_gets_everything_once(
        harness: Harness, netcut: NetCut) -> None:
    await harness.user("alice")
    alice = await phone(harness, netcut)
    bob = await harness.logged_in("bob")
    before = session_of(harness, ALICE)
    for i in range(5):
        bob.send_message(mto=ALICE, mbody=f"m{i}", mtype="chat")
    assert await bodies(alice, 5) == [f"m{i}" for i in range(5)]
    # the network goes; the server does not notice and goes on writing into the dead link
    netcut.last.cut()
    await asyncio.wait_for(alice.gone.wait(), TIMEOUT)
    for i in range(5, 12):
        bob.send_message(mto=ALICE, mbody=f"m{i}", mtype="chat")
    await until(lambda: before.sm is not None and before.sm.pending >= 7)
    resumed = await resume(alice, netcut)
    assert resumed["h"] is not None
    after = session_of(harness, ALICE)
    # taken over: the old session object is finished (its transport closed by the server)
    assert after is not before and before.state == CLOSED and before.jid is None
    for i in range(12, 15):
        bob.send_message(mto=ALICE, mbody=f"m{i}", mtype="chat")
    bob.send_message(mto=ALICE, mbody="end", mtype="chat")
    # every message, in order, exactly once: what was lost on the dead link came again
    assert await bodies(alice, 11) == [f"m{i}" for i in range(5, 15)] + ["end"]
    assert alice.messages.empty()
    await counters_agree(harness, alice)


async def test_unacked_outbound_resent_after_resume_delivered_once(
        harness: Harness, netcut: NetCut) -> None:
    await harness.user("alice")
    alice = await phone(harness, netcut)
    bob = await harness.logged_in("bob")
    sm = alice.plugin["xep_0198"]
    sm.window = sm.window_counter = 1000  # the client asks for no ack meanwhile
    # a0..a2 reach the server, which handles them, but the client has no ack for them yet
    for i in range(3):
        alice.send_message(mto="bob@localhost/test", mbody=f"a{i}", mtype="chat")
    assert await bodies(bob, 3) == ["a0", "a1", "a2"]
    assert len(sm.unacked_queue) >= 3
    # a3..a5 are lost on the way up; then the connection dies
    netcut.last.blackhole_upstream()
    for i in range(3, 6):
        alice.send_message(mto="bob@localhost/test", mbody=f"a{i}", mtype="chat")
    await until(lambda: sm.seq >= 3 and len(sm.unacked_queue) >= 6)
    await asyncio.sleep(0.2)
    netcut.last.cut(server_notices=True)
    await asyncio.wait_for(alice.gone.wait(), TIMEOUT)
    # sent while disconnected: slixmpp holds it until the session is back
    alice.send_message(mto="bob@localhost/test", mbody="a6", mtype="chat")
    resumed = await resume(alice, netcut)
    # the server's h told slixmpp that a0..a2 arrived and a3..a5 did not: only those are resent,
    # in order (slixmpp writes the message it held back, a6, before its resent ones: the
    # server delivers in the order it reads)
    got = await bodies(bob, 4)
    assert [b for b in got if b != "a6"] == ["a3", "a4", "a5"] and "a6" in got
    alice.send_message(mto="bob@localhost/test", mbody="end", mtype="chat")
    assert await bodies(bob, 1) == ["end"]
    assert bob.messages.empty()
    assert resumed is not None
    await counters_agree(harness, alice)


async def test_failed_resume_carries_h_and_client_binds_afresh(harness: Harness) -> None:
    await harness.stop_node()
    await harness.start(extra="[sm]\nresume_timeout = 1\n")
    relay = NetCut(harness.port)
    await relay.start()
    try:
        await harness.user("alice")
        alice = await phone(harness, relay)
        bob = await harness.logged_in("bob")
        for i in range(3):
            alice.send_message(mto="bob@localhost/test", mbody=f"a{i}", mtype="chat")
        await bodies(bob, 3)
        sm = alice.plugin["xep_0198"]
        sent = sm.seq
        relay.last.cut(server_notices=True)
        await asyncio.wait_for(alice.gone.wait(), TIMEOUT)
        await asyncio.sleep(0.2)
        await harness.clock.advance(1.1)  # the session times out
        failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        alice.add_event_handler("sm_failed", failed.set_result, disposable=True)
        started: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        alice.add_event_handler("session_start", started.set_result, disposable=True)
        assert relay.server is not None
        alice.connect("127.0.0.1", relay.server.sockets[0].getsockname()[1])
        el = await asyncio.wait_for(failed, TIMEOUT)
        assert el.xml.find("{urn:ietf:params:xml:ns:xmpp-stanzas}item-not-found") is not None
        assert el.xml.get("h") == str(sent)  # every stanza it sent had been handled
        await asyncio.wait_for(started, TIMEOUT)  # and it bound a new session
        await until(lambda: sm.enabled_in and sm.sm_id is not None)
        bob.send_message(mto=ALICE, mbody="after", mtype="chat")
        assert await bodies(alice, 1) == ["after"]
    finally:
        await relay.close()
