"""Two Hongyan nodes with domains of their own (a.test, b.test) that federate over real
sockets: each one's [s2s] listener on a port picked for it, and static routes to the other's
(no DNS). Clients log in to each node with slixmpp."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.dbsupport import create_temp_pg_database, drop_pg_database
from tests.integration.conftest import Harness
from tests.ports import free_port

A, B = "a.test", "b.test"


class Pair:
    """Nodes ``a`` (a.test) and ``b`` (b.test), each routed to the other."""

    def __init__(self, a: Harness, b: Harness, ports: dict[str, int]) -> None:
        self.a = a
        self.b = b
        self.ports = ports

    @staticmethod
    def s2s_section(domain: str, ports: dict[str, int], extra: str = "") -> str:
        # each other domain and its services (real DNS has an SRV record for each)
        routes = ", ".join(f'"{sub}{d}" = "127.0.0.1:{p}"' for d, p in ports.items()
                           if d != domain for sub in ("", "conference.", "pubsub.", "push."))
        return (f'enabled = true\nbind = ["127.0.0.1"]\nport = {ports[domain]}\n'
                f"routes = {{ {routes} }}\n{extra}")

    async def start(self, a_extra: str = "", b_extra: str = "") -> None:
        for h, extra in ((self.a, a_extra), (self.b, b_extra)):
            if h.node is not None:
                await h.stop_node()
            h.s2s_extra = self.s2s_section(h.domain, self.ports, extra)
            await h.start()

    async def stop(self) -> None:
        await self.a.stop_node()
        await self.b.stop_node()


@pytest.fixture
async def pair(tmp_path: Path, storage_url: str) -> AsyncIterator[Pair]:
    """Both nodes started, on the test's database (b on a second one of the same kind)."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    second = f"sqlite:///{tmp_path / 'b' / 'hongyan.db'}"
    if not storage_url.startswith("sqlite"):
        second = await create_temp_pg_database(migrated=True)
    ports = {A: free_port(), B: free_port()}
    p = Pair(Harness(tmp_path / "a", storage_url, A), Harness(tmp_path / "b", second, B), ports)
    p.a.clock = p.b.clock  # one clock: a test moves both nodes' time at once
    try:
        await p.start()
        yield p
    finally:
        await p.stop()
        if not second.startswith("sqlite"):
            await drop_pg_database(second)
