"""Headless Debian Chromium for the tests, driven through ``web/driver.mjs`` (playwright-core
from npm, with ``executablePath: /usr/bin/chromium``; never a browser download of its own).

:class:`Browsers` runs the Node driver as a child process and speaks JSON lines with it; each
user gets a browser of their own with a fresh profile. Every call is bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"
DRIVER = WEB / "driver.mjs"
CHROMIUM = os.environ.get("HONGYAN_CHROMIUM", "/usr/bin/chromium")


def artifacts_dir(tmp_path: Path, name: str) -> Path:
    """Where a test keeps its screenshots and logs: ``$HONGYAN_TEST_ARTIFACTS/<name>``, else
    ``<repo>/tmp/artifacts/<name>`` (git-ignored)."""
    base = Path(os.environ.get("HONGYAN_TEST_ARTIFACTS") or ROOT / "tmp" / "artifacts")
    out = base / name
    out.mkdir(parents=True, exist_ok=True)
    return out


def require_browser() -> None:
    """Skip (fail under CI) when Chromium, Node or the npm packages are missing."""
    missing = []
    if not Path(CHROMIUM).exists():
        missing.append(f"Debian's chromium ({CHROMIUM}): apt-get install -y chromium")
    if shutil.which("node") is None:
        missing.append("Node.js")
    if not (WEB / "node_modules" / "playwright-core").is_dir() or \
            not (WEB / "node_modules" / "converse.js" / "dist").is_dir():
        missing.append("the npm packages: npm ci --prefix web")
    if missing:
        msg = "browser test needs " + "; ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


class BrowserError(AssertionError):
    pass


class Browsers:
    """The driver process; :meth:`call` sends one command and waits for its answer."""

    def __init__(self, profiles: Path) -> None:
        self._profiles = profiles
        self._proc: asyncio.subprocess.Process | None = None
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        self._profiles.mkdir(parents=True, exist_ok=True)
        self._proc = await asyncio.create_subprocess_exec(
            "node", str(DRIVER), str(self._profiles), cwd=str(WEB),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            limit=64 * 1024 * 1024)

    async def call(self, cmd: str, timeout: float = 40.0, **args: Any) -> Any:
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        async with self._lock:
            mid = next(self._ids)
            proc.stdin.write((json.dumps({"id": mid, "cmd": cmd, **args}) + "\n").encode())
            await proc.stdin.drain()
            line = await asyncio.wait_for(proc.stdout.readline(), timeout)
        if not line:
            raise BrowserError(f"the browser driver ended during {cmd}")
        answer = json.loads(line)
        assert answer["id"] == mid, answer
        if not answer["ok"]:
            raise BrowserError(f"{cmd} {args}: {answer['error']}")
        return answer.get("value")

    async def stop(self) -> None:
        proc = self._proc
        self._proc = None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 20)
        except TimeoutError:
            proc.kill()
            await proc.wait()
