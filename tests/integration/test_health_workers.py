"""/health of a node of two workers (``hongyan serve``, ``server.workers = 2``), over real
sockets: 200 while both are up, whichever answers; 503 naming the one that is not (stopped
with SIGSTOP: a hung worker, which keeps its links open, so only a ping tells); 200 again once
it runs again. A worker killed outright takes the node down (the supervisor's rule: see
test_workers.test_a_dead_worker_stops_the_node), so there is no node left to answer for it."""

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
from tests.integration.test_workers import serving


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
