"""A real DNS server for the federation tests: dnsmasq (Debian's ``dnsmasq-base``) serving
the test domains' SRV and address records, and nothing else (every other name under the test
zones is NXDOMAIN; no forwarding)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path

DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"


def available() -> bool:
    return Path(DNSMASQ).exists()


class DnsServer:
    """dnsmasq on ``address``:``port`` with ``records``: ``("srv", name, target, port[, prio,
    weight])`` and ``("a", name, ip)``."""

    def __init__(self, tmp: Path, address: str, port: int, zones: list[str],
                 records: list[tuple[object, ...]]) -> None:
        self.address = address
        self.port = port
        args = [DNSMASQ, "--no-daemon", "--no-resolv", "--no-hosts", "--bind-interfaces",
                f"--listen-address={address}", f"--port={port}", "--cache-size=0",
                f"--pid-file={tmp / 'dnsmasq.pid'}", "--log-queries",
                f"--log-facility={tmp / 'dnsmasq.log'}", "--user=root", "--group=root"]
        args += [f"--local=/{z}/" for z in zones]
        for r in records:
            if r[0] == "srv":
                _, name, target, port_, *rest = r
                prio, weight = [*rest, 0, 0][:2]
                args.append(f"--srv-host={name},{target},{port_},{prio},{weight}")
            elif r[0] == "a":
                args.append(f"--host-record={r[1]},{r[2]}")
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self.tmp = tmp
        self._probe = f"no-such-name.{zones[0]}"

    async def start(self) -> None:
        self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        import dns.asyncresolver
        r = dns.asyncresolver.Resolver(configure=False)
        r.nameservers = [self.address]
        r.port = self.port
        r.lifetime = 0.5
        for _ in range(50):
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"dnsmasq exited: {err}")
            try:
                await r.resolve(self._probe, "A")
            except Exception as exc:  # NXDOMAIN: it answers
                if type(exc).__name__ == "NXDOMAIN":
                    return
            await asyncio.sleep(0.1)
        self.stop()
        raise RuntimeError("dnsmasq does not answer")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


def require() -> None:
    """Skip without dnsmasq (fail under CI, which installs it)."""
    import pytest

    if not available():
        if os.environ.get("CI"):
            pytest.fail("dnsmasq is missing (apt-get install dnsmasq-base)")
        pytest.skip("dnsmasq is not installed (apt-get install dnsmasq-base)")
