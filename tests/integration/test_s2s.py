"""Server-to-server federation between two Hongyan nodes (a.test and b.test), with slixmpp
users on each side: chat both ways, subscriptions and presence across servers, probes,
unavailable when the remote stream drops, disco and ping of remote entities, bounces."""

from __future__ import annotations

import asyncio

from hongyan.server.session import BOUND
from tests.integration.conftest import Harness
from tests.integration.federation import Pair, pair
from tests.integration.test_im import manual, roster_items, wait_presence
from tests.integration.waiting import until

__all__ = ["pair"]

TIMEOUT = 10.0


async def test_chat_both_ways(pair: Pair) -> None:
    alice = await pair.a.logged_in("alice")
    bob = await pair.b.logged_in("bob")
    alice.send_message(mto="bob@b.test", mbody="hello from a", mtype="chat")
    got = await bob.next_message()
    assert got["body"] == "hello from a"
    assert got["from"].full == "alice@a.test/test"
    bob.send_message(mto="alice@a.test/test", mbody="hello from b", mtype="chat")
    got = await alice.next_message()
    assert got["body"] == "hello from b"
    assert got["from"].full == "bob@b.test/test"
    # one outgoing stream each way, reused by what follows
    assert pair.a.node is not None and pair.b.node is not None
    fa, fb = pair.a.node.federation, pair.b.node.federation
    assert fa is not None and fb is not None
    assert set(fa.outgoing) == {("a.test", "b.test")}
    assert set(fb.outgoing) == {("b.test", "a.test")}
    first = fa.outgoing[("a.test", "b.test")]
    for i in range(5):
        alice.send_message(mto="bob@b.test", mbody=f"m{i}", mtype="chat")
    for i in range(5):
        assert (await bob.next_message())["body"] == f"m{i}"
    assert fa.outgoing[("a.test", "b.test")] is first


async def test_streams_are_encrypted_and_dialback_authenticated(pair: Pair) -> None:
    alice = await pair.a.logged_in("alice")
    bob = await pair.b.logged_in("bob")
    alice.send_message(mto="bob@b.test", mbody="x", mtype="chat")
    await bob.next_message()
    assert pair.a.node is not None and pair.b.node is not None
    fa, fb = pair.a.node.federation, pair.b.node.federation
    assert fa is not None and fb is not None
    out = fa.outgoing[("a.test", "b.test")]
    assert out.transport.secure
    (inc,) = [s for s in fb.incoming if s.domains]
    assert inc.transport.secure
    assert inc.domains == {("a.test", "b.test")}


async def test_subscription_and_presence_both_ways(pair: Pair) -> None:
    alice = manual(await pair.a.logged_in("alice"))
    bob = manual(await pair.b.logged_in("bob"))
    alice.send_presence(pto="bob@b.test", ptype="subscribe")
    await wait_presence(bob, "alice@a.test", "subscribe")
    bob.send_presence(pto="alice@a.test", ptype="subscribed")
    await wait_presence(alice, "bob@b.test", "subscribed")
    await wait_presence(alice, "bob@b.test/test")  # his current presence follows
    assert (await roster_items(alice))["bob@b.test"]["subscription"] == "to"
    assert (await roster_items(bob))["alice@a.test"]["subscription"] == "from"
    bob.send_presence(pto="alice@a.test", ptype="subscribe")
    await wait_presence(alice, "bob@b.test", "subscribe")
    alice.send_presence(pto="bob@b.test", ptype="subscribed")
    await wait_presence(bob, "alice@a.test", "subscribed")
    await wait_presence(bob, "alice@a.test/test")
    assert (await roster_items(alice))["bob@b.test"]["subscription"] == "both"
    assert (await roster_items(bob))["alice@a.test"]["subscription"] == "both"
    # broadcast: a change of presence reaches the remote contact
    alice.send_presence(pstatus="at lunch", pshow="away")
    p = await wait_presence(bob, "alice@a.test/test")
    assert p["status"] == "at lunch"
    # probes: a new resource of Bob's learns Alice's presence from her server
    bob2 = manual(await pair.b.client("bob@b.test/phone"))
    p = await wait_presence(bob2, "alice@a.test/test")
    assert p["status"] == "at lunch"
    # and Alice going offline is seen at b.test
    await alice.close()
    await wait_presence(bob, "alice@a.test/test", "unavailable")


async def test_unavailable_when_the_remote_stream_drops(pair: Pair) -> None:
    alice = manual(await pair.a.logged_in("alice"))
    bob = manual(await pair.b.logged_in("bob"))
    alice.send_presence(pto="bob@b.test", ptype="subscribe")
    await wait_presence(bob, "alice@a.test", "subscribe")
    bob.send_presence(pto="alice@a.test", ptype="subscribed")
    await wait_presence(alice, "bob@b.test/test")
    assert pair.a.node is not None
    fa = pair.a.node.federation
    assert fa is not None
    # b.test's stream to a.test breaks (no closing, no unavailable presence sent)
    for s in [s for s in fa.incoming if ("b.test", "a.test") in s.domains]:
        s.transport.close()
    await wait_presence(alice, "bob@b.test/test", "unavailable")


async def test_disco_and_ping_of_remote_entities(pair: Pair) -> None:
    alice = await pair.a.logged_in("alice")
    bob = await pair.b.logged_in("bob")
    info = await alice.plugin["xep_0030"].get_info(jid="b.test", timeout=TIMEOUT)
    assert "urn:xmpp:ping" in info["disco_info"]["features"]
    items = await alice.plugin["xep_0030"].get_items(jid="b.test", timeout=TIMEOUT)
    assert "conference.b.test" in {i[0] for i in items["disco_items"]["items"]}
    await alice.plugin["xep_0199"].ping(jid="b.test", timeout=TIMEOUT)
    await alice.plugin["xep_0199"].ping(jid="bob@b.test/test", timeout=TIMEOUT)
    await bob.plugin["xep_0199"].ping(jid="alice@a.test/test", timeout=TIMEOUT)
    # an IQ to a remote service's domain uses a stream of its own pair of domains
    info = await alice.plugin["xep_0030"].get_info(jid="conference.b.test", timeout=TIMEOUT)
    assert "http://jabber.org/protocol/muc" in info["disco_info"]["features"]


async def test_offline_message_for_a_local_user(pair: Pair) -> None:
    await pair.b.user("bob")
    alice = await pair.a.logged_in("alice")
    alice.send_message(mto="bob@b.test", mbody="while you were out", mtype="chat")
    await until(lambda: _established(pair.a, "b.test"))
    await asyncio.sleep(0.3)
    bob = await pair.b.client("bob@b.test/test")
    got = await bob.next_message()
    assert got["body"] == "while you were out"


def _established(h: Harness, remote: str) -> bool:
    assert h.node is not None and h.node.federation is not None
    out = h.node.federation.outgoing.get((h.domain, remote))
    return out is not None and out.state == BOUND
