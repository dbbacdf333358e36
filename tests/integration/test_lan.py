"""LAN discovery (issue 24, item 4): the real server with ``[lan]`` on announces itself by
mDNS/DNS-SD, and a python-zeroconf browser finds it: on this host's loopback interface
(multicast is looped back to the sender's host, so a browser here sees it), and from a
second network namespace joined to this one by a veth pair, the way another machine on the
LAN would (needs root and iproute2, as in CI)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import Harness
from tests.integration.mdns_browse import browse

CLIENT = "_xmpp-client._tcp.local."
DIRECT = "_xmpps-client._tcp.local."
ROOT = Path(__file__).resolve().parents[2]


def lan_config(instance: str, interface: str, extra: str = "") -> str:
    return f'[lan]\nenabled = true\ninstance = "{instance}"\ninterfaces = ["{interface}"]\n{extra}'


async def test_announced_on_loopback_and_withdrawn_on_stop(harness: Harness) -> None:
    instance = f"Hongyan test {uuid.uuid4().hex[:8]}"
    await harness.stop_node()
    node = await harness.start(extra=lan_config(instance, "127.0.0.1"))
    found = await browse(CLIENT, instance, "127.0.0.1")
    assert found is not None, "the browser did not see the announcement"
    assert found["port"] == node.c2s_port  # the port the listener got (config: 0 = any)
    assert found["addresses"] == ["127.0.0.1"]  # c2s.bind
    assert found["txt"] == {"txtvers": "1", "domain": "localhost"}
    assert found["host"].endswith(".local.")
    tls = await browse(DIRECT, instance, "127.0.0.1")
    assert tls is not None and tls["port"] == node.direct_tls_port
    await harness.stop_node()
    # withdrawn: a new browser no longer finds it
    assert await browse(CLIENT, instance, "127.0.0.1", timeout=2.0) is None


async def test_off_by_default(harness: Harness) -> None:
    assert harness.node is not None
    lan = harness.node.modules["lan"]
    assert getattr(lan, "announced") == []  # noqa: B009
    assert await browse(CLIENT, "Hongyan localhost", "127.0.0.1", timeout=1.5) is None


class Veth:
    """A network namespace joined to this one by a veth pair: a second host on a LAN."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 100000}"
        self.ns = f"hylan{tag}"
        self.here_if, self.there_if = f"hyl{tag}a", f"hyl{tag}b"
        net = 10 + os.getpid() % 240
        self.here, self.there = f"10.213.{net}.1", f"10.213.{net}.2"

    def up(self) -> None:
        self.down()
        for cmd in (f"ip netns add {self.ns}",
                    f"ip link add {self.here_if} type veth peer name {self.there_if}",
                    f"ip link set {self.there_if} netns {self.ns}",
                    f"ip addr add {self.here}/30 dev {self.here_if}",
                    f"ip link set {self.here_if} up",
                    f"ip -n {self.ns} addr add {self.there}/30 dev {self.there_if}",
                    f"ip -n {self.ns} link set {self.there_if} up",
                    f"ip -n {self.ns} link set lo up"):
            subprocess.run(cmd.split(), check=True, timeout=10, capture_output=True)

    def down(self) -> None:
        subprocess.run(["ip", "netns", "del", self.ns], timeout=10, capture_output=True)
        subprocess.run(["ip", "link", "del", self.here_if], timeout=10, capture_output=True)


@pytest.fixture
def veth() -> Iterator[Veth]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        if os.environ.get("CI"):
            pytest.fail("the LAN test needs root and iproute2 (ip netns) in CI")
        pytest.skip("needs root and iproute2 (ip netns) for a second network namespace")
    v = Veth()
    v.up()
    try:
        yield v
    finally:
        v.down()


async def test_seen_from_another_host_on_a_veth_link(harness: Harness, veth: Veth) -> None:
    instance = f"Hongyan veth {uuid.uuid4().hex[:8]}"
    await harness.stop_node()
    node = await harness.start(extra=lan_config(instance, veth.here,
                                                f'addresses = ["{veth.here}"]\n'))
    proc = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", veth.ns, sys.executable, "-m", "tests.integration.mdns_browse",
        CLIENT, instance, veth.there, cwd=ROOT, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    found = json.loads(out)
    assert found is not None, "the browser in the other namespace saw nothing"
    assert found["port"] == node.c2s_port
    assert found["addresses"] == [veth.here]
    assert found["txt"]["domain"] == "localhost"
