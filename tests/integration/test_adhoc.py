"""XEP-0050 ad-hoc commands and the XEP-0133 administration commands, driven by slixmpp's
``xep_0050`` client side over real sockets, on SQLite and PostgreSQL. ``admin@localhost`` is
the server's administrator (``server.admins``); everybody else is refused each command."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.integration.adhoc import (
    ADMIN,
    COMMANDS,
    PLUGINS,
    Run,
    error_of,
    field_values,
    run,
    send,
)
from tests.integration.clients import Client
from tests.integration.conftest import Harness
from tests.integration.rawstream import PASSWORD

NODES = ("add-user", "delete-user", "disable-user", "reenable-user", "end-user-session",
         "change-user-password", "get-user-roster", "get-user-lastlogin",
         "get-registered-users-num", "get-online-users-num", "get-registered-users-list",
         "get-online-users-list", "announce", "set-motd", "edit-motd", "delete-motd",
         "shutdown", "restart")
#: the commands over XEP-0377 reports (ours: XEP-0133 has none)
REPORT_NODES = ("urn:hongyan:admin#list-reports", "urn:hongyan:admin#dismiss-reports")


@pytest.fixture(autouse=True)
async def with_admin(harness: Harness) -> None:
    await harness.stop_node()
    await harness.start(server_extra='admins = ["admin@localhost"]')


async def admin(harness: Harness) -> Client:
    return await harness.logged_in("admin", plugins=PLUGINS)


async def can_login(harness: Harness, jid: str, password: str = PASSWORD) -> bool:
    c = Client(jid + "/probe", password)
    harness.clients.append(c)
    ok = bool(await c.login(harness.port))
    await c.close()
    return ok


async def test_discovery_lists_the_commands_to_admins_only(harness: Harness) -> None:
    a = await admin(harness)
    info = await a.plugin["xep_0030"].get_info(jid="localhost")
    assert COMMANDS in info["disco_info"]["features"]
    items = await a.plugin["xep_0050"].get_commands(jid="localhost")
    nodes = {node for _jid, node, _name in items["disco_items"]["items"]}
    # and the invitation commands (XEP-0401) of the invites module, and the abuse report
    # commands (tests/integration/test_reports.py)
    assert nodes == {ADMIN + n for n in NODES} | {"urn:xmpp:invite#invite",
                                                  "urn:xmpp:invite#create-account"} | \
        set(REPORT_NODES)
    node_info = await a.plugin["xep_0030"].get_info(jid="localhost", node=ADMIN + "add-user")
    assert ("automation", "command-node", None, "Add a user") in \
        node_info["disco_info"]["identities"]
    assert COMMANDS in node_info["disco_info"]["features"]

    bob = await harness.logged_in("bob", plugins=PLUGINS)
    items = await bob.plugin["xep_0050"].get_commands(jid="localhost")
    assert not items["disco_items"]["items"]


async def test_every_command_is_forbidden_to_a_non_admin(harness: Harness) -> None:
    await harness.user("admin")
    bob = await harness.logged_in("bob", plugins=PLUGINS)
    for node in (*NODES, *REPORT_NODES):
        assert error_of(await send(bob, node)) == ("forbidden", set()), node
        # also with a form, as a one-shot client would send it
        got = await send(bob, node, values={"accountjids": ["bob@localhost"]})
        assert error_of(got) == ("forbidden", set()), node
    got = await send(bob, "delete-user", action="complete", sessionid="guess",
                     values={"accountjids": ["admin@localhost"]})
    assert error_of(got) == ("forbidden", set())
    assert await harness.node.accounts.exists("admin")  # type: ignore[union-attr]


async def test_bad_requests_get_the_xep_0050_errors(harness: Harness) -> None:
    a = await admin(harness)
    assert error_of(await send(a, COMMANDS + "#nope")) == ("item-not-found", set())
    assert error_of(await send(a, "add-user", action="jump")) == \
        ("bad-request", {"malformed-action"})
    assert error_of(await send(a, "add-user", action="complete", sessionid="nosuch")) == \
        ("bad-request", {"bad-sessionid"})
    assert error_of(await send(a, "add-user", action="next")) == \
        ("bad-request", {"bad-sessionid"})
    r = Run(a, "add-user")
    first = await r.start()
    assert first["command"]["status"] == "executing"
    # prev at the first step, next where only complete is offered
    assert error_of(await r.act("prev")) == ("bad-request", {"bad-action"})
    assert error_of(await r.act("next", {})) == ("bad-request", {"bad-action"})
    bad_values: list[dict[str, Any]] = [
        {},  # required fields missing
        {"accountjid": "not a jid@@", "password": "x", "password-verify": "x"},
        {"accountjid": "x@elsewhere", "password": "x", "password-verify": "x"},
        {"accountjid": "new@localhost", "password": "x", "password-verify": "y"},
        {"accountjid": "new@localhost", "password": "", "password-verify": ""},
        {"accountjid": ["a@localhost", "b@localhost"], "password": "x",
         "password-verify": "x"},
    ]
    for values in bad_values:
        assert error_of(await r.act("complete", values)) == ("bad-request", {"bad-payload"}), \
            values
    # the session survived the bad submissions; a good one completes it
    done = await r.act("complete", {"accountjid": "new@localhost", "password": "pw1",
                                    "password-verify": "pw1"})
    assert done["command"]["status"] == "completed"
    # the same account again: conflict
    again = await run(a, "add-user", {"accountjid": "new@localhost", "password": "pw1",
                                      "password-verify": "pw1"})
    assert error_of(again) == ("conflict", set())
    # a list value that is not an option, an unknown account
    got = await run(a, "get-registered-users-list", {"max_items": "7"})
    assert error_of(got) == ("bad-request", {"bad-payload"})
    got = await run(a, "get-user-roster", {"accountjid": "ghost@localhost"})
    assert error_of(got) == ("item-not-found", set())
    got = await run(a, "shutdown", {"delay": "soon"})
    assert error_of(got) == ("bad-request", {"bad-payload"})


async def test_cancel_and_an_expired_session(harness: Harness) -> None:
    a = await admin(harness)
    r = Run(a, "add-user")
    await r.start()
    canceled = await r.act("cancel")
    assert canceled["command"]["status"] == "canceled"
    sid = canceled["command"]["sessionid"]
    assert error_of(await send(a, "add-user", action="complete", sessionid=sid)) == \
        ("bad-request", {"bad-sessionid"})
    r = Run(a, "add-user")
    await r.start()
    await harness.clock.advance(601)
    assert error_of(await r.act("complete", {})) == ("not-allowed", {"session-expired"})


async def test_add_change_password_disable_enable_delete(harness: Harness) -> None:
    a = await admin(harness)
    done = await run(a, "add-user", {"accountjid": "carol@localhost", "password": "first",
                                     "password-verify": "first"})
    assert done["command"]["status"] == "completed"
    assert await can_login(harness, "carol@localhost", "first")
    await run(a, "change-user-password", {"accountjid": "carol@localhost",
                                          "password": "second"})
    assert not await can_login(harness, "carol@localhost", "first")
    carol = await harness.client("carol@localhost/phone", "second")

    await run(a, "disable-user", {"accountjids": ["carol@localhost"]})
    await asyncio.wait_for(carol.gone.wait(), 10)
    assert [e["condition"] for e in carol.stream_errors] == ["policy-violation"]
    probe = Client("carol@localhost/again", "second")
    harness.clients.append(probe)
    assert not await probe.login(harness.port)
    assert "account-disabled" in str(probe.auth_failures[0])

    await run(a, "reenable-user", {"accountjids": ["carol@localhost"]})
    assert await can_login(harness, "carol@localhost", "second")
    await run(a, "delete-user", {"accountjids": ["carol@localhost"]})
    assert not await harness.node.accounts.exists("carol")  # type: ignore[union-attr]


async def test_roster_and_last_login(harness: Harness) -> None:
    a = await admin(harness)
    before = time.time()
    bob = await harness.logged_in("bob")
    await bob.plugin["xep_0030"].get_info(jid="localhost")  # (the login is recorded by now)
    bob.update_roster("juliet@example.org", name="Juliet", groups=["Friends"])
    await asyncio.sleep(0.2)
    got = await run(a, "get-user-roster", {"accountjid": "bob@localhost"})
    items = got["command"]["form"].xml.find(".//{jabber:iq:roster}query")
    assert items is not None
    [item] = list(items)
    assert item.get("jid") == "juliet@example.org" and item.get("name") == "Juliet"
    got = await run(a, "get-user-lastlogin", {"accountjid": "bob@localhost"})
    [stamp] = field_values(got, "lastlogin")
    from hongyan.xmpp.stamps import parse_xmpp_datetime
    assert before - 1 <= parse_xmpp_datetime(stamp) <= time.time() + 1
    await harness.user("never")
    got = await run(a, "get-user-lastlogin", {"accountjid": "never@localhost"})
    assert field_values(got, "lastlogin") == ["never"]


async def test_user_counts_and_paged_lists(harness: Harness) -> None:
    a = await admin(harness)
    for i in range(30):
        await harness.user(f"u{i:02d}")
    await harness.logged_in("bob")
    got = await run(a, "get-registered-users-num")
    assert field_values(got, "registeredusersnum") == ["32"]
    got = await run(a, "get-online-users-num")
    assert field_values(got, "onlineusersnum") == ["2"]

    every = sorted(["admin@localhost", "bob@localhost",
                    *(f"u{i:02d}@localhost" for i in range(30))])
    # complete: the first page, as XEP-0133 says
    got = await run(a, "get-registered-users-list", {"max_items": "25"})
    assert got["command"]["status"] == "completed"
    assert field_values(got, "registereduserjids") == every[:25]
    # next / prev / next / complete through the pages
    r = Run(a, "get-registered-users-list")
    await r.start()
    page1 = await r.act("next", {"max_items": "25"})
    assert page1["command"]["status"] == "executing"
    assert field_values(page1, "registereduserjids") == every[:25]
    page2 = await r.act("next")
    assert field_values(page2, "registereduserjids") == every[25:]
    assert "next" not in page2["command"]["actions"]
    back = await r.act("prev")
    assert field_values(back, "registereduserjids") == every[:25]
    again = await r.act("next")
    assert field_values(again, "registereduserjids") == every[25:]
    last = await r.act("complete")
    assert last["command"]["status"] == "completed"

    got = await run(a, "get-online-users-list", {"max_items": "none"})
    assert field_values(got, "onlineuserjids") == ["admin@localhost", "bob@localhost"]


async def test_announce_motd_and_end_sessions(harness: Harness) -> None:
    a = await admin(harness)
    bob = await harness.logged_in("bob")
    await run(a, "announce", {"subject": "Maintenance", "announcement": "Back soon"})
    msg = await bob.next_message()
    assert (msg["from"], msg["subject"], msg["body"]) == ("localhost", "Maintenance",
                                                         "Back soon")

    await run(a, "set-motd", {"subject": "Welcome", "motd": "Be nice"})
    carol = await harness.logged_in("carol")
    msg = await carol.next_message()
    assert (msg["subject"], msg["body"]) == ("Welcome", "Be nice")
    await run(a, "edit-motd", {"motd": "Be very nice"})
    dave = await harness.logged_in("dave")
    assert (await dave.next_message())["body"] == "Be very nice"
    await run(a, "delete-motd")
    erin = await harness.logged_in("erin")
    with pytest.raises(asyncio.TimeoutError):
        await erin.next_message(timeout=0.5)

    await run(a, "end-user-session", {"accountjids": ["bob@localhost"]})
    await asyncio.wait_for(bob.gone.wait(), 10)
    assert [e["condition"] for e in bob.stream_errors] == ["policy-violation"]


@pytest.mark.parametrize("restart", [False, True])
async def test_shutdown_and_restart_with_a_notice(harness: Harness, restart: bool) -> None:
    node = harness.node
    assert node is not None
    asked: list[bool] = []
    node.on_shutdown = asked.append
    a = await admin(harness)
    bob = await harness.logged_in("bob")
    got = await run(a, "restart" if restart else "shutdown",
                    {"delay": "60", "announcement": "Going down in a minute"})
    assert got["command"]["status"] == "completed"
    msg = await bob.next_message()
    assert msg["body"] == "Going down in a minute"
    await harness.clock.advance(30)
    assert asked == []
    await harness.clock.advance(31)
    assert asked == [restart]
    assert node.shutdown_asked is restart
