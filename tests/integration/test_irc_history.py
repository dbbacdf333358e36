"""IRCv3 chathistory, batch and echo-message over real sockets: a raw IRC client asks the
room archives and its own archive (XEP-0313) for history; slixmpp users say things."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.conftest import Harness
from tests.integration.ircclient import IrcClient
from tests.integration.rawstream import PASSWORD
from tests.integration.test_irc import IRC, ROOM, groupchat_from, ports
from tests.integration.test_muc import item, witch


@pytest.fixture
async def irc(tmp_path: Path, storage_url: str) -> AsyncIterator[Harness]:
    h = Harness(tmp_path, storage_url)
    await h.start(extra=IRC + "chathistory_max = 50\n")
    try:
        yield h
    finally:
        await h.stop_node()


CAPS = "batch draft/chathistory echo-message"
LINE = re.compile(r"^@(\S+) :(\S+) PRIVMSG (\S+) :(.*)$")


async def irc_login(h: Harness, clients: list[IrcClient], name: str,
                    caps: str = CAPS) -> IrcClient:
    assert h.node is not None
    if not await h.node.accounts.exists(name):
        await h.user(name)
    c = IrcClient()
    clients.append(c)
    await c.login_sasl(ports(h)[0], name, PASSWORD, caps=caps)
    return c


def tags_of(text: str) -> dict[str, str]:
    return dict(t.partition("=")[::2] for t in text.split(";"))


async def batch(c: IrcClient, target: str) -> list[tuple[dict[str, str], str, str, str]]:
    """The next chathistory batch for ``target``: (tags, source, to, text) of each line."""
    start = await c.expect(rf"^:\S+ BATCH \+(\S+) chathistory {re.escape(target)}$")
    ref = start.group(1)
    out = []
    for _ in range(200):
        line = await c.line()
        if line.endswith(f"BATCH -{ref}"):
            return out
        m = LINE.match(line)
        assert m, line
        tags = tags_of(m.group(1))
        assert tags["batch"] == ref and tags["time"].endswith("Z") and tags["msgid"]
        out.append((tags, m.group(2), m.group(3), m.group(4)))
    raise AssertionError("no end of the batch")


def texts(rows: list[tuple[dict[str, str], str, str, str]]) -> list[str]:
    return [r[3] for r in rows]


async def test_chathistory_of_a_room_from_its_archive(
        irc: Harness, clients: list[IrcClient]) -> None:
    crone = await witch(irc, "crone")
    await crone.create(ROOM, "crone", persistentroom="1")
    said = [f"line {i}" for i in range(8)]
    for text in said:
        crone.c.send_message(mto=ROOM, mbody=text, mtype="groupchat")
        await crone.expect(groupchat_from(f"{ROOM}/crone", text))
        await asyncio.sleep(0.005)  # (a millisecond apart at least: IRC times have ms)
    alice = await irc_login(irc, clients, "alice")
    alice.send("CAP LIST")
    caps = await alice.expect(r" CAP alice LIST :(.*)$")
    assert {"batch", "draft/chathistory", "echo-message"} <= set(caps.group(1).split())
    assert any("CHATHISTORY=50" in line and "MSGREFTYPES=msgid,timestamp" in line
               for line in alice.seen)
    alice.send("JOIN #coven")
    await alice.expect(r" 366 alice #coven ")
    # LATEST *: the last ones, oldest first, in a batch, with their msgid and time
    alice.send("CHATHISTORY LATEST #coven * 3")
    rows = await batch(alice, "#coven")
    assert texts(rows) == said[-3:]
    assert all(r[1].startswith("crone!") and r[2] == "#coven" for r in rows)
    # everything, then paging by msgid both ways
    alice.send("CHATHISTORY LATEST #coven * 100")
    every = await batch(alice, "#coven")
    assert texts(every) == said
    ids = [r[0]["msgid"] for r in every]
    alice.send(f"CHATHISTORY BEFORE #coven msgid={ids[5]} 2")
    assert texts(await batch(alice, "#coven")) == said[3:5]
    alice.send(f"CHATHISTORY AFTER #coven msgid={ids[5]} 10")
    assert texts(await batch(alice, "#coven")) == said[6:]
    alice.send(f"CHATHISTORY LATEST #coven msgid={ids[4]} 2")
    assert texts(await batch(alice, "#coven")) == said[6:]
    alice.send(f"CHATHISTORY BETWEEN #coven msgid={ids[1]} msgid={ids[6]} 3")
    assert texts(await batch(alice, "#coven")) == said[2:5]
    alice.send(f"CHATHISTORY BETWEEN #coven msgid={ids[6]} msgid={ids[1]} 3")
    assert texts(await batch(alice, "#coven")) == said[3:6]
    alice.send(f"CHATHISTORY AROUND #coven msgid={ids[4]} 4")
    assert texts(await batch(alice, "#coven")) == said[2:6]
    # by timestamp (exclusive, at the milliseconds IRC shows)
    t2, t5 = every[2][0]["time"], every[5][0]["time"]
    alice.send(f"CHATHISTORY AFTER #coven timestamp={t2} 2")
    assert texts(await batch(alice, "#coven")) == said[3:5]
    alice.send(f"CHATHISTORY BEFORE #coven timestamp={t5} 2")
    assert texts(await batch(alice, "#coven")) == said[3:5]
    alice.send(f"CHATHISTORY BETWEEN #coven timestamp={t2} msgid={ids[5]} 10")
    assert texts(await batch(alice, "#coven")) == said[3:5]
    alice.send(f"CHATHISTORY AROUND #coven timestamp={t5} 2")
    assert texts(await batch(alice, "#coven")) == said[4:6]
    # a limit past [irc] chathistory_max is taken (and cut to it)
    alice.send(f"CHATHISTORY AFTER #coven timestamp={t2} 100000")
    assert texts(await batch(alice, "#coven")) == said[3:]
    # a room not joined may be read when it is open
    bob = await irc_login(irc, clients, "bob")
    bob.send("CHATHISTORY LATEST #coven * 2")
    assert texts(await batch(bob, "#coven")) == said[-2:]


async def test_chathistory_errors(irc: Harness, clients: list[IrcClient]) -> None:
    crone = await witch(irc, "crone")
    await crone.create(ROOM, "crone", persistentroom="1", membersonly="1")
    crone.c.send_message(mto=ROOM, mbody="secret", mtype="groupchat")
    await crone.expect(groupchat_from(f"{ROOM}/crone", "secret"))
    alice = await irc_login(irc, clients, "alice")
    for line, reply in [
        ("CHATHISTORY LATEST #coven * 5",
         r"^:\S+ FAIL CHATHISTORY INVALID_TARGET LATEST #coven :Messages could not be"),
        ("CHATHISTORY SIDEWAYS #coven * 5", r" FAIL CHATHISTORY UNKNOWN_COMMAND SIDEWAYS "),
        ("CHATHISTORY LATEST #coven *", r" FAIL CHATHISTORY INVALID_PARAMS LATEST "),
        ("CHATHISTORY BEFORE #coven * 5", r" FAIL CHATHISTORY INVALID_PARAMS BEFORE "),
        ("CHATHISTORY LATEST #coven * many", r" FAIL CHATHISTORY INVALID_PARAMS LATEST "),
        ("CHATHISTORY AFTER #coven when=now 5", r" FAIL CHATHISTORY INVALID_PARAMS AFTER "),
        ("CHATHISTORY LATEST nochannel! * 5", r" FAIL CHATHISTORY INVALID_TARGET LATEST "),
        ("CHATHISTORY LATEST #nowhere * 5", r" FAIL CHATHISTORY INVALID_TARGET LATEST "),
    ]:
        alice.send(line)
        await alice.expect(reply)
    # a member may read it; an unknown msgid is a MESSAGE_ERROR
    await crone.muc.set_affiliation(ROOM, "member", jid="alice@localhost")
    alice.send("CHATHISTORY LATEST #coven * 5")
    assert texts(await batch(alice, "#coven")) == ["secret"]
    alice.send("CHATHISTORY BEFORE #coven msgid=12345 5")
    await alice.expect(r" FAIL CHATHISTORY MESSAGE_ERROR BEFORE #coven ")
    # without the batch capability the lines come alone
    plain = await irc_login(irc, clients, "carol", caps="")
    await crone.muc.set_affiliation(ROOM, "member", jid="carol@localhost")
    plain.send("CHATHISTORY LATEST #coven * 5", "TIME")  # (TIME waits for it)
    first = await plain.expect(r" PRIVMSG #coven | BATCH | 391 ")
    assert "BATCH" not in first.string and "batch=" not in first.string
    assert first.string.endswith(" PRIVMSG #coven :secret")


async def test_chathistory_of_a_nick_from_the_users_archive(
        irc: Harness, clients: list[IrcClient]) -> None:
    bob = await irc.logged_in("bob")
    alice = await irc_login(irc, clients, "alice")
    bob.send_message(mto="alice@localhost", mbody="hi alice", mtype="chat")
    await alice.expect(r"PRIVMSG alice :hi alice$")
    alice.send("PRIVMSG bob :hi bob")
    # echo-message: a message to a nick comes back once routed
    echo = await alice.expect(r"^@(\S+) :alice!\S+ PRIVMSG bob :hi bob$")
    assert "msgid" in tags_of(echo.group(1)) and "time" in tags_of(echo.group(1))
    msg = await bob.next_message()
    assert msg["body"] == "hi bob"
    carol = await irc.logged_in("carol")
    carol.send_message(mto="alice@localhost", mbody="not bob", mtype="chat")
    await alice.expect(r"PRIVMSG alice :not bob$")
    rows: list[tuple[dict[str, str], str, str, str]] = []
    for _ in range(50):  # (the archive takes its writes in batches)
        alice.send("CHATHISTORY LATEST bob * 10")
        rows = await batch(alice, "bob")
        if len(rows) == 2:
            break
    assert [(r[1].split("!")[0], r[2], r[3]) for r in rows] == [
        ("bob", "alice", "hi alice"), ("alice", "bob", "hi bob")]


async def test_echo_message_in_a_channel(irc: Harness, clients: list[IrcClient]) -> None:
    crone = await witch(irc, "crone")
    await crone.create(ROOM, "crone")
    alice = await irc_login(irc, clients, "alice")
    alice.send("JOIN #coven")
    await alice.expect(r" 366 alice #coven ")
    alice.send("PRIVMSG #coven :said by alice", "NOTICE #coven :noted")
    echo = await alice.expect(r"^@(\S+) :alice!\S+ PRIVMSG #coven :said by alice$")
    assert tags_of(echo.group(1))["msgid"]
    await alice.expect(r"^@\S+ :alice!\S+ NOTICE #coven :noted$")
    await crone.expect(groupchat_from(f"{ROOM}/alice", "said by alice"))
    # without echo-message the reflection is not shown (IRC clients show their own)
    bob = await irc_login(irc, clients, "bob", caps="batch")
    bob.send("JOIN #coven")
    await bob.expect(r" 366 bob #coven ")
    bob.send("PRIVMSG #coven :said by bob")
    await alice.expect(r":bob!\S+ PRIVMSG #coven :said by bob$")
    crone.c.send_message(mto=ROOM, mbody="after bob", mtype="groupchat")
    after = await bob.expect(r" PRIVMSG #coven :(said by bob|after bob)$")
    assert after.group(1) == "after bob"


async def test_account_tag_and_extended_join(irc: Harness, clients: list[IrcClient]) -> None:
    crone = await witch(irc, "crone")
    await crone.create(ROOM, "crone", whois="anyone")  # (real JIDs shown to everyone)
    alice = await irc_login(irc, clients, "alice", caps="account-tag extended-join")
    alice.send("JOIN #coven")
    await alice.expect(r"^:alice!\S+ JOIN #coven alice :?alice$")
    await alice.expect(r" 366 alice #coven ")
    hag = await witch(irc, "hag")
    await hag.join(ROOM, "broom")
    await alice.expect(r"^:broom!\S+ JOIN #coven hag :?broom$")
    hag.c.send_message(mto=ROOM, mbody="from hag", mtype="groupchat")
    said = await alice.expect(r"^@(\S+) :broom!\S+ PRIVMSG #coven :from hag$")
    assert tags_of(said.group(1))["account"] == "hag"
    hag.c.send_message(mto="alice@localhost", mbody="privately", mtype="chat")
    said = await alice.expect(r"^@(\S+) :hag!\S+ PRIVMSG alice :privately$")
    assert tags_of(said.group(1))["account"] == "hag"
    # a room that hides real JIDs: no account is known
    await crone.create("lair@conference.localhost", "crone", whois="moderators")
    alice.send("JOIN #lair")
    await alice.expect(r" 366 alice #lair ")
    await hag.join("lair@conference.localhost", "broom")
    await alice.expect(r"^:broom!\S+ JOIN #lair \* :?broom$")


async def test_room_modes_as_the_room_configuration(
        irc: Harness, clients: list[IrcClient]) -> None:
    alice = await irc_login(irc, clients, "alice", caps="")
    alice.send("JOIN #lair")  # a new room: alice owns it
    await alice.expect(r" 366 alice #lair ")
    alice.send("MODE #lair +ik sesame")
    await alice.expect(r"^:alice!\S+ MODE #lair \+i$")
    await alice.expect(r"^:alice!\S+ MODE #lair \+k sesame$")
    crone = await witch(irc, "crone")
    lair = "lair@conference.localhost"
    assert await crone.join_error(lair, "crone") == "registration-required"
    alice.send("MODE #lair -i")
    await alice.expect(r"^:alice!\S+ MODE #lair -i$")
    assert await crone.join_error(lair, "crone") == "not-authorized"
    alice.send("MODE #lair -k")
    await alice.expect(r"^:alice!\S+ MODE #lair -k$")
    alice.send("MODE #lair +m")
    await alice.expect(r"^:alice!\S+ MODE #lair \+m$")
    pres = await crone.join(lair, "crone")
    assert item(pres)["role"] == "visitor"  # a moderated room: newcomers are visitors
    # a participant is not an owner: the room refuses, 482
    bob = await irc_login(irc, clients, "bob", caps="")
    bob.send("JOIN #lair")
    await bob.expect(r" 366 bob #lair ")
    bob.send("MODE #lair -m")
    await bob.expect(r" 482 bob #lair ")
