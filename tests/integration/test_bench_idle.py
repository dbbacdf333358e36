"""bench/idle.py runs (smoke mode: a few clients against the test server, no timing asserted)."""

from __future__ import annotations

import argparse

import pytest

from bench.idle import PER_SOURCE, run, sources_for
from tests.integration.conftest import Harness


def test_sources_cover_the_clients() -> None:
    assert sources_for(1) == ["127.0.0.2"]
    assert len(sources_for(100_020)) * PER_SOURCE >= 100_020
    assert len(set(sources_for(100_020))) == len(sources_for(100_020))


@pytest.mark.parametrize("procs", [1, 2])
async def test_idle_bench_logs_in_and_probes(harness: Harness, procs: int) -> None:
    """In one process, and spread over two generator processes (as 100,000 clients must be:
    one process may open only so many files)."""
    await harness.stop_node()
    await harness.start(c2s_extra="require_encryption = false\nallow_plaintext_auth = true")
    for i in range(1, 14):
        await harness.user(f"user{i}", "pass")
    args = argparse.Namespace(
        host="127.0.0.1", port=harness.port, domain="localhost", prefix="user",
        password="pass", first=1, clients=10, probes=3, concurrency=4, settle=0.0,
        timeout=3.0, deadline=20.0, pidfile="", label="smoke", procs=procs)
    out = await run(args)
    assert out["ok"] == 10 and out["failed"] == 0, out["errors"]
    assert out["probes"] == 3 and out["probe_login_ms_max"] > 0
    assert out["generator_processes"] == procs
