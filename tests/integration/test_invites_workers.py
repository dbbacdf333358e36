"""Invitations on a node of two workers (``hongyan serve``, ``server.workers = 2``), SQLite and
PostgreSQL: newcomers homed on either worker sign up on the invitation page (each request served
by whichever worker accepts it) and the inviter, homed on worker 1, sees each one's roster push;
each newcomer has the inviter as a ``both`` contact."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from hongyan.cluster.workers import home_of
from tests.integration.clients import Client
from tests.integration.invites import CONFIG, token_of
from tests.integration.test_im import roster_push, track_pushes
from tests.integration.test_invites_web import csrf_of, post
from tests.integration.test_process import hongyan
from tests.integration.test_workers import A1, serving

NEWCOMERS = ("benvolio", "juliet", "paris", "nurse")


def test_the_newcomers_have_the_homes_the_test_assumes() -> None:
    assert [home_of(u, 2) for u in (*NEWCOMERS, A1)] == [0, 1, 0, 1, 1]


async def test_newcomers_of_both_homes_befriend_the_inviter(tmp_path: Path,
                                                            storage_url: str) -> None:
    async with serving(tmp_path, storage_url, extra=CONFIG) as node:
        inviter = track_pushes(await node.login(A1))
        r = hongyan("invite", "create", "--inviter", A1, "--uses", str(len(NEWCOMERS)),
                    config=node.config)
        assert r.returncode == 0, r.stderr
        token = token_of(r.stdout.splitlines()[0])
        base = f"http://127.0.0.1:{node.http_port}"
        url = f"{base}/invite/{token}"
        for name in NEWCOMERS:
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
                async with http.get(url) as resp:
                    assert resp.status == 200
                    csrf = csrf_of(await resp.text())
                status, text = await post(http, url, {"csrf": csrf, "username": name,
                                                      "password": "balcony-pw",
                                                      "password2": "balcony-pw"}, base)
                assert status == 201, text
        pushes = [await roster_push(inviter) for _ in NEWCOMERS]
        assert {(p["jid"], p["subscription"]) for p in pushes} == \
            {(f"{n}@localhost", "both") for n in NEWCOMERS}
        assert inviter.client_roster[f"{NEWCOMERS[0]}@localhost"]["subscription"] == "both"
        for name in NEWCOMERS:
            c = Client(f"{name}@localhost/r", "balcony-pw")
            node.clients.append(c)
            assert await c.login(node.port)
            assert c.client_roster[f"{A1}@localhost"]["subscription"] == "both", name
