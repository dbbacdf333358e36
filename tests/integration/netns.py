"""A network namespace of the test's own making (iproute2's ``ip netns``) joined to the host's
by a veth pair: a host of its own for a peer server, with an address on each end (a /24 of
their own). Root only: :func:`available` says whether this process may make one."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess

IP = shutil.which("ip") or "/usr/sbin/ip"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([IP, *args], capture_output=True, text=True, timeout=15, check=check)


def available() -> bool:
    return os.geteuid() == 0 and os.path.exists(IP)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sweep(prefix: str) -> None:
    """Delete namespaces ``<prefix><pid>`` left by test processes that are gone (killed
    before their clean-up); those of live processes (another run's) are left alone."""
    listed = _ip("netns", "list", check=False).stdout.split("\n")
    for line in listed:
        name = line.split(" ", 1)[0]
        tail = name[len(prefix):]
        if name.startswith(prefix) and tail.isdigit() and not _alive(int(tail)):
            NetNs.remove(name)


def subnet(slot: int) -> str:
    """A /24 for this process and ``slot`` (``10.219.N``, without the last octet): two test
    runs on one machine (each its own process) rarely share one."""
    return f"10.{200 + os.getpid() % 50}.{(os.getpid() // 50) % 120 * 2 + slot}"


class NetNs:
    """Namespace ``<prefix><pid>`` whose end of the veth has ``inside`` (e.g. 10.219.1.2) and
    the host's ``host`` (10.219.1.1), both /24. :meth:`close` ends whatever still runs
    inside, and deletes it (which deletes both ends of the veth)."""

    def __init__(self, prefix: str, host: str, inside: str) -> None:
        _sweep(prefix)
        self.name = f"{prefix}{os.getpid()}"
        self.host, self.inside = host, inside
        self.close()
        _ip("netns", "add", self.name)
        try:
            _ip("link", "add", self.veth(self.name), "type", "veth", "peer", "name", "eth0",
                "netns", self.name)
            _ip("addr", "add", f"{host}/24", "dev", self.veth(self.name))
            _ip("link", "set", self.veth(self.name), "up")
            _ip("-n", self.name, "addr", "add", f"{inside}/24", "dev", "eth0")
            _ip("-n", self.name, "link", "set", "eth0", "up")
            _ip("-n", self.name, "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise

    @staticmethod
    def veth(name: str) -> str:
        return name[-15:]  # (an interface name has at most 15 characters)

    def exec_prefix(self) -> list[str]:
        """What runs a command inside."""
        return [IP, "netns", "exec", self.name]

    def close(self) -> None:
        self.remove(self.name)

    @staticmethod
    def remove(name: str) -> None:
        pids = _ip("netns", "pids", name, check=False)
        if pids.returncode == 0:
            for pid in pids.stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
        _ip("netns", "del", name, check=False)
        _ip("link", "del", NetNs.veth(name), check=False)

def require() -> None:
    """Skip where no namespace can be made (fail under CI, which runs as root)."""
    import pytest

    if not available():
        if os.environ.get("CI"):
            pytest.fail("network namespaces need root and iproute2 (apt-get install iproute2)")
        pytest.skip("network namespaces need root and iproute2")
