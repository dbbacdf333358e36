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


class NetNs:
    """Namespace ``name`` whose end of the veth has ``inside`` (e.g. 10.219.1.2) and the host's
    ``host`` (10.219.1.1), both /24. :meth:`close` ends whatever still runs inside, and
    deletes it (which deletes both ends of the veth)."""

    def __init__(self, name: str, host: str, inside: str) -> None:
        self.name, self.host, self.inside = name, host, inside
        self.veth = f"{name[:11]}-h"
        self.close()  # a namespace left by a test that was killed
        _ip("netns", "add", name)
        try:
            _ip("link", "add", self.veth, "type", "veth", "peer", "name", "eth0",
                "netns", name)
            _ip("addr", "add", f"{host}/24", "dev", self.veth)
            _ip("link", "set", self.veth, "up")
            _ip("-n", name, "addr", "add", f"{inside}/24", "dev", "eth0")
            _ip("-n", name, "link", "set", "eth0", "up")
            _ip("-n", name, "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise

    def exec_prefix(self) -> list[str]:
        """What runs a command inside."""
        return [IP, "netns", "exec", self.name]

    def close(self) -> None:
        pids = _ip("netns", "pids", self.name, check=False)
        if pids.returncode == 0:
            for pid in pids.stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
        _ip("netns", "del", self.name, check=False)
        _ip("link", "del", self.veth, check=False)


def require() -> None:
    """Skip where no namespace can be made (fail under CI, which runs as root)."""
    import pytest

    if not available():
        if os.environ.get("CI"):
            pytest.fail("network namespaces need root and iproute2 (apt-get install iproute2)")
        pytest.skip("network namespaces need root and iproute2")
