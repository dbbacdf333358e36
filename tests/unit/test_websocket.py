"""The WebSocket transport's own framing, as byte tables: the server's text frames (RFC 6455
§5.2) and the length-prefixed messages between two workers."""

from __future__ import annotations

import pytest

from hongyan.transport.websocket import LinkReader, link_frames, text_frame


@pytest.mark.parametrize(("payload", "frame"), [
    (b"", b"\x81\x00"),
    (b"<a/>", b"\x81\x04<a/>"),
    (b"x" * 125, b"\x81\x7d" + b"x" * 125),
    (b"x" * 126, b"\x81\x7e\x00\x7e" + b"x" * 126),  # 16-bit length from 126 on
    (b"x" * 65535, b"\x81\x7e\xff\xff" + b"x" * 65535),
    (b"x" * 65536, b"\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00" + b"x" * 65536),  # 64-bit
])
def test_text_frame(payload: bytes, frame: bytes) -> None:
    assert text_frame(payload) == frame


def test_link_frames_round_trip_in_any_cut() -> None:
    messages = [b"<open/>", b"", b"<message>" + b"x" * 70000 + b"</message>", b"<r/>"]
    wire = link_frames(messages)
    assert wire[:11] == b"\x00\x00\x00\x07<open/>"
    for cut in (1, 3, 4, 5, 11, 15, 1000, len(wire)):
        reader = LinkReader()
        got: list[bytes] = []
        for i in range(0, len(wire), cut):
            got += reader.feed(wire[i:i + cut])
        assert got == messages, cut
