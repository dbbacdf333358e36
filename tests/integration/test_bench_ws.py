"""bench/wsload.py in smoke mode against a real node: both rows run and count what they see
(no figure is asserted: the benchmark is ``bench/compare.sh ws``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.integration.conftest import Harness

ROOT = Path(__file__).resolve().parents[2]


def _wsload(*args: str) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-m", "bench.wsload", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


async def test_websocket_benchmark_rows_run(harness: Harness) -> None:
    import asyncio

    # as the comparison runs it (loopback, plain ws://): PLAIN without TLS
    await harness.stop_node()
    await harness.start(c2s_extra="require_encryption = false\nallow_plaintext_auth = true")
    for i in range(1, 7):
        await harness.user(f"user{i}", "pass")
    assert harness.node is not None
    url = f"ws://127.0.0.1:{harness.node.http_port}/xmpp-websocket"
    pid = str(os.getpid())
    idle = await asyncio.to_thread(_wsload, "--url", url, "--pid", pid, "--clients", "4",
                                   "--settle", "0.1", "--probes", "2")
    assert idle["ok"] == 4 and idle["failed"] == 0
    assert idle["probes"] == 2 and isinstance(idle["probe_login_ms_max"], float)
    tput = await asyncio.to_thread(_wsload, "--url", url, "--pid", pid, "throughput",
                                   "--pairs", "2", "--window", "2", "--duration", "0.5",
                                   "--warmup", "0.2")
    delivered = tput["delivered"]
    assert isinstance(delivered, int) and delivered > 0
