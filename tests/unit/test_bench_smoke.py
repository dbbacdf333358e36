"""The micro-benchmarks run (smoke mode: tiny sizes, no timing asserted)."""

from __future__ import annotations

from bench.micro import BENCHES, run


def test_every_micro_benchmark_runs() -> None:
    results = run(list(BENCHES), smoke=True)
    assert [r["bench"] for r in results] == list(BENCHES)
    for r in results:
        assert r["n"] > 0 and r["seconds"] > 0
