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
