"""Biboumi (Debian's XMPP-IRC gateway) as an external component of the real server, in front
of a real IRC server (ngircd): an XMPP user joins an IRC channel through it, sees its own join,
and talks with a raw IRC client in that channel, both ways."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from slixmpp import JID

from tests.integration.components import components_config
from tests.integration.conftest import Harness
from tests.integration.gateways import (
    IrcWatcher,
    Program,
    loopback_address,
    require_programs,
    start_biboumi,
    start_ngircd,
)

BIBOUMI = "biboumi.localhost"
SECRET = "biboumi-test-secret-9c2e"


class Gateway:
    def __init__(self, harness: Harness, irc: str, programs: list[Program]) -> None:
        self.harness = harness
        self.irc = irc
        self.programs = programs

    def room(self, channel: str) -> str:
        return f"{channel}%{self.irc}@{BIBOUMI}"

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}:\n{p.output()[-4000:]}" for p in self.programs)


@pytest.fixture
async def gateway(harness: Harness, tmp_path: Path) -> AsyncIterator[Gateway]:
    paths = require_programs("biboumi", "ngircd")
    await harness.stop_node()
    node = await harness.start(extra=components_config(0, (BIBOUMI, SECRET)))
    irc = loopback_address()
    programs = [await start_ngircd(paths["ngircd"], tmp_path, irc)]
    gw = Gateway(harness, irc, programs)
    try:
        programs.append(await start_biboumi(paths["biboumi"], tmp_path, BIBOUMI, SECRET,
                                            node.component_port))
        for _ in range(200):
            if BIBOUMI in node.components.connected:
                break
            await asyncio.sleep(0.05)
        assert BIBOUMI in node.components.connected, gw.logs()
        yield gw
    finally:
        for p in reversed(programs):
            await p.stop()


async def test_an_xmpp_user_joins_an_irc_channel_through_biboumi(gateway: Gateway) -> None:
    watcher = await IrcWatcher.join(gateway.irc, "watcher", "#test")
    alice = await gateway.harness.logged_in("alice", plugins=("xep_0045",))
    room = gateway.room("#test")
    try:
        pres, *_ = await alice.plugin["xep_0045"].join_muc_wait(JID(room), "alicenick",
                                                                 timeout=30)
    except Exception as exc:
        raise AssertionError(f"joining {room} failed: {exc}\n{gateway.logs()}") from exc
    # our own join, reflected by the gateway as the occupant alicenick
    assert str(pres["from"]) == f"{room}/alicenick", pres
    assert "110" in {str(c) for c in pres["muc"]["status_codes"]}, pres
    # IRC sees the user join the channel
    joined = await watcher.wait_for("JOIN")
    assert joined.startswith(":alicenick!") and "#test" in joined, joined

    # XMPP -> IRC
    alice.send_message(mto=room, mbody="hello from xmpp", mtype="groupchat")
    line = await watcher.wait_for("PRIVMSG #test")
    assert line.startswith(":alicenick!") and line.endswith(":hello from xmpp"), line

    # IRC -> XMPP
    watcher.send("PRIVMSG #test :hello from irc")
    # (the IRC server's notices come first, as chat messages from the server's JID)
    async def from_irc() -> Any:
        while True:
            m = await alice.next_message()
            if m["body"] == "hello from irc":
                return m

    m = await asyncio.wait_for(from_irc(), 20)
    assert (m["type"], str(m["from"])) == ("groupchat", f"{room}/watcher"), m
    watcher.close()
