"""bench/boshload.py in smoke mode against a real node: both rows run and count what they see
(no figure is asserted: the benchmark is ``bench/compare.sh bosh``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.integration.conftest import Harness

ROOT = Path(__file__).resolve().parents[2]


def _boshload(*args: str) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-m", "bench.boshload", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


async def test_bosh_benchmark_rows_run(harness: Harness) -> None:
    import asyncio

    # as the comparison runs it (loopback, plain http://): PLAIN without TLS
    await harness.stop_node()
    await harness.start(c2s_extra="require_encryption = false\nallow_plaintext_auth = true")
    for i in range(1, 7):
        await harness.user(f"user{i}", "pass")
    assert harness.node is not None
    url = f"http://127.0.0.1:{harness.node.http_port}/http-bind"
    pid = str(os.getpid())
    idle = await asyncio.to_thread(_boshload, "--url", url, "--pid", pid, "--clients", "4",
                                   "--settle", "0.1")
    assert idle["ok"] == 4 and idle["failed"] == 0
    tput = await asyncio.to_thread(_boshload, "--url", url, "--pid", pid, "throughput",
                                   "--pairs", "2", "--window", "2", "--duration", "0.5",
                                   "--warmup", "0.2")
    delivered = tput["delivered"]
    assert isinstance(delivered, int) and delivered > 0
