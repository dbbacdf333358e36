"""The fuzz targets in smoke mode: their seeds, then a short atheris run of each (bounded by
input count and time). The long runs are ``python -m fuzz TARGET -runs=1000000``
(docs/hardening.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fuzz.targets import SEEDS, TARGETS

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", list(TARGETS))
def test_seeds_pass(name: str) -> None:
    assert SEEDS[name], "every target has seeds to start from"
    for seed in SEEDS[name]:
        TARGETS[name](seed)


@pytest.mark.parametrize("name", list(TARGETS))
def test_a_short_fuzz_run_finds_nothing(name: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fuzz", name, "-runs=5000", "-max_total_time=20",
         "-max_len=1024", f"-artifact_prefix={tmp_path}/", str(tmp_path / "corpus")],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Done 5000 runs" in done.stderr or "max_total_time" in done.stderr, \
        done.stderr[-2000:]
    assert not list(tmp_path.glob("crash-*"))


def test_a_broken_property_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The checks bite: a JID whose text parses to another JID fails the target."""
    from fuzz import targets

    real = targets.JID.parse
    answers = iter(["a@b", "c@d"])
    monkeypatch.setattr(targets.JID, "parse", lambda text: real(next(answers)))
    with pytest.raises(AssertionError, match="not stable"):
        targets.jid_text("a@b")
