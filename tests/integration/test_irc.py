"""The IRC listener over real sockets: a raw IRC client and slixmpp users on one server.

An IRC connection is a session of its account (resource ``irc-…``): a slixmpp user chats
with it 1:1 and sees it in rooms as an ordinary occupant."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Harness
from tests.integration.ircclient import IrcClient
from tests.integration.rawstream import PASSWORD
from tests.integration.test_metrics import v, values
from tests.integration.test_muc import C, Witch, codes, item, witch

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
    # /metrics counts the IRC session apart from the XMPP ones
    vals = await values(irc)
    assert v(vals, "hongyan_sessions", transport="irc") == 1
    assert v(vals, "hongyan_sessions", transport="tls") == 1  # dave


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



# -- rooms ---------------------------------------------------------------------------------------
ROOM = "coven@conference.localhost"


def presence_from(w: Witch, jid: str, kind: str | None = None) -> Callable[[Any], bool]:
    def pred(el: Any) -> bool:
        return (el.tag == f"{C}presence" and el.get("from") == jid
                and (kind is None or el.get("type") == kind))
    return pred


def groupchat_from(jid: str, body: str) -> Callable[[Any], bool]:
    def pred(el: Any) -> bool:
        return (el.tag == f"{C}message" and el.get("from") == jid
                and el.findtext(f"{C}body") == body)
    return pred


async def irc_user(h: Harness, clients: list[IrcClient], name: str) -> IrcClient:
    assert h.node is not None
    if not await h.node.accounts.exists(name):
        await h.user(name)
    c = IrcClient()
    clients.append(c)
    await c.login_sasl(ports(h)[0], name, PASSWORD)
    return c


async def test_an_irc_user_and_an_xmpp_occupant_share_a_room(
        irc: Harness, clients: list[IrcClient]) -> None:
    crone = await witch(irc, "crone")
    await crone.create(ROOM, "crone")
    crone.c.send_message(mto=ROOM, mbody="before you came", mtype="groupchat")
    await crone.expect(groupchat_from(f"{ROOM}/crone", "before you came"))
    alice = await irc_user(irc, clients, "alice")
    alice.send("JOIN #coven")
    await alice.expect(r"^:alice!alice@localhost JOIN :?#coven$")
    names = await alice.expect(r" 353 alice = #coven :(.*)$")
    assert set(names.group(1).split()) == {"@crone", "+alice"}
    await alice.expect(r" 366 alice #coven ")
    # history on join, with the time it was said (server-time)
    hist = await alice.expect(r"^@time=([^;\s]+)\S* :crone!\S+ PRIVMSG #coven :before you came$")
    assert hist.group(1).endswith("Z")
    # the XMPP occupant sees an ordinary occupant
    pres = await crone.expect(presence_from(crone, f"{ROOM}/alice"))
    assert item(pres)["role"] == "participant"
    # messages both ways
    crone.c.send_message(mto=ROOM, mbody="hello irc", mtype="groupchat")
    await alice.expect(r":crone!crone@conference.localhost PRIVMSG #coven :hello irc$")
    alice.send("PRIVMSG #coven :hello xmpp")
    await crone.expect(groupchat_from(f"{ROOM}/alice", "hello xmpp"))
    # the room's reflection of alice's own message is not shown to her again, and a
    # room message carries its archive id as msgid (message-tags)
    crone.c.send_message(mto=ROOM, mbody="after yours", mtype="groupchat")
    line = await alice.expect(r" PRIVMSG #coven ")
    assert line.string.endswith(":crone!crone@conference.localhost PRIVMSG #coven :after yours")
    assert ";msgid=" in line.string or "@msgid=" in line.string
    alice.send("PRIVMSG #coven :\x01ACTION waves\x01")
    await crone.expect(groupchat_from(f"{ROOM}/alice", "/me waves"))
    # topic both ways (the owner sets it; alice reads it; as a moderator alice sets it)
    crone.c.send_message(mto=ROOM, msubject="brewing", mtype="groupchat")
    await alice.expect(r":crone!\S+ TOPIC #coven :brewing$")
    alice.send("TOPIC #coven")
    await alice.expect(r" 332 alice #coven :brewing$")
    # joins and parts of XMPP occupants
    hag = await witch(irc, "hag")
    await hag.join(ROOM, "hag")
    await alice.expect(r"^:hag!\S+ JOIN :?#coven$")
    hag.c.send_presence(pto=f"{ROOM}/hag", ptype="unavailable")
    await alice.expect(r"^:hag!\S+ PART #coven")
    alice.send("NAMES #coven")
    names = await alice.expect(r" 353 alice = #coven :(.*)$")
    assert set(names.group(1).split()) == {"@crone", "+alice"}
    # roles: the owner makes alice a moderator; she then changes the topic
    await crone.muc.set_role(ROOM, "alice", "moderator")
    await alice.expect(r" MODE #coven -v alice$")
    await alice.expect(r" MODE #coven \+o alice$")
    alice.send("TOPIC #coven :new moon")
    subj = await crone.expect(lambda el: el.tag == f"{C}message"
                              and el.findtext(f"{C}subject") == "new moon")
    assert subj.get("from") == f"{ROOM}/alice"
    # a part from IRC is a leave
    alice.send("PART #coven :bye")
    await crone.expect(presence_from(crone, f"{ROOM}/alice", "unavailable"))
    await alice.expect(r"^:alice!\S+ PART #coven")


async def test_a_kick_from_xmpp_removes_the_irc_user(
        irc: Harness, clients: list[IrcClient]) -> None:
    crone = await witch(irc, "crone")
    await crone.create(ROOM, "crone")
    alice = await irc_user(irc, clients, "alice")
    alice.send("JOIN #coven")
    await alice.expect(r" 366 alice #coven ")
    await crone.muc.set_role(ROOM, "alice", "none", reason="out")
    await alice.expect(r"^:\S+ KICK #coven alice :out$")
    await crone.expect(presence_from(crone, f"{ROOM}/alice", "unavailable"))
    alice.send("PRIVMSG #coven :still here?")
    await alice.expect(r" 404 alice #coven ")
    # a ban: the join is refused with 474
    await crone.muc.set_affiliation(ROOM, "outcast", jid="alice@localhost")
    alice.send("JOIN #coven")
    await alice.expect(r" 474 alice #coven ")


async def test_kick_and_modes_from_irc(irc: Harness, clients: list[IrcClient]) -> None:
    alice = await irc_user(irc, clients, "alice")
    alice.send("JOIN #lair")  # a new room: alice owns it
    names = await alice.expect(r" 353 alice = #lair :(.*)$")
    assert names.group(1).split() == ["@alice"]
    crone = await witch(irc, "crone")
    await crone.join("lair@conference.localhost", "crone")
    await alice.expect(r"^:crone!\S+ JOIN :?#lair$")
    await alice.expect(r" MODE #lair \+v crone$")
    alice.send("MODE #lair -v crone")
    pres = await crone.expect(lambda el: el.tag == f"{C}presence"
                              and item(el).get("role") == "visitor")
    assert pres.get("from") == "lair@conference.localhost/crone"
    await alice.expect(r" MODE #lair -v crone$")
    alice.send("MODE #lair +x", "KICK #lair nobody")
    await alice.expect(r" 472 alice x ")
    await alice.expect(r" 441 alice nobody #lair ")
    alice.send("KICK #lair crone :begone")
    pres = await crone.expect(presence_from(crone, "lair@conference.localhost/crone",
                                            "unavailable"))
    assert "307" in codes(pres)
    await alice.expect(r" KICK #lair crone :begone$")


async def test_irc_commands_a_participant_may_not_use(
        irc: Harness, clients: list[IrcClient]) -> None:
    crone = await witch(irc, "crone")
    await crone.create(ROOM, "crone")
    alice = await irc_user(irc, clients, "alice")
    alice.send("JOIN #coven")
    await alice.expect(r" 366 alice #coven ")
    alice.send("KICK #coven crone")
    await alice.expect(r" 482 alice #coven ")
    alice.send("PART #nowhere", "JOIN nochannel")
    await alice.expect(r" 442 alice #nowhere ")
    await alice.expect(r" 403 alice nochannel ")


async def test_members_only_rooms_are_enforced(irc: Harness, clients: list[IrcClient]) -> None:
    crone = await witch(irc, "crone")
    await crone.create(ROOM, "crone", membersonly="1")
    alice = await irc_user(irc, clients, "alice")
    alice.send("JOIN #coven")
    await alice.expect(r" 473 alice #coven ")
    await crone.muc.set_affiliation(ROOM, "member", jid="alice@localhost")
    alice.send("JOIN #coven")
    await alice.expect(r" 366 alice #coven ")


async def test_several_channels_in_one_join(irc: Harness, clients: list[IrcClient]) -> None:
    alice = await irc_user(irc, clients, "alice")
    alice.send("JOIN #one,#two")
    await alice.expect(r" 366 alice #one ")
    await alice.expect(r" 366 alice #two ")
    alice.send("PRIVMSG #one,#two :to both")
    crone = await witch(irc, "crone")
    await crone.join("two@conference.localhost", "crone")
    await alice.expect(r"^:crone!\S+ JOIN :?#two$")
    alice.send("JOIN 0")
    await alice.expect(r"^:alice!\S+ PART #one")
    await alice.expect(r"^:alice!\S+ PART #two")


# -- bad input -----------------------------------------------------------------------------------
async def test_overlong_lines_and_unknown_commands_get_numerics(
        irc: Harness, clients: list[IrcClient]) -> None:
    bob = await irc.logged_in("bob")
    alice = await irc_user(irc, clients, "alice")
    alice.send("PRIVMSG bob :" + "x" * 600)
    await alice.expect(r" 417 alice :Input line was too long$")
    alice.send("FROBNICATE now", "PRIVMSG bob", "PRIVMSG #nowhere :hi")
    await alice.expect(r" 421 alice FROBNICATE :Unknown command$")
    await alice.expect(r" 461 alice PRIVMSG :Not enough parameters$")
    await alice.expect(r" 404 alice #nowhere :Cannot send to channel$")
    # a line that never ends is dropped as it comes, and the connection goes on
    alice.send_raw(b"PRIVMSG bob :" + b"y" * 200_000)
    alice.send_raw(b"\r\nPRIVMSG bob :still fine\r\n")
    await alice.expect(r" 417 alice ")
    msg = await bob.next_message()
    assert msg["body"] == "still fine"  # nothing of the overlong lines got through


async def test_a_flood_is_cut_off(tmp_path: Path, storage_url: str,
                                  clients: list[IrcClient]) -> None:
    h = Harness(tmp_path, storage_url)
    await h.start(extra=IRC.replace("lines_burst = 200", "lines_burst = 5\nflood_lines = 20"))
    try:
        bob = await h.logged_in("bob")
        await h.user("alice")
        slow = IrcClient()
        clients.append(slow)
        await slow.login_pass(ports(h)[0], "alice", PASSWORD)
        # past the burst: reading pauses until the budget is back, nothing is lost
        slow.send(*(f"PRIVMSG bob :n{i}" for i in range(10)))
        got = [(await bob.next_message(timeout=15))["body"] for _ in range(10)]
        assert got == [f"n{i}" for i in range(10)]
        # far past it in one go: ERROR :Excess Flood and the end of the connection
        fast = IrcClient()
        clients.append(fast)
        await fast.login_pass(ports(h)[0], "alice", PASSWORD)
        fast.send(*(f"PRIVMSG bob :f{i}" for i in range(500)))
        rest = await fast.closed()
        assert rest[-1] == "ERROR :Closing link: Excess Flood"
    finally:
        await h.stop_node()


async def test_registration_must_finish_in_time(tmp_path: Path, storage_url: str,
                                                clients: list[IrcClient]) -> None:
    h = Harness(tmp_path, storage_url)
    await h.start(extra=IRC + "auth_timeout = 0.5\n")
    try:
        c = IrcClient()
        clients.append(c)
        await c.connect(ports(h)[0])
        c.send("NICK lurker")
        assert (await c.closed())[-1] == "ERROR :Closing link: registration timed out"
    finally:
        await h.stop_node()


async def test_unauthenticated_connections_count_against_the_preauth_caps(
        tmp_path: Path, storage_url: str, clients: list[IrcClient]) -> None:
    h = Harness(tmp_path, storage_url)
    await h.start(extra=IRC, c2s_extra="preauth_per_ip = 2")
    try:
        await h.user("alice")
        waiting = []
        for _ in range(2):
            c = IrcClient()
            clients.append(c)
            await c.connect(ports(h)[0])
            waiting.append(c)
        third = IrcClient()
        clients.append(third)
        await third.connect(ports(h)[0])
        assert (await third.closed())[-1] == ("ERROR :Closing link: too many unauthenticated "
                                              "connections from your address")
        # a login leaves the count: another connection is let in
        waiting[0].send(f"PASS alice:{PASSWORD}", "NICK alice", "USER alice 0 * :A")
        await waiting[0].expect(r" 001 alice ")
        fourth = IrcClient()
        clients.append(fourth)
        await fourth.login_pass(ports(h)[0], "alice", PASSWORD)
    finally:
        await h.stop_node()


async def test_history_on_join_comes_from_the_archive_after_a_restart(
        irc: Harness, clients: list[IrcClient]) -> None:
    crone = await witch(irc, "crone")
    await crone.create(ROOM, "crone", persistentroom="1")
    for text in ("first of old", "second of old"):
        crone.c.send_message(mto=ROOM, mbody=text, mtype="groupchat")
        await crone.expect(groupchat_from(f"{ROOM}/crone", text))
    await irc.restart()  # the room's in-memory history is gone; its archive is not
    alice = await irc_user(irc, clients, "alice")
    alice.send("JOIN #coven")
    await alice.expect(r" 366 alice #coven ")
    first = await alice.expect(r"^@time=([^;\s]+)\S* :crone!\S+ PRIVMSG #coven :first of old$")
    assert first.group(1).endswith("Z")
    await alice.expect(r":crone!\S+ PRIVMSG #coven :second of old$")
