"""Ports for servers a test starts as a process, whose listener must be written into a config
before the server binds it."""

from __future__ import annotations

import random
import socket
from pathlib import Path


def _ephemeral_floor() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A port free now, below the kernel's ephemeral range. A port the kernel hands out as
    ephemeral (what binding port 0 gives) is free only until the next outgoing connection of
    any parallel test (each PostgreSQL client, each slixmpp login) takes it, and the server
    started a second later then fails to bind it."""
    top = _ephemeral_floor()
    for _ in range(200):
        port = random.randrange(max(1024, top - 12000), top)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")
