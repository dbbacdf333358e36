"""Real gateways and IRC for the component tests: ngircd (Debian's IRC server) on a loopback
address of its own, Biboumi (Debian's XMPP-IRC gateway) as a component of the test server, and
a raw IRC client that watches a channel.

Both programs come from Debian packages (``.ci/run`` installs them). Without them a test skips
with a message that says how to install them — or fails, in CI (``CI`` set), as the PostgreSQL
tests do.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
from pathlib import Path

import pytest

#: ngircd takes the standard IRC port, which Biboumi falls back to (after trying TLS on 6697
#: and 6670), on a random 127.x.y.z of its own: a free place on loopback that no other test or
#: server here uses, with no port for Biboumi to be told about
IRC_PORT = 6667


def require_programs(*names: str, packages: str = "biboumi ngircd") -> dict[str, str]:
    """The paths of ``names``; skip the calling test without them (saying to install the
    Debian ``packages``) — or fail it, in CI."""
    found = {n: shutil.which(n) or shutil.which(n, path="/usr/sbin:/sbin") for n in names}
    missing = sorted(n for n, p in found.items() if p is None)
    if missing:
        why = f"{', '.join(missing)} not installed"
        if os.environ.get("CI"):
            pytest.fail(f"{why}; in CI these tests must run (.ci/run installs them)")
        pytest.skip(f"{why}: apt-get install -y {packages} to run these tests")
    return {n: p for n, p in found.items() if p is not None}


def loopback_address() -> str:
    return f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"


class Program:
    """A child process whose output goes to a file (read when something goes wrong)."""

    def __init__(self, name: str, log: Path) -> None:
        self.name = name
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, *argv: str) -> None:
        with self.log.open("wb") as out:
            self.proc = await asyncio.create_subprocess_exec(
                *argv, stdout=out, stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    async def stop(self) -> None:
        p = self.proc
        if p is None or p.returncode is not None:
            return
        p.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(p.wait(), 5)
        except TimeoutError:
            p.kill()
            await p.wait()


async def start_ngircd(path: str, tmp: Path, address: str) -> Program:
    conf = tmp / "ngircd.conf"
    conf.write_text(f"""[Global]
Name = irc.test
Info = Hongyan test IRC server
Listen = {address}
Ports = {IRC_PORT}
PidFile = {tmp / 'ngircd.pid'}
MotdPhrase = test
ServerUID = 65534
ServerGID = 65534
[Limits]
MaxConnectionsIP = 0
[Options]
Ident = no
PAM = no
DNS = no
""")
    prog = Program("ngircd", tmp / "ngircd.log")
    await prog.start(path, "-n", "-f", str(conf))
    for _ in range(100):
        try:
            _, w = await asyncio.open_connection(address, IRC_PORT)
            w.close()
            return prog
        except OSError:
            await asyncio.sleep(0.05)
    await prog.stop()
    raise AssertionError(f"ngircd did not listen:\n{prog.output()}")


async def start_biboumi(path: str, tmp: Path, hostname: str, secret: str, port: int) -> Program:
    conf = tmp / "biboumi.cfg"
    policies = tmp / "policies"
    policies.mkdir(exist_ok=True)
    conf.write_text(f"""hostname={hostname}
password={secret}
xmpp_server_ip=127.0.0.1
port={port}
identd_port=0
log_level=1
db_name={tmp / 'biboumi.sqlite'}
policy_directory={policies}
realname_customization=true
""")
    prog = Program("biboumi", tmp / "biboumi.log")
    await prog.start(path, str(conf))
    return prog


class IrcWatcher:
    """A raw IRC client in one channel: what it reads, line by line."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.lines: list[str] = []

    @classmethod
    async def join(cls, address: str, nick: str, channel: str) -> IrcWatcher:
        reader, writer = await asyncio.open_connection(address, IRC_PORT)
        w = cls(reader, writer)
        w.send(f"NICK {nick}", f"USER {nick} 0 * :{nick}")
        await w.wait_for(" 001 ")
        w.send(f"JOIN {channel}")
        await w.wait_for(" 366 ")  # end of the names list: in the channel
        return w

    def send(self, *lines: str) -> None:
        self.writer.write("".join(line + "\r\n" for line in lines).encode())

    async def wait_for(self, text: str, timeout: float = 20.0) -> str:
        """The first line (read from now on, or already read and not yet waited for) that
        contains ``text``; answers the server's pings meanwhile."""
        async def loop() -> str:
            while True:
                for i, line in enumerate(self.lines):
                    if text in line:
                        del self.lines[:i + 1]
                        return line
                raw = await self.reader.readline()
                if not raw:
                    raise AssertionError(f"the IRC server closed the connection waiting for "
                                         f"{text!r}")
                line = raw.decode(errors="replace").rstrip("\r\n")
                if line.startswith("PING "):
                    self.send("PONG " + line[5:])
                    continue
                self.lines.append(line)

        return await asyncio.wait_for(loop(), timeout)

    def close(self) -> None:
        self.send("QUIT :bye")
        self.writer.close()
