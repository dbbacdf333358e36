"""The message archive benchmark runs (smoke mode: 2,000 rows on SQLite, no timing asserted)."""

from __future__ import annotations

from bench.mam import run


def test_mam_benchmark_runs() -> None:
    res = run(smoke=True)
    assert res["engine"] == "sqlite" and res["rows"] == 2000
    assert len(res["ms"]) == 8 and all(ms > 0 for ms in res["ms"].values())
