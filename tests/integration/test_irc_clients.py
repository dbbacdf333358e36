"""A real IRC client, irssi (Debian's), in tmux: driven with send-keys, read with
capture-pane, in the same room and in a 1:1 chat with a slixmpp user."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.conftest import Harness
from tests.integration.rawstream import PASSWORD
from tests.integration.test_irc import IRC, groupchat_from, presence_from
from tests.integration.test_muc import C, witch

ROOM = "coven@conference.localhost"
TIMEOUT = 20.0


def require(*names: str) -> None:
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        why = f"{', '.join(missing)} not installed"
        if os.environ.get("CI"):
            pytest.fail(f"{why}; in CI these tests must run (.ci/run installs them)")
        pytest.skip(f"{why}: apt-get install -y irssi tmux to run these tests")


class Tmux:
    """One tmux server of our own (its own socket) running one program."""

    def __init__(self, tmp: Path) -> None:
        self.socket = f"hongyan-irc-{secrets.token_hex(4)}"
        self.tmp = tmp

    async def run(self, *args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            "tmux", "-L", self.socket, *args, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
        if proc.returncode != 0:
            raise RuntimeError(f"tmux {args[0]} failed: {err.decode()}")
        return out.decode("utf-8", "replace")

    async def start(self, command: str) -> None:
        # (the tmux server it starts keeps its standard streams: not our pipes)
        proc = await asyncio.create_subprocess_exec(
            "tmux", "-L", self.socket, "new-session", "-d", "-s", "t", "-x", "160", "-y", "50",
            command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL)
        assert await asyncio.wait_for(proc.wait(), TIMEOUT) == 0, "tmux did not start"

    async def keys(self, text: str) -> None:
        await self.run("send-keys", "-t", "t", "-l", text)
        await self.run("send-keys", "-t", "t", "Enter")

    async def screen(self) -> str:
        return await self.run("capture-pane", "-p", "-t", "t")

    async def wait_for(self, pattern: str, timeout: float = TIMEOUT) -> str:
        """The screen once ``pattern`` (a regular expression) is on it."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        text = ""
        while loop.time() < end:
            text = await self.screen()
            if re.search(pattern, text):
                return text
            await asyncio.sleep(0.2)
        raise AssertionError(f"{pattern!r} never showed; the screen:\n{text}")

    async def stop(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError):
            await self.run("kill-server")


@pytest.fixture
async def server(tmp_path: Path, storage_url: str) -> AsyncIterator[Harness]:
    require("irssi", "tmux")
    h = Harness(tmp_path, storage_url)
    await h.start(extra=IRC)
    try:
        yield h
    finally:
        await h.stop_node()


@pytest.fixture
async def tmux(tmp_path: Path) -> AsyncIterator[Tmux]:
    t = Tmux(tmp_path)
    try:
        yield t
    finally:
        await t.stop()


async def irssi(h: Harness, t: Tmux, user: str) -> None:
    assert h.node is not None
    home = t.tmp / "irssi"
    home.mkdir(exist_ok=True)
    # (its own pacing of commands off: the server's line budget is what is tested)
    (home / "config").write_text('settings = { "irc/core" = { cmd_queue_speed = "0msec"; '
                                 'cmds_max_at_once = "100"; }; };\n')
    await t.start(f"TERM=screen irssi --home={home} -c 127.0.0.1 -p {h.node.irc_port} "
                  f"-w {user}:{PASSWORD} -n {user}")
    await t.wait_for(r"Welcome to the Hongyan IRC gateway")


async def test_irssi_and_an_xmpp_user_in_one_room_and_in_a_chat(
        server: Harness, tmux: Tmux) -> None:
    crone = await witch(server, "crone")
    await crone.create(ROOM, "crone")
    await server.user("alice")
    await irssi(server, tmux, "alice")
    await tmux.keys("/join #coven")
    await tmux.wait_for(r"alice \[\S+@localhost\] has joined #coven")
    await crone.expect(presence_from(crone, f"{ROOM}/alice"))
    # messages both ways
    crone.c.send_message(mto=ROOM, mbody="hello irssi", mtype="groupchat")
    await tmux.wait_for(r"<@crone> hello irssi")
    await tmux.keys("hello crone")
    await crone.expect(groupchat_from(f"{ROOM}/alice", "hello crone"))
    # the topic both ways
    crone.c.send_message(mto=ROOM, msubject="brewing", mtype="groupchat")
    await tmux.wait_for(r"crone changed the topic of #coven to: brewing")
    # joins and parts of an XMPP occupant
    hag = await witch(server, "hag")
    await hag.join(ROOM, "hag")
    await tmux.wait_for(r"hag \[hag@conference.localhost\] has joined #coven")
    hag.c.send_presence(pto=f"{ROOM}/hag", ptype="unavailable")
    await tmux.wait_for(r"hag \[hag@conference.localhost\] has left #coven")
    # a 1:1 chat both ways, in a query window
    await tmux.keys("/query crone")
    await tmux.wait_for(r"Starting query in \S+ with crone")
    crone.c.send_message(mto="alice@localhost", mbody="just you and me", mtype="chat")
    await tmux.wait_for(r"<crone> just you and me")
    await tmux.keys("and me too")
    msg = await crone.expect(lambda el: el.tag == f"{C}message" and el.get("type") == "chat")
    assert msg.findtext(f"{C}body") == "and me too"
    assert msg.get("from", "").startswith("alice@localhost/irc-")
    # a part from irssi
    await tmux.keys("/window goto #coven")
    await tmux.keys("/part #coven")
    await crone.expect(presence_from(crone, f"{ROOM}/alice", "unavailable"))


async def test_a_kick_from_xmpp_removes_irssi(server: Harness, tmux: Tmux) -> None:
    crone = await witch(server, "crone")
    await crone.create(ROOM, "crone")
    await server.user("alice")
    await irssi(server, tmux, "alice")
    await tmux.keys("/join #coven")
    await tmux.wait_for(r"has joined #coven")
    await crone.expect(presence_from(crone, f"{ROOM}/alice"))
    await crone.muc.set_role(ROOM, "alice", "none", reason="out you go")
    await tmux.wait_for(r"alice was kicked from #coven by crone \[out you go\]")
    await crone.expect(presence_from(crone, f"{ROOM}/alice", "unavailable"))


async def test_irssi_logs_in_with_sasl_over_tls(server: Harness, tmux: Tmux) -> None:
    assert server.node is not None
    await server.user("alice")
    bob = await server.logged_in("bob")
    home = tmux.tmp / "irssi-sasl"
    home.mkdir()
    (home / "config").write_text(f"""
chatnets = {{ hongyan = {{ type = "IRC"; sasl_mechanism = "PLAIN"; sasl_username = "alice";
  sasl_password = "{PASSWORD}"; }}; }};
servers = ( {{ address = "127.0.0.1"; chatnet = "hongyan"; port = "{server.node.irc_tls_port}";
  use_tls = "yes"; tls_verify = "no"; autoconnect = "yes"; }} );
settings = {{ core = {{ nick = "alice"; }}; }};
""")
    await tmux.start(f"TERM=screen irssi --home={home}")
    await tmux.wait_for(r"You are now logged in as alice")
    await tmux.wait_for(r"Welcome to the Hongyan IRC gateway")
    await tmux.keys("/msg bob over tls")
    msg = await bob.next_message()
    assert msg["body"] == "over tls"
