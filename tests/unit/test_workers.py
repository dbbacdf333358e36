"""The pure parts of hongyan.cluster.workers: account homes and JIDs read back from a frame."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Coroutine
from typing import Any

import pytest

from hongyan.cluster.workers import _jid, home_of
from hongyan.xmpp.jid import JID


@pytest.mark.parametrize("text,parts", [
    ("alice@localhost/phone", ("alice", "localhost", "phone")),
    ("alice@localhost", ("alice", "localhost", "")),
    ("localhost", ("", "localhost", "")),
    ("conference.localhost/x", ("", "conference.localhost", "x")),
    ("room@conference.localhost/nick/with/slashes",
     ("room", "conference.localhost", "nick/with/slashes")),
    ("a@b/c@d", ("a", "b", "c@d")),
    ("b/c@d", ("", "b", "c@d")),
])
def test_frame_jids_split_as_parse_does(text: str, parts: tuple[str, str, str]) -> None:
    j = _jid(text)
    assert (j.local, j.domain, j.resource) == parts
    assert j == JID.parse(text) and j.text == text


def test_homes_are_stable_and_spread() -> None:
    # a home must not change between processes or releases: it is crc32, not hash()
    assert home_of("alice", 2) == zlib.crc32(b"alice") % 2 == 1
    counts = [0, 0, 0]
    for i in range(3000):
        counts[home_of(f"user{i}", 3)] += 1
    assert min(counts) > 900


def test_a_multicast_frame_makes_each_recipients_copy() -> None:
    """A room message crosses to a worker once (``E``) and its home makes each occupant's copy:
    the same bytes one ``D`` frame per occupant would have carried."""
    from hongyan.cluster.workers import Workers

    sent: list[tuple[bytes, bytes]] = []
    written: list[tuple[str, bytes]] = []

    class Link:
        def send(self, kind: bytes, body: bytes) -> None:
            sent.append((kind, body))

    w = Workers.__new__(Workers)
    w.peers = {1: Link()}  # type: ignore[dict-item]
    w._handed = set()
    w.deliver_here = lambda full, data: written.append((full, data))  # type: ignore[method-assign]
    head, tail = b"<message to='", b"' from='r@conference.localhost/n' type='groupchat'/>"
    recipients = [("a@localhost/phone", b"a@localhost/phone"),
                  ("o'b@localhost/x/y", b"o&apos;b@localhost/x/y")]
    w.multicast(1, head, tail, recipients)
    assert [k for k, _ in sent] == [b"E"]
    w.multicast_here(sent[0][1])
    assert written == [(full, head + esc + tail) for full, esc in recipients]


async def test_a_failing_frame_does_not_lose_the_frames_queued_behind_it() -> None:
    """Frames from a peer are handled in order; while one waits, the next ones queue behind
    it. One whose handling raises is logged, and the queue goes on (849ceb3: the rest of the
    queue was dropped)."""
    from hongyan.cluster.workers import Workers, _Inbound

    done: list[tuple[str, bytes]] = []
    gate = asyncio.Event()
    tasks: list[asyncio.Future[None]] = []

    async def slow(body: bytes) -> None:
        await gate.wait()
        done.append(("slow", body))

    async def bad(body: bytes) -> None:
        raise RuntimeError("a handler's failure")

    def fast(body: bytes) -> None:
        done.append(("fast", body))

    class Node:
        in_batch = False

        def end_batch(self) -> None:
            self.in_batch = False

        def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
            tasks.append(asyncio.ensure_future(coro))

    w = Workers.__new__(Workers)
    w.node = Node()  # type: ignore[assignment]
    w._handlers = {"slow": slow, "bad": bad, "fast": fast}
    inbound = _Inbound(w)

    def frame(topic: bytes, body: bytes) -> bytes:
        payload = b"N" + topic + b"\0" + body
        return len(payload).to_bytes(4, "big") + payload

    inbound.data_received(frame(b"slow", b"1") + frame(b"bad", b"2") + frame(b"fast", b"3"))
    inbound.data_received(frame(b"fast", b"4"))
    assert done == []  # all wait behind the first
    gate.set()
    await asyncio.gather(*tasks)
    assert done == [("slow", b"1"), ("fast", b"3"), ("fast", b"4")]
    inbound.data_received(frame(b"fast", b"5"))  # the queue is gone: handled at once
    assert done[-1] == ("fast", b"5")
