"""The admin page on a node of two worker processes: the session made at login (in the shared
store) holds on whichever worker takes a later request, and the page lists the sessions of
both workers' users."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.integration.adminweb import csrf_of
from tests.integration.test_workers import A0, B0, B1, PW, Node, serving


@pytest.fixture
async def node(tmp_path: Path, storage_url: str) -> AsyncIterator[Node]:
    async with serving(tmp_path, storage_url, server_extra=f'admins = ["{A0}@localhost"]') as n:
        yield n


async def test_the_session_holds_on_every_worker(node: Node) -> None:
    await node.login(B0, "one")
    await node.login(B1, "two")
    root = f"http://127.0.0.1:{node.http_port}"
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        async with http.get(root + "/admin/") as r:
            form = await r.text()
        async with http.post(root + "/admin/login", headers={"Origin": root}, data={
                "csrf": csrf_of(form), "jid": f"{A0}@localhost", "password": PW}) as r:
            assert r.status == 200 and "Log out" in await r.text()
    for _ in range(6):  # a new connection each time: the kernel picks the worker
        async with aiohttp.ClientSession(cookie_jar=jar) as http:
            async with http.get(root + "/admin/") as r:
                page = await r.text()
            assert "Log out" in page
            assert f"<td>{B0}@localhost</td>" in page and f"<td>{B1}@localhost</td>" in page
            assert "<td>one</td>" in page and "<td>two</td>" in page
