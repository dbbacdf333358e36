"""XEP-0352 Client State Indication through the front door: presence and chat states held while
inactive (only the latest of each kept), flushed in order before anything urgent or on
<active/>, and not counted by stream management until sent."""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.conftest import Harness
from tests.integration.rawstream import RawStream, authed_stream
from tests.integration.waiting import quiet

CSI = "urn:xmpp:csi:0"
SM = "urn:xmpp:sm:3"
CHATSTATES = "http://jabber.org/protocol/chatstates"


def chat_state(state: str) -> str:
    return (f"<message to='alice@localhost/raw' type='chat'><{state} xmlns='{CHATSTATES}'/>"
            "</message>")


async def nothing(s: RawStream, marker: bytes = b"<") -> None:
    await quiet(s.read_until(marker, timeout=60), 0.5, "stanza")


async def test_inactive_holds_until_urgent(harness: Harness) -> None:
    s = await authed_stream(harness, "alice")
    bob = await harness.logged_in("bob")
    s.send(f"<inactive xmlns='{CSI}'/>")
    await asyncio.sleep(0.1)
    bob.send_presence(pto="alice@localhost/raw", pstatus="one")
    bob.send_raw(chat_state("composing"))
    bob.send_presence(pto="alice@localhost/raw", pstatus="two")
    bob.send_raw(chat_state("paused"))
    await nothing(s)
    bob.send_message(mto="alice@localhost/raw", mbody="hello", mtype="chat")
    out = s.buffer + await s.read_until(b"hello")
    out += await s.read_until(b"</message>")
    s.buffer = b""
    assert b"one" not in out and b"composing" not in out, out  # superseded
    assert out.index(b"<paused") < out.index(b">two<") or \
        out.index(b">two<") < out.index(b"<paused"), out
    # in order: the latest presence and chat state first (in the order of their latest
    # version), then the urgent message
    assert out.index(b">two<") < out.index(b"hello") and out.index(b"<paused") < \
        out.index(b"hello"), out
    # still inactive: held again, until <active/>
    bob.send_presence(pto="alice@localhost/raw", pstatus="three")
    await nothing(s)
    s.send(f"<active xmlns='{CSI}'/>")
    out = s.buffer + await s.read_until(b"</presence>")
    assert b"three" in out, out
    # active: presence flows at once
    bob.send_presence(pto="alice@localhost/raw", pstatus="four")
    assert b"four" in await s.read_until(b"</presence>")
    s.close()


async def test_iq_is_urgent(harness: Harness) -> None:
    s = await authed_stream(harness, "alice")
    bob = await harness.logged_in("bob")
    s.send(f"<inactive xmlns='{CSI}'/>")
    await asyncio.sleep(0.1)
    bob.send_presence(pto="alice@localhost/raw", pstatus="held")
    await nothing(s)
    s.send("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
    out = s.buffer + await s.read_until(b"id='p1'")
    assert b"held" in out and out.index(b"held") < out.index(b"id='p1'"), out
    s.close()


async def test_held_not_counted_by_sm(harness: Harness) -> None:
    s = await authed_stream(harness, "alice")
    bob = await harness.logged_in("bob")
    s.send(f"<enable xmlns='{SM}'/>")
    await s.read_element(b"<enabled")
    s.send(f"<inactive xmlns='{CSI}'/>")
    await asyncio.sleep(0.1)
    for i in range(3):
        bob.send_presence(pto="alice@localhost/raw", pstatus=f"s{i}")
    await nothing(s)
    s.send(f"<active xmlns='{CSI}'/>")
    out = await s.read_until(b"</presence>")
    assert b"s2" in out and b"s0" not in out, out
    # one presence was sent (the two superseded ones never were): acking 2 is too high
    s.send(f"<a xmlns='{SM}' h='2'/>")
    out = await s.read_to_close()
    assert f"<handled-count-too-high xmlns='{SM}' h='2' send-count='1'/>".encode() in out, out


async def test_slixmpp_csi(harness: Harness) -> None:
    await harness.user("alice")
    alice = await harness.client("alice@localhost/sx", plugins=("xep_0352",))
    bob = await harness.logged_in("bob")
    while not alice.presences.empty():
        alice.presences.get_nowait()
    assert alice.plugin["xep_0352"].enabled
    alice.plugin["xep_0352"].send_inactive()
    await asyncio.sleep(0.2)
    bob.send_presence(pto="alice@localhost/sx", pstatus="away for now")
    with pytest.raises(TimeoutError):
        await alice.next_presence(timeout=0.5)
    bob.send_message(mto="alice@localhost/sx", mbody="wake up", mtype="chat")
    p = await alice.next_presence()
    assert p["status"] == "away for now"
    assert (await alice.next_message())["body"] == "wake up"
