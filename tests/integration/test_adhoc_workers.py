"""The administration commands that touch sessions, on a node of two workers: the online list,
announcements, the message of the day and ending sessions see every worker's sessions,
whichever worker the administrator's home is (``bob`` is homed on worker 0, ``alice`` on 1;
both are administrators). SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.integration.adhoc import PLUGINS, field_values, run
from tests.integration.test_process import hongyan
from tests.integration.test_workers import A0, A1, B0, B1, MODES, Node, serving


@pytest.fixture
async def node(tmp_path: Path, storage_url: str) -> AsyncIterator[Node]:
    async with serving(tmp_path, storage_url,
                       server_extra=f'admins = ["{A0}@localhost", "{A1}@localhost"]') as n:
        yield n


async def test_online_users_announce_motd_and_end_sessions_across_workers(node: Node) -> None:
    admins = [await node.login(A0, "adm", plugins=PLUGINS),
              await node.login(A1, "adm", "direct", plugins=PLUGINS)]
    others = [await node.login(B0, mode, mode) for mode in MODES[:2]] + \
        [await node.login(B1, mode, mode) for mode in MODES[:2]]
    everyone = sorted(f"{u}@localhost" for u in (A0, A1, B0, B1))
    for adm in admins:
        got = await run(adm, "get-online-users-num")
        assert field_values(got, "onlineusersnum") == ["4"]
        got = await run(adm, "get-online-users-list", {"max_items": "25"})
        assert field_values(got, "onlineuserjids") == everyone

    await run(admins[0], "announce", {"announcement": "hello all"})
    for c in admins + others:
        assert (await c.next_message())["body"] == "hello all"

    # the REST API answers for the whole node, whichever worker takes the request
    made = hongyan("token", "create", config=node.config)
    assert made.returncode == 0, made.stderr
    auth = {"Authorization": f"Bearer {made.stdout.strip()}"}
    base = f"http://127.0.0.1:{node.http_port}/api"
    for _ in range(4):  # (a new connection each time: the kernel picks the worker)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/online", headers=auth) as r:
                assert (await r.json())["users"] == everyone
            async with http.get(f"{base}/stats", headers=auth) as r:
                stats = await r.json()
                assert (stats["workers"], stats["sessions"]) == (2, 6)
    async with aiohttp.ClientSession() as http, \
            http.post(f"{base}/announce", headers=auth, json={"body": "via API"}) as r:
        assert await r.json() == {"sent": 6}
    for c in admins + others:
        assert (await c.next_message())["body"] == "via API"

    await run(admins[0], "set-motd", {"motd": "today's news"})
    late = await node.login(B1, "late", "plain")  # homed on the other worker than admin 0
    assert (await late.next_message())["body"] == "today's news"

    # sessions of an account homed on the other worker than the administrator's
    await run(admins[0], "end-user-session", {"accountjids": [f"{B1}@localhost"]})
    await asyncio.wait_for(asyncio.gather(others[2].gone.wait(), others[3].gone.wait(),
                                          late.gone.wait()), 10)
    await run(admins[1], "end-user-session", {"accountjids": [f"{B0}@localhost"]})
    await asyncio.wait_for(asyncio.gather(others[0].gone.wait(), others[1].gone.wait()), 10)
    got = await run(admins[1], "get-online-users-list", {"max_items": "25"})
    assert field_values(got, "onlineuserjids") == sorted(f"{u}@localhost" for u in (A0, A1))

    # disabling an account ends its sessions on its home, and it cannot log in
    victim = await node.login(B0, "again", "direct")
    await run(admins[1], "disable-user", {"accountjids": [f"{B0}@localhost"]})
    await asyncio.wait_for(victim.gone.wait(), 10)
