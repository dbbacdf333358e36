"""A real Prosody (Debian's) as a federation peer: its own domain, config and data under the
test's tmp dir, its own address (a loopback one, or a host of its own: a network namespace,
``netns.py``; so that both servers listen on 5269), DNS from the
tests' dnsmasq (``unbound.resolvconf``), and a certificate from the tests' CA, which it
trusts."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.netns import NetNs

PROSODY = shutil.which("prosody") or "/usr/bin/prosody"


def require() -> None:
    if not Path(PROSODY).exists():
        if os.environ.get("CI"):
            pytest.fail("prosody is missing (apt-get install prosody lua-unbound)")
        pytest.skip("prosody is not installed (apt-get install prosody lua-unbound)")


class Prosody:
    def __init__(self, tmp: Path, domain: str, address: str, c2s_port: int, nameserver: str,
                 cert: Path, key: Path, ca_file: Path, netns: NetNs | None = None) -> None:
        self.netns = netns
        self.dir = tmp
        self.domain = domain
        self.address = address
        self.c2s_port = c2s_port
        (tmp / "data").mkdir(parents=True, exist_ok=True)
        (tmp / "resolv.conf").write_text(f"nameserver {nameserver}\n")
        self.config = tmp / "prosody.cfg.lua"
        self.log = tmp / "prosody.log"
        self.config.write_text(f"""
run_as_root = true
pidfile = "{tmp}/prosody.pid"
data_path = "{tmp}/data"
log = {{ debug = "{self.log}" }}
interfaces = {{ "{address}" }}
local_interfaces = {{ "{address}" }}
c2s_ports = {{ {c2s_port} }}
c2s_direct_tls_ports = {{ }}
s2s_ports = {{ 5269 }}
component_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
modules_enabled = {{
  "roster"; "saslauth"; "tls"; "dialback"; "disco"; "ping"; "presence"; "message"; "iq";
  "posix";
}}
modules_disabled = {{ "offline"; }}
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
s2s_require_encryption = true
s2s_secure_auth = false
authentication = "internal_plain"
storage = "internal"
unbound = {{ resolvconf = "{tmp}/resolv.conf"; hoststxt = false }}
ssl = {{ certificate = "{cert}"; key = "{key}"; cafile = "{ca_file}" }}

VirtualHost "{domain}"
  ssl = {{ certificate = "{cert}"; key = "{key}"; cafile = "{ca_file}" }}

Component "conference.{domain}" "muc"
  ssl = {{ certificate = "{cert}"; key = "{key}"; cafile = "{ca_file}" }}
  muc_room_locking = false
  restrict_room_creation = false
""")
        self.proc: subprocess.Popen[bytes] | None = None

    def add_user(self, name: str, password: str) -> None:
        d = self.dir / "data" / self.domain.replace(".", "%2e") / "accounts"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{name}.dat").write_text(f'return {{\n\t["password"] = "{password}";\n}};\n')

    async def start(self) -> None:
        inside = self.netns.exec_prefix() if self.netns is not None else []
        self.proc = subprocess.Popen([*inside, PROSODY, "--config", str(self.config), "-F"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                     cwd=self.dir)
        for _ in range(100):
            if self.proc.poll() is not None:
                raise RuntimeError(f"prosody exited: {self.tail()}")
            try:
                _, w = await asyncio.open_connection(self.address, self.c2s_port)
                w.close()
                return
            except OSError:
                await asyncio.sleep(0.1)
        raise RuntimeError(f"prosody does not listen: {self.tail()}")

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text().splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
