"""The pure parts of hongyan.cluster.workers: account homes and JIDs read back from a frame."""

from __future__ import annotations

import zlib

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
    w.deliver_here = lambda full, data: written.append((full, data))  # type: ignore[method-assign]
    head, tail = b"<message to='", b"' from='r@conference.localhost/n' type='groupchat'/>"
    recipients = [("a@localhost/phone", b"a@localhost/phone"),
                  ("o'b@localhost/x/y", b"o&apos;b@localhost/x/y")]
    w.multicast(1, head, tail, recipients)
    assert [k for k, _ in sent] == [b"E"]
    w.multicast_here(sent[0][1])
    assert written == [(full, head + esc + tail) for full, esc in recipients]
