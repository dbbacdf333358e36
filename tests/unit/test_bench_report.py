"""bench/report.py: the rows, medians and ratios it writes for a results file, and its chart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.report import load, main, parse_names, ratio

NAMES = {"15222": "prosody", "25222": "ejabberd", "29222": "hongyan"}


def _run(test: str, label: str, port: int, **values: float) -> str:
    return json.dumps({"test": test, "label": label, "target": f"127.0.0.1:{port}", **values})


LINES = [
    _run("throughput", "tput r1", 15222, msgs_per_s=1000, server_cpu_pct=99),
    _run("throughput", "tput r1", 25222, msgs_per_s=4000, server_cpu_pct=120),
    _run("throughput", "tput r1", 29222, msgs_per_s=9000, server_cpu_pct=98),
    _run("throughput", "tput r2", 15222, msgs_per_s=1200, server_cpu_pct=99),
    _run("throughput", "tput r2", 25222, msgs_per_s=5000, server_cpu_pct=120),
    _run("throughput", "tput r2", 29222, msgs_per_s=11000, server_cpu_pct=98),
    _run("throughput", "tput r3", 29222, msgs_per_s=10000, server_cpu_pct=98),
    _run("idle", "idle r1", 15222, rss_per_conn_kb=34.0),
    _run("idle", "idle r1", 29222, rss_per_conn_kb=8.5),
    '{"note": "a line of another tool"}',
    "not json",
]


def test_rows_are_labels_without_repetition_and_medians_per_server() -> None:
    res = load(LINES, NAMES)
    assert [r.label for r in res.rows] == ["tput", "idle"]
    assert res.servers == ["prosody", "ejabberd", "hongyan"]
    assert res.skipped == 2
    tput = res.rows[0]
    assert tput.median("hongyan", "msgs_per_s") == 10000
    assert tput.median("prosody", "msgs_per_s") == 1100
    assert ratio(tput, "msgs_per_s", "ejabberd") == pytest.approx(10000 / 4500)
    assert ratio(res.rows[1], "rss_per_conn_kb", "ejabberd") is None  # ejabberd not in that row


def test_names_must_be_port_equals_server() -> None:
    assert parse_names("1=a, 2=b") == {"1": "a", "2": "b"}
    with pytest.raises(ValueError, match="'1:a' is not PORT=SERVER"):
        parse_names("1:a")


def test_the_report_names_commit_machine_ratios_and_its_chart(tmp_path: Path) -> None:
    results = tmp_path / "compare-x.jsonl"
    results.write_text("\n".join(LINES) + "\n")
    out, png = tmp_path / "compare-x.md", tmp_path / "compare-x.png"
    assert main([str(results), "--names", "15222=prosody,25222=ejabberd,29222=hongyan",
                 "--out", str(out), "--png", str(png), "--commit", "abc1234"]) == 0
    text = out.read_text()
    assert "- commit: abc1234" in text
    assert "CPUs, Python 3." in text
    assert "- 2 line(s) without a test and target left out" in text
    assert ("| tput | msgs_per_s (more is better) | 1,100 | 4,500 | 10,000 | 9.09x | 2.22x |"
            in text)
    assert "| idle | rss_per_conn_kb (less is better) | 34 | - | 8.5 | 0.25x | - |" in text
    assert "| msgs_per_s | 1,100 (1,000..1,200, n=2) | 4,500 (4,000..5,000, n=2) | " \
           "10,000 (9,000..11,000, n=3) |" in text
    assert "![rows side by side](compare-x.png)" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_results_file_that_cannot_be_read_is_named(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "missing.jsonl")]) == 2
    assert "missing.jsonl: No such file or directory" in capsys.readouterr().err
