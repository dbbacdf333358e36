"""OMEMO (XEP-0384) end to end through Hongyan, on SQLite and PostgreSQL: slixmpp clients with
the slixmpp-omemo plugin (from PyPI, unchanged) publish their device lists and bundles over PEP,
learn each other's devices from PEP notifications, and exchange encrypted messages, to an online
recipient, to an offline one, and to a second device of the same user. The server must never
see the plaintext: it is looked for in every table of the database, in the SQLite files and in
the server's log."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

import pytest
from omemo.storage import JSONType, Just, Maybe, Nothing, Storage
from slixmpp import JID
from slixmpp.plugins.base import register_plugin
from slixmpp_omemo import XEP_0384

from hongyan.modules.roster import Roster, RosterItem
from tests.integration.clients import Client
from tests.integration.conftest import Harness
from tests.integration.waiting import until

SECRET = "the cake is in the second drawer"
SECRET_2 = "meet me at the old mill at dawn"
SECRET_3 = "both of your phones should read this"


class JsonStorage(Storage):
    """slixmpp-omemo's key/value storage in one JSON file (a device's keys and sessions)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.data: dict[str, JSONType] = json.loads(path.read_text()) if path.exists() else {}

    async def _load(self, key: str) -> Maybe[JSONType]:
        if key in self.data:
            return Just(self.data[key])
        return Nothing()

    async def _store(self, key: str, value: JSONType) -> None:
        self.data[key] = value
        self.path.write_text(json.dumps(self.data))

    async def _delete(self, key: str) -> None:
        self.data.pop(key, None)
        self.path.write_text(json.dumps(self.data))


class OmemoPlugin(XEP_0384):  # type: ignore[misc]
    """The plugin with file storage and blind trust before verification (BTBV)."""

    default_config = {"fallback_message": "This message is OMEMO encrypted.",
                      "json_file_path": None}

    def plugin_init(self) -> None:
        self._store = JsonStorage(Path(self.json_file_path))
        super().plugin_init()

    @property
    def storage(self) -> Storage:
        return self._store

    @property
    def _btbv_enabled(self) -> bool:
        return True

    async def _devices_blindly_trusted(self, blindly_trusted: Any, identifier: Any) -> None:
        pass

    async def _prompt_manual_trust(self, manually_trusted: Any, identifier: Any) -> None:
        raise AssertionError("BTBV should have trusted every device")


register_plugin(OmemoPlugin)
OMEMO_PLUGINS = ("xep_0004", "xep_0060", "xep_0115", "xep_0163", "xep_0280", "xep_0334")


async def omemo_client(h: Harness, jid: str, store: Path) -> Client:
    c = await h.client(jid, login=False, plugins=OMEMO_PLUGINS)
    c.use_message_ids = True
    c.register_plugin("xep_0384", {"json_file_path": str(store)}, module=sys.modules[__name__])
    ready = asyncio.Event()
    c.add_event_handler("omemo_initialized", lambda _e: ready.set())
    await c.plugin["xep_0115"].update_caps(broadcast=False)  # the hash presence carries
    assert await c.login(h.port)
    await asyncio.wait_for(ready.wait(), 30)
    await c.plugin["xep_0280"].enable()
    return c


async def devices(c: Client, bare: str, want: int) -> None:
    """Wait until ``c`` knows ``want`` devices of ``bare`` (from PEP notifications)."""
    sm = await c.plugin["xep_0384"].get_session_manager()
    for _ in range(100):
        if len(await sm.get_device_information(bare)) >= want:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{c.boundjid} never learned {want} devices of {bare}")


async def send_encrypted(sender: Client, to: str, text: str) -> None:
    msg = sender.make_message(mto=JID(to), mbody=text, mtype="chat")
    enc, errors = await sender.plugin["xep_0384"].encrypt_message(msg, JID(to))
    assert not errors, errors
    assert enc is not None and text not in str(enc)
    enc.send()


