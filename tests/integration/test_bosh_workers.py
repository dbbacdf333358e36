"""XMPP over BOSH with two worker processes (``server.workers = 2``, ``hongyan serve``), on
SQLite and PostgreSQL. A BOSH session lives in the worker that created it (its sid ends with
that worker's index); every HTTP request of it, whichever worker accepts the connection (a new
connection per request here, so both do), is passed to that one; once the client
authenticated as an account homed on the other worker, its stream is relayed there. Whatever
the path, the client must see one server: login, chat both ways in order, rid rules, guessed
sids, terminate, and inactivity with the unavailable presence a contact sees."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.integration.boshclient import HTTPBIND, Bosh, attr
from tests.integration.test_workers import A0, A1, B0, PW, Node, befriend, serving

MSG = "<message xmlns='jabber:client' to='{to}' type='chat'><body>{text}</body></message>"


@pytest.fixture
async def node(tmp_path: Path, storage_url: str) -> AsyncIterator[Node]:
    async with serving(tmp_path, storage_url, http_extra="bosh_inactivity = 5") as n:
        yield n


def fresh(node: Node) -> Bosh:
    """A BOSH client that opens a new connection for every request (so that either worker
    may accept each one)."""
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
    b = Bosh(f"http://127.0.0.1:{node.http_port}/http-bind", http)
    b._own = True  # (closed with it)
    return b


async def test_bosh_sessions_whatever_worker_accepts_each_request(node: Node) -> None:
    tcp = await node.login(B0, "tcp")
    sids: set[str] = set()
    for round_ in range(4):
        for user in (A0, A1):
            b = fresh(node)
            try:
                jid = await b.login(user, f"b{round_}", PW)
                assert jid == f"{user}@localhost/b{round_}"
                sids.add(b.sid.rsplit(".", 1)[1])
                held = None  # (one request held, one more under way: requests='2')
                for i in range(5):
                    t = b.send(MSG.format(to=f"{B0}@localhost/tcp", text=f"{user} {round_} {i}"))
                    if held is not None:
                        assert "type='terminate'" not in await asyncio.wait_for(held, 10)
                    held = t
                got = [(await tcp.next_message())["body"] for _ in range(5)]
                assert got == [f"{user} {round_} {i}" for i in range(5)]
                tcp.send_message(mto=jid, mbody=f"back {round_}", mtype="chat")
                # (the held request may carry it, or the next one)
                assert held is not None
                poll = b.send()
                poll_rid = b.rid
                got_back = await asyncio.wait_for(held, 10)
                if f"back {round_}" not in got_back:
                    got_back = await asyncio.wait_for(poll, 10)
                else:
                    b.send()  # (releases the poll)
                assert f"<body>back {round_}</body>" in got_back
                # a rid replayed gets its copy, whichever worker it reaches
                polled = await asyncio.wait_for(poll, 10)
                assert await b.request(rid=poll_rid) == polled
                # a guessed sid, naming either worker: item-not-found, the session unharmed
                real = b.sid
                for k in ("0", "1", "9"):
                    got_ = await b.post(f"<body xmlns='{HTTPBIND}' rid='{b.rid + 1}' "
                                        f"sid='{real.rsplit('.', 1)[0]}x.{k}'/>")
                    assert "condition='item-not-found'" in got_
                assert await b.request(type="terminate") == (
                    f"<body xmlns='{HTTPBIND}' type='terminate'/>")
                assert "condition='item-not-found'" in await b.request()
            finally:
                await b.close()
    assert sids <= {"0", "1"}


async def test_inactivity_ends_a_relayed_session_with_unavailable_presence(node: Node
                                                                           ) -> None:
    contact = await node.login(B0, "tcp")
    first = await node.login(A1, "tcp")
    await befriend(first, contact)
    await first.close()
    for round_ in range(3):
        b = fresh(node)
        try:
            jid = await b.login(A1, f"idle{round_}", PW, wait=2)
            created = attr(b.responses[0], "inactivity")
            assert created == "5"
            b.send("<presence xmlns='jabber:client'/>")
            p = await contact.next_presence()
            while str(p["from"]) != jid or p["type"] != "available":
                p = await contact.next_presence()
            # the client goes away (its held request is answered at 'wait'); after
            # 'inactivity' the session is over
            p = await contact.next_presence(timeout=20)
            while str(p["from"]) != jid:
                p = await contact.next_presence(timeout=20)
            assert p["type"] == "unavailable"
            await asyncio.sleep(0.2)
            assert "condition='item-not-found'" in await b.request()
        finally:
            await b.close()
