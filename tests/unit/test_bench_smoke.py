"""The micro-benchmarks run (smoke mode: tiny sizes, no timing asserted)."""

from __future__ import annotations

from bench.micro import BENCHES, run


def test_every_micro_benchmark_runs() -> None:
    results = run(list(BENCHES), smoke=True)
    assert [r["bench"] for r in results] == list(BENCHES)
    for r in results:
        assert r["n"] > 0 and r["seconds"] > 0


def test_mam_benchmark_runs() -> None:
    from bench.mam import run as run_mam

    results = run_mam(200, repeat=2)
    assert results[0]["case"] == "fill" and results[0]["rows"] == 400
    assert len(results) == 7 and all(r.get("ms_median", 1) > 0 for r in results)
