"""The archive's queue on the event loop: what it keeps, and the rows made of it."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.micro import _accounts, _bound_session, _node
from hongyan.modules.mam import Mam, conversation, expand
from hongyan.server.hooks import StanzaInbound


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


async def test_message_stopped_after_the_archive_hook_is_not_archived(tmp_path: Path) -> None:
    """A hook after the archive's may still stop a message: it was queued without its
    stanza; it is neither delivered nor written (and the next message gets its own row)."""
    node = await _node(tmp_path)
    try:
        await _accounts(node, "user1", "user2")
        sender, _ = _bound_session(node, "user1")
        _, sink = _bound_session(node, "user2")
        delivered: list[bytes] = []
        sink.write = delivered.append  # type: ignore[method-assign]
        node.hooks.on(StanzaInbound, lambda ev: ev.stanza.find_text("body") == "stop",
                      priority=-100)
        for body in ("one", "stop", "two"):
            sender.data_received(f"<message to='user2@localhost/r' type='chat' id='{body}'>"
                                 f"<body>{body}</body></message>".encode())
        mam = node.modules["mam"]
        assert isinstance(mam, Mam)
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
