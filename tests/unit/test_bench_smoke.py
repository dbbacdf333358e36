"""The micro-benchmarks run (smoke mode: tiny sizes, no timing asserted)."""

from __future__ import annotations

import pytest

from bench.micro import BENCHES, run


def test_every_micro_benchmark_runs() -> None:
    results = run(list(BENCHES), smoke=True)
    assert [r["bench"] for r in results] == list(BENCHES)
    for r in results:
        assert r["n"] > 0 and r["seconds"] > 0


def test_archive_layout_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    from bench.archive_layout import LAYOUTS, main

    assert main(["--smoke"]) == 0
    out = capsys.readouterr().out
    for layout in LAYOUTS:
        assert f"{layout} batch" in out


@pytest.mark.parametrize("transport", ["tcp", "ws", "ws-aiohttp"])
async def test_session_memory_benchmark_runs(transport: str) -> None:
    """bench/session_mem.py: a node, real logins from a child process, a heap figure."""
    from bench.session_mem import run as heap_run

    result = await heap_run(20, 0.1, transport)
    assert result["sessions"] == 20 and result["transport"] == transport
    per = result["heap_bytes_per_session"]
    assert isinstance(per, int) and 0 < per < 100_000


def test_upload_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """bench/upload.py end to end on a tiny load (its own server, slots, PUTs, a GET)."""
    from bench.upload import main

    assert main(["--files", "3", "--size", "200000", "--users", "1", "--deadline", "60"]) == 0
    assert '"created": 3' in capsys.readouterr().out
