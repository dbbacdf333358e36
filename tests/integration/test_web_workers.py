"""The web side of a node of two workers (``hongyan serve``, ``server.workers = 2``), over
real sockets. /health: 200 while both are up, whichever answers; 503 naming the one that is
not (stopped with SIGSTOP: a hung worker, which keeps its links open, so only a ping tells);
200 again once it runs again. A worker killed outright takes the node down (the supervisor's
rule: see test_workers.test_a_dead_worker_stops_the_node), so there is no node left to answer
for it. Uploads: PUTs of one slot at once, on connections the kernel spreads over both
workers: exactly one wins."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.integration.clients import TIMEOUT
from tests.integration.test_process import Server
from tests.integration.test_upload_bad_put import RawPut
from tests.integration.test_workers import A1, serving


async def health(port: int) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(
            f"http://127.0.0.1:{port}/health", timeout=aiohttp.ClientTimeout(total=TIMEOUT)
    ) as r:
        return r.status, json.loads(await r.text())


def workers(srv: Server) -> dict[int, int]:
    """The supervisor's worker processes: index -> pid (from their command lines)."""
    assert srv.proc is not None
    pid = srv.proc.pid
    found = {}
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        if b"hongyan.cluster.worker" in argv:
            found[int(argv[argv.index(b"hongyan.cluster.worker") + 1])] = int(child)
    return found


async def test_health_names_the_worker_that_is_down(tmp_path: Path, storage_url: str) -> None:
    async with serving(tmp_path, storage_url, http_extra="health_timeout = 1.0") as node:
        srv: Server = node.server  # type: ignore[attr-defined]
        pids = workers(srv)
        assert sorted(pids) == [0, 1]
        answered = set()
        for _ in range(8):
            status, body = await health(node.http_port)
            assert status == 200 and body["status"] == "ok", body
            assert body["workers"] == 2 and body["missing"] == []
            answered.add(body["worker"])
        os.kill(pids[1], signal.SIGSTOP)
        try:
            for _ in range(3):  # (each new connection: only worker 0 can accept it now)
                began = time.monotonic()
                status, body = await health(node.http_port)
                assert status == 503, body
                assert body == {**body, "status": "degraded", "worker": 0, "workers": 2,
                                "missing": [1]}
                assert time.monotonic() - began < 1.0 + 2.0  # health_timeout, not longer
        finally:
            os.kill(pids[1], signal.SIGCONT)
        deadline = time.monotonic() + TIMEOUT
        while True:
            status, body = await health(node.http_port)
            if status == 200:
                break
            assert time.monotonic() < deadline, body
            await asyncio.sleep(0.1)
        assert body["missing"] == [] and body["status"] == "ok"
        # a worker killed outright: the node stops (no half-known accounts), and says so
        os.kill(pids[0], signal.SIGKILL)
        assert await srv.wait() == 1


async def test_puts_of_one_slot_on_both_workers_one_wins(tmp_path: Path,
                                                          storage_url: str) -> None:
    """Eight connections (each accepted by whichever worker the kernel picks) stream the same
    slot's body at once, all but the last byte; then all send it: exactly one 201, seven 409,
    the file the winner's, and no part left behind."""
    async with serving(tmp_path, storage_url) as node:
        c = await node.login(A1, "race")
        iq = await c.send_raw_iq(c.make_iq_get(ito="upload.localhost"),
                                 "<request xmlns='urn:xmpp:http:upload:0' filename='r.bin' "
                                 "size='300000' content-type='text/plain'/>", TIMEOUT)
        ns = "{urn:xmpp:http:upload:0}"
        put_url = iq.xml.find(f"{ns}slot/{ns}put").attrib["url"]
        get_url = iq.xml.find(f"{ns}slot/{ns}get").attrib["url"]
        puts = [await RawPut.to_port(node.http_port, put_url, 300_000) for _ in range(8)]
        for i, p in enumerate(puts):
            await p.send(bytes([65 + i]) * 299_999)
        await asyncio.sleep(0.3)
        for i, p in enumerate(puts):
            p.writer.write(bytes([65 + i]))
        results = await asyncio.gather(*(p.status() for p in puts))
        statuses = [s for s, _ in results]
        assert sorted(statuses) == [201] + [409] * 7, statuses
        winner = statuses.index(201)
        async with aiohttp.ClientSession() as http, http.get(get_url) as r:
            assert r.status == 200 and await r.read() == bytes([65 + winner]) * 300_000
        root = tmp_path / "data" / "upload"
        assert [p.name for p in root.rglob("*.part")] == []
