"""The archive's queue on the event loop: what it keeps, and the rows made of it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from bench.micro import _accounts, _bound_session, _node
from hongyan.modules.mam import Mam, conversation, expand
from hongyan.server.c2s import C2SSession
from hongyan.server.hooks import StanzaInbound
from hongyan.server.node import Node


@pytest.mark.parametrize(("queued", "row"), [
    ([1, "romeo", "juliet", "romeo@localhost/phone", "juliet@localhost/a/b", "<m/>"],
     (1, "romeo", "juliet", "romeo@localhost", "phone", "juliet@localhost", "a/b",
      "juliet@localhost romeo@localhost", "<m/>")),
    ([2, None, "juliet", "nurse@elsewhere.example", "juliet@localhost", "<m/>"],
     (2, None, "juliet", "nurse@elsewhere.example", "", "juliet@localhost", "",
      "juliet@localhost nurse@elsewhere.example", "<m/>")),
])
def test_expand_makes_the_table_row(queued: list[object], row: tuple[object, ...]) -> None:
    assert expand(queued) == row
    assert row[7] == conversation(str(row[3]), str(row[5]))


async def _chat(node: Node) -> tuple[C2SSession, list[bytes], Mam]:
    """user1 and user2 bound (real accounts): user1's session, what user2's transport was
    given, the archive."""
    await _accounts(node, "user1", "user2")
    sender, _ = _bound_session(node, "user1")
    _, sink = _bound_session(node, "user2")
    delivered: list[bytes] = []
    sink.write = delivered.append  # type: ignore[method-assign]
    mam = node.modules["mam"]
    assert isinstance(mam, Mam)
    return sender, delivered, mam


async def _drained(session: C2SSession, queued: Callable[[], int] = lambda: 0,
                   bound: int = 0) -> None:
    """Wait (up to 5 s) until ``session`` has handled every stanza it read; while it has
    not, ``queued()`` never exceeds ``bound`` (when given)."""
    for _ in range(500):
        if session._pending is None and session._task is None:
            return
        if bound:
            assert queued() <= bound
        await asyncio.sleep(0.01)


async def test_message_stopped_after_the_archive_hook_is_not_archived(tmp_path: Path) -> None:
    """A hook after the archive's may still stop a message: it was queued without its
    stanza; it is neither delivered nor written (and the next message gets its own row)."""
    node = await _node(tmp_path)
    try:
        sender, delivered, mam = await _chat(node)
        node.hooks.on(StanzaInbound, lambda ev: ev.stanza.find_text("body") == "stop",
                      priority=-100)
        for body in ("one", "stop", "two"):
            sender.data_received(f"<message to='user2@localhost/r' type='chat' id='{body}'>"
                                 f"<body>{body}</body></message>".encode())
        await mam.flush()
        rows = await node.db.fetchall("SELECT id, sender, recipient, stanza FROM mam_log "
                                      "ORDER BY id")
        assert [(s, r) for _, s, r, _ in rows] == [("user1", "user2")] * 2
        assert ["<body>one</body>" in x for *_, x in rows] == [True, False]
        assert ["<body>two</body>" in x for *_, x in rows] == [False, True]
        # the recipient got the two, each with the stanza-id of its row
        wire = b"".join(delivered).decode()
        assert "<body>stop</body>" not in wire
        for (mid, *_), body in zip(rows, ("one", "two"), strict=True):
            assert (f"<body>{body}</body><stanza-id xmlns='urn:xmpp:sid:0' "
                    f"by='user2@localhost' id='{mid}'/></message>") in wire
    finally:
        await node.stop()


async def test_a_full_queue_makes_the_sender_wait(tmp_path: Path) -> None:
    """Writes falling behind must not grow the archive's queue without bound: past
    ``mam.max_queued`` the message is still delivered, and the sender's next stanzas wait
    until the queue was handed to the database; nothing is lost."""
    node = await _node(tmp_path, "[mam]\nflush_rows = 10\nmax_queued = 40\nflush_interval = 5\n")
    try:
        sender, delivered, mam = await _chat(node)
        n = 300
        sender.data_received(b"".join(
            f"<message to='user2@localhost/r' type='chat' id='m{i}'><body>{i}</body></message>"
            .encode() for i in range(n)))
        # the loop has not run: the first 40 were queued, the rest wait in the session
        assert len(mam._queue) == 40
        assert sender._pending is not None and len(sender._pending) == n - 40
        await _drained(sender, lambda: len(mam._queue), 40)
        await mam.flush()
        assert await node.db.fetchval("SELECT COUNT(*) FROM mam_log") == n
        node.flush_dirty()
        wire = b"".join(delivered).decode()
        assert [f"id='m{i}'" in wire for i in range(n)] == [True] * n
    finally:
        await node.stop()


async def test_a_full_room_archive_queue_makes_the_sender_wait(tmp_path: Path) -> None:
    """The same bound for a room's archive: past ``mam.max_queued`` queued room messages the
    sender's next stanzas wait until the queue was handed to the database; every message is
    still broadcast and archived."""
    from bench.micro import MUC_NS, _settle
    from hongyan.modules.muc import Muc

    node = await _node(tmp_path, "[mam]\nflush_rows = 10\nmax_queued = 40\nflush_interval = 5\n")
    try:
        await _accounts(node, "user0")
        owner, sink = _bound_session(node, "user0")
        delivered: list[bytes] = []
        sink.write = delivered.append  # type: ignore[method-assign]
        room = "bench@conference.localhost"
        owner.data_received(f"<presence to='{room}/n0'><x xmlns='{MUC_NS}'/></presence>".encode())
        await _settle(node, 1)
        owner.data_received(f"<iq type='set' to='{room}' id='c'><query xmlns='{MUC_NS}#owner'>"
                            "<x xmlns='jabber:x:data' type='submit'/></query></iq>".encode())
        await _drained(owner)
        muc = node.modules["muc"]
        assert isinstance(muc, Muc)
        queue = muc.archive._writer._queue
        n = 300
        owner.data_received(b"".join(
            f"<message to='{room}' type='groupchat' id='g{i}'><body>{i}</body></message>"
            .encode() for i in range(n)))
        # the loop has not run: the first 40 were queued, the rest wait in the session
        assert len(queue) == 40
        assert owner._pending is not None and len(owner._pending) == n - 40
        await _drained(owner, lambda: len(muc.archive._writer._queue), 40)
        await muc.archive.flush()
        assert await node.db.fetchval("SELECT COUNT(*) FROM muc_archive") == n
        node.flush_dirty()
        wire = b"".join(delivered).decode()
        assert [f"id='g{i}'" in wire for i in range(n)] == [True] * n
    finally:
        await node.stop()
