"""XEP-0198 acks and durability: ``<a h/>`` tells the client that the server handled its first
``h`` stanzas, and the client forgets them; so the server answers ``<r/>`` only once what those
stanzas caused survives a ``kill -9`` (issue 25 item 10): here, the archive rows that the
archive writes in batches off the message path, every 5 s here (its ``flush_interval``) or
when the test moves the nodes' stepped clock. A write that fails ends the stream instead of
acknowledging: the client sends its unacknowledged stanzas again on its next stream.
(``test_sm_kill.py`` kills the real server under load.)"""

from __future__ import annotations

import pytest

from tests.integration.conftest import Harness
from tests.integration.rawstream import authed_stream
from tests.integration.test_sm import SM, enable


async def slow_archive(harness: Harness) -> None:
    harness.extra_config = "[mam]\nflush_interval = 5"
    await harness.restart()


async def archived(harness: Harness) -> int:
    assert harness.node is not None
    return int(await harness.node.db.fetchval("SELECT COUNT(*) FROM mam_log") or 0)


async def test_ack_waits_for_the_archive_commit(harness: Harness) -> None:
    await slow_archive(harness)
    bob = await authed_stream(harness, "bob")
    bob.send("<presence/>")
    alice = await authed_stream(harness, "alice")
    await enable(alice, resume=False)
    alice.send("<message to='bob@localhost/raw' type='chat' id='m1'><body>one</body></message>"
               f"<r xmlns='{SM}'/>")
    got = await bob.read_until(b"</message>")
    assert b"<body>one</body>" in got  # delivered at once ...
    with pytest.raises(TimeoutError):  # ... but not acknowledged before it is archived
        await alice.read_until(b"<a ", timeout=0.3)
    assert await archived(harness) == 0
    await harness.clock.advance(5)  # the archive's flush_interval
    ack = await alice.read_element(b"<a ")
    assert b"h='1'" in ack, ack
    assert await archived(harness) == 1
    # nothing outstanding: the next ack comes at once
    alice.send(f"<r xmlns='{SM}'/>")
    ack = await alice.read_element(b"<a ", timeout=2)
    assert b"h='1'" in ack, ack


async def test_acks_keep_their_order(harness: Harness) -> None:
    await slow_archive(harness)
    bob = await authed_stream(harness, "bob")
    bob.send("<presence/>")
    alice = await authed_stream(harness, "alice")
    await enable(alice, resume=False)
    alice.send("<message to='bob@localhost' type='chat'><body>1</body></message>"
               f"<r xmlns='{SM}'/>"
               "<message to='bob@localhost' type='chat'><body>2</body></message>"
               f"<r xmlns='{SM}'/>")
    await bob.read_until(b"<body>2</body>")
    await harness.clock.advance(5)
    first = await alice.read_element(b"<a ")
    second = await alice.read_element(b"<a ")
    assert (b"h='1'" in first and b"h='2'" in second), (first, second)


async def test_failed_archive_write_ends_the_stream_unacknowledged(harness: Harness) -> None:
    await slow_archive(harness)
    assert harness.node is not None
    bob = await authed_stream(harness, "bob")
    bob.send("<presence/>")
    alice = await authed_stream(harness, "alice")
    await enable(alice, resume=False)
    await harness.node.db.execute("DROP VIEW mam_messages")
    await harness.node.db.execute("DROP TABLE mam_log")  # the next write fails
    alice.send("<message to='bob@localhost' type='chat'><body>x</body></message>"
               f"<r xmlns='{SM}'/>")
    await bob.read_until(b"<body>x</body>")
    await harness.clock.advance(5)
    rest = await alice.read_to_close(timeout=10)
    assert b"internal-server-error" in rest, rest
    assert b"<a " not in rest, rest
