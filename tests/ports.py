"""Ports for servers a test starts as a process, whose listener must be written into a config
before the server binds it."""

from __future__ import annotations

import contextlib
import os
import random
import socket
import time
from pathlib import Path

#: where ports handed out are marked taken, for every test process on this machine (the three
#: pytest workers, and any other checkout's suite running beside them)
RESERVED = Path(os.environ.get("TMPDIR", "/tmp")) / "hongyan-test-ports"
#: seconds after which a mark is stale: by then the test's server holds the port, or is gone
STALE = 900.0


def _ephemeral_floor() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _reserve(port: int) -> bool:
    """Mark ``port`` taken unless another test process marked it in the last STALE s."""
    RESERVED.mkdir(exist_ok=True)
    mark = RESERVED / str(port)
    for _ in range(2):
        try:
            os.close(os.open(mark, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            return True
        except FileExistsError:
            try:
                if time.time() - mark.stat().st_mtime < STALE:
                    return False
            except FileNotFoundError:
                continue
            with contextlib.suppress(FileNotFoundError):
                mark.unlink()
    return False


def free_port() -> int:
    """A port free now, below the kernel's ephemeral range, and handed to no other test.

    Below the range: a port the kernel hands out as ephemeral (what binding port 0 gives) is
    free only until the next outgoing connection of any parallel test (each PostgreSQL
    client, each slixmpp login) takes it. Handed to no other test: a config is written
    seconds before its server binds, and two tests that picked the same free port at random
    meanwhile (the suite starts hundreds of servers in three processes) would both try to
    bind it; a mark file per port (``RESERVED``) keeps each port to one test."""
    top = _ephemeral_floor()
    for _ in range(500):
        port = random.randrange(max(1024, top - 12000), top)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        if _reserve(port):
            return port
    raise RuntimeError("no free port below the ephemeral range")
