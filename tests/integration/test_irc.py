"""The IRC listener over real sockets: a raw IRC client and slixmpp users on one server.

An IRC connection is a session of its account (resource ``irc-…``): a slixmpp user chats
with it 1:1 and sees it in rooms as an ordinary occupant."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.conftest import Harness
from tests.integration.ircclient import IrcClient
from tests.integration.rawstream import PASSWORD

IRC = """
[irc]
enabled = true
bind = ["127.0.0.1"]
port = 0
tls_port = 0
allow_plaintext_auth = true
lines_burst = 200
"""


@pytest.fixture
async def irc(tmp_path: Path, storage_url: str) -> AsyncIterator[Harness]:
    h = Harness(tmp_path, storage_url)
    await h.start(extra=IRC)
    try:
        yield h
    finally:
        await h.stop_node()


@pytest.fixture
async def clients() -> AsyncIterator[list[IrcClient]]:
    made: list[IrcClient] = []
    try:
        yield made
    finally:
        for c in made:
            await c.close()


def ports(h: Harness) -> tuple[int, int]:
    assert h.node is not None
    return h.node.irc_port, h.node.irc_tls_port


async def test_sasl_login_over_tls_ping_and_a_chat_both_ways(
        irc: Harness, clients: list[IrcClient]) -> None:
    _, tls_port = ports(irc)
    await irc.user("alice")
    bob = await irc.logged_in("bob")
    c = IrcClient()
    clients.append(c)
    await c.login_sasl(tls_port, "alice", PASSWORD, tls=True)
    c.send("PING :are-you-there")
    await c.expect(r"^:\S+ PONG \S+ are-you-there$")
    # XMPP -> IRC: a chat to the bare JID reaches the IRC session
    bob.send_message(mto="alice@localhost", mbody="hello from xmpp", mtype="chat")
    m = await c.expect(r"PRIVMSG alice :hello from xmpp$")
    assert m.string.startswith("@time=") and " :bob!bob@localhost PRIVMSG" in m.string
    # IRC -> XMPP: a PRIVMSG to a nick is a chat to that account
    c.send("PRIVMSG bob :hello from irc")
    msg = await bob.next_message()
    assert msg["body"] == "hello from irc" and msg["type"] == "chat"
    assert str(msg["from"]).startswith("alice@localhost/irc-")


async def test_pass_login_on_the_plain_port(irc: Harness, clients: list[IrcClient]) -> None:
    port, _ = ports(irc)
    await irc.user("carol")
    dave = await irc.logged_in("dave")
    c = IrcClient()
    clients.append(c)
    await c.connect(port)
    c.send(f"PASS carol:{PASSWORD}", "NICK someone", "USER carol 0 * :Carol")
    await c.expect(r"^:someone!carol@localhost NICK :?carol$")
    await c.expect(r" 001 carol ")
    dave.send_message(mto="carol@localhost", mbody="ping carol", mtype="chat")
    await c.expect(r":dave!dave@localhost PRIVMSG carol :ping carol$")
    c.send("NOTICE dave :a notice")
    msg = await dave.next_message()
    assert msg["body"] == "a notice"


async def test_bad_passwords(irc: Harness, clients: list[IrcClient]) -> None:
    port, tls_port = ports(irc)
    await irc.user("erin")
    c = IrcClient()
    clients.append(c)
    await c.connect(tls_port, tls=True)
    c.send("CAP REQ :sasl", "NICK erin", "USER erin 0 * :E", "AUTHENTICATE PLAIN")
    await c.expect(r"^AUTHENTICATE \+")
    c.send("AUTHENTICATE AGVyaW4Ad3Jvbmc=")  # \0erin\0wrong
    await c.expect(r" 904 \S+ :SASL authentication failed$")
    p = IrcClient()
    clients.append(p)
    await p.connect(port)
    p.send("PASS erin:wrong", "NICK erin", "USER erin 0 * :E")
    await p.expect(r" 464 erin :Password incorrect$")
    assert any("ERROR :Closing link" in line for line in await p.closed())
    n = IrcClient()
    clients.append(n)
    await n.connect(port)
    n.send("NICK erin", "USER erin 0 * :E")
    await n.expect(r" 464 erin :Password required")


async def test_passwords_only_over_tls_unless_allowed(
        tmp_path: Path, storage_url: str, clients: list[IrcClient]) -> None:
    h = Harness(tmp_path, storage_url)
    await h.start(extra=IRC.replace("allow_plaintext_auth = true", ""))
    try:
        await h.user("frank")
        port, tls_port = ports(h)
        c = IrcClient()
        clients.append(c)
        await c.connect(port)
        c.send(f"PASS frank:{PASSWORD}", "NICK frank", "USER frank 0 * :F")
        await c.expect(r"NOTICE \* :Passwords only over TLS")
        await c.expect(r" 464 ")
        t = IrcClient()
        clients.append(t)
        await t.login_pass(tls_port, "frank", PASSWORD, tls=True)
    finally:
        await h.stop_node()


async def test_irc_is_off_by_default(harness: Harness) -> None:
    assert harness.node is not None and harness.node.irc_port == 0


async def test_irc_with_several_workers_is_a_config_error(tmp_path: Path) -> None:
    from hongyan.config.loader import ConfigError, load_config
    path = tmp_path / "h.toml"
    path.write_text("[server]\nworkers = 2\n[irc]\nenabled = true\n")
    with pytest.raises(ConfigError, match=r"irc\.enabled needs server\.workers = 1"):
        load_config(path)

