"""A real TURN server for the call tests: coturn (Debian's ``coturn``: ``turnserver`` and its
client ``turnutils_uclient``) on loopback, with the TURN REST shared-secret scheme
(``use-auth-secret``). ``.ci/run`` installs it; without it a test skips — or fails, in CI."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

from tests.integration.gateways import Program, require_programs
from tests.ports import free_port

STUN_MAGIC = 0x2112A442


@dataclass
class Turn:
    program: Program
    port: int
    secret: str
    uclient: str


def _binding_answered(port: int) -> bool:
    """Whether a STUN Binding request (RFC 5389) to 127.0.0.1:port gets an answer."""
    txid = os.urandom(12)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        s.sendto(struct.pack("!HHI", 0x0001, 0, STUN_MAGIC) + txid, ("127.0.0.1", port))
        try:
            data = s.recv(2048)
        except OSError:
            return False
    return len(data) >= 20 and data[8:20] == txid


async def start_coturn(tmp: Path, secret: str) -> Turn:
    paths = require_programs("turnserver", "turnutils_uclient", packages="coturn")
    port = free_port()
    relay = free_port()
    prog = Program("turnserver", tmp / "turnserver.out")
    await prog.start(
        paths["turnserver"], "-n",  # no config file: everything is on the command line
        "--listening-ip", "127.0.0.1", "--relay-ip", "127.0.0.1",
        "--listening-port", str(port), "--min-port", str(relay), "--max-port", str(relay + 20),
        "--use-auth-secret", "--static-auth-secret", secret, "--realm", "localhost",
        "--no-tls", "--no-dtls", "--no-cli", "--simple-log", "--no-stdout-log",
        "--log-file", str(tmp / "turnserver.log"), "--pidfile", str(tmp / "turnserver.pid"),
        "--db", str(tmp / "turndb"),
        "--allow-loopback-peers",  # the peer of the test allocation is on loopback too
        "--max-allocate-lifetime", "120", "--stale-nonce=60")
    loop = asyncio.get_running_loop()
    for _ in range(100):
        if prog.proc is not None and prog.proc.returncode is not None:
            break
        if await loop.run_in_executor(None, _binding_answered, port):
            return Turn(prog, port, secret, paths["turnutils_uclient"])
        await asyncio.sleep(0.1)
    await prog.stop()
    raise AssertionError(f"turnserver did not answer STUN on {port}:\n{prog.output()}"
                         f"\n{log(tmp)}")


def log(tmp: Path) -> str:
    """What coturn logged (it adds the date to the file name it is given)."""
    return "\n".join(p.read_text(errors="replace") for p in sorted(tmp.glob("turnserver*.log")))


async def allocate(turn: Turn, username: str, password: str) -> tuple[int, str]:
    """Ask coturn for a relay with these credentials (``turnutils_uclient``: one client, no
    RTCP, no data, a peer on loopback): the exit code and what it printed."""
    proc = await asyncio.create_subprocess_exec(
        turn.uclient, "-v", "-c", "-n", "0", "-m", "1", "-p", str(turn.port),
        "-u", username, "-w", password, "-e", "127.0.0.1", "-r", str(free_port()),
        "127.0.0.1", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")