async def receive_decrypted(c: Client, timeout: float = 15) -> str:
    plugin = c.plugin["xep_0384"]

    async def loop() -> str:
        while True:
            msg = await c.next_message(timeout)
            if msg["type"] != "chat" or not plugin.is_encrypted(msg):
                continue  # carbons, PEP headlines…
            decrypted, _device = await plugin.decrypt_message(msg)
            return str(decrypted["body"])

    return await asyncio.wait_for(loop(), timeout)


async def everything_stored(h: Harness) -> str:
    """Every row of every table, as text."""
    assert h.node is not None
    db = h.node.db
    if db.dialect == "sqlite":
        tables = [r[0] for r in await db.fetchall(
            "SELECT name FROM sqlite_master WHERE type = 'table'")]
    else:
        tables = [r[0] for r in await db.fetchall(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")]
    assert "pubsub_items" in tables and "offline_messages" in tables
    out = []
    for t in tables:
        for row in await db.fetchall(f"SELECT * FROM {t}"):
            out.append(repr(tuple(row)))
    return "\n".join(out)


async def test_omemo_end_to_end(harness: Harness, tmp_path: Path,
                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="hongyan")
    await harness.user("alice")
    await harness.user("bob")
    assert harness.node is not None
    roster = harness.node.modules["roster"]
    assert isinstance(roster, Roster)
    for x, y in (("alice", "bob"), ("bob", "alice")):
        await roster.change(x, f"{y}@localhost",
                            lambda _c, y=y: RosterItem(f"{y}@localhost", subscription="both"))

    alice = await omemo_client(harness, "alice@localhost/laptop", tmp_path / "alice.json")
    bob = await omemo_client(harness, "bob@localhost/laptop", tmp_path / "bob.json")
    await devices(alice, "bob@localhost", 1)
    await devices(bob, "alice@localhost", 1)

    # online
    await send_encrypted(alice, "bob@localhost", SECRET)
    assert await receive_decrypted(bob) == SECRET

    # offline: bob's only device is gone; the message waits in offline storage
    await bob.close()
    await until(lambda: not harness.node.sessions.resources("bob@localhost"))
    await send_encrypted(alice, "bob@localhost", SECRET_2)
    waiting = 0
    for _ in range(100):  # the message waits in offline storage
        waiting = await harness.node.db.fetchval(
            "SELECT COUNT(*) FROM offline_messages WHERE username = 'bob'")
        if waiting:
            break
        await asyncio.sleep(0.05)
    assert waiting == 1
    bob = await omemo_client(harness, "bob@localhost/laptop", tmp_path / "bob.json")
    assert await receive_decrypted(bob) == SECRET_2

    # a second device of bob: its device list update reaches alice over PEP
    phone = await omemo_client(harness, "bob@localhost/phone", tmp_path / "bob-phone.json")
    await devices(alice, "bob@localhost", 2)
    await send_encrypted(alice, "bob@localhost", SECRET_3)
    got = await asyncio.gather(receive_decrypted(bob), receive_decrypted(phone))
    assert got == [SECRET_3, SECRET_3]

    # and back: bob answers from his phone
    await devices(phone, "alice@localhost", 1)
    await send_encrypted(phone, "alice@localhost", "and " + SECRET)
    assert await receive_decrypted(alice) == "and " + SECRET

    # the server never saw a plaintext
    stored = await everything_stored(harness)
    assert "omemo" in stored.lower() or "axolotl" in stored  # the PEP nodes are there
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("hongyan"))
    for text in (SECRET, SECRET_2, SECRET_3):
        assert text not in stored
        assert text not in logged
    if harness.node.db.dialect == "sqlite":
        await harness.stop_node()
        for f in tmp_path.glob("hongyan.db*"):
            raw = f.read_bytes()
            for text in (SECRET, SECRET_2, SECRET_3):
                assert text.encode() not in raw
