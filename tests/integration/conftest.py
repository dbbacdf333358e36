"""Fixtures: a real Hongyan node on real sockets, on SQLite and on PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from hongyan.config.loader import load_config
from hongyan.server.node import Node
from tests.clock import SteppedClock
from tests.dbsupport import create_temp_pg_database, drop_pg_database, require_pg
from tests.integration.browser import Browsers, require_browser
from tests.integration.clients import Client
from tests.integration.ircclient import IrcClient
from tests.integration.rawstream import PASSWORD


def write_config(tmp_path: Path, storage_url: str, extra: str = "", c2s_extra: str = "",
                 http_extra: str = "", server_extra: str = "", s2s_extra: str = "",
                 domain: str = "localhost") -> Path:
    """A test node's config file; ``s2s_extra``: its [s2s] section (off when empty)."""
    path = tmp_path / "hongyan.toml"
    path.write_text(f"""
[server]
domain = "{domain}"
data_dir = "{tmp_path / 'data'}"
{server_extra}

[c2s]
bind = ["127.0.0.1"]
port = 0
direct_tls_port = 0
{c2s_extra}

[http]
bind = ["127.0.0.1"]
port = 0
tls_port = 0
{http_extra}

[storage]
url = "{storage_url}"

[s2s]
{s2s_extra or "enabled = false"}

[auth]
failure_delay = 0.05
failure_delay_max = 0.2
{extra}
""")
    return path


#: test modules whose subject is the stream and the protocol, not what is stored: they run on
#: SQLite only. Every other module (accounts, rosters, offline, archives, rooms, pubsub, push,
#: restarts, workers) runs on SQLite and on PostgreSQL.
PROTOCOL_ONLY = frozenset({"test_bad_input", "test_c2s", "test_stream", "test_carbons",
                           "test_websocket", "test_websocket_front", "test_bosh_protocol",
                           "test_http", "test_hostmeta", "test_irc", "test_irc_clients",
                           "test_csi", "test_chat", "test_passthrough", "test_omemo",
                           "test_bench_idle", "test_bench_ws", "test_bench_bosh",
                           "test_component", "test_biboumi",
                           "test_metrics", "test_webclient_page", "test_webclient",
                           "test_eventstream", "test_lan", "test_s2s_bad_input",
                           "test_s2s_dns", "test_s2s_certs", "test_s2s_prosody",
                           "test_extdisco", "test_proxy65", "test_invites_browser",
                           "test_http_bounds", "test_adminweb_browser"})


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "storage_url" in metafunc.fixturenames:
        module = metafunc.module.__name__.rsplit(".", 1)[-1]
        backends = ["sqlite"] if module in PROTOCOL_ONLY else ["sqlite", "postgresql"]
        metafunc.parametrize("storage_url", backends, indirect=True)


@pytest.fixture
async def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hongyan.db'}"
        return
    require_pg()
    # a copy of the migrated template: the node starts with nothing left to migrate
    url = await create_temp_pg_database(migrated=True)
    try:
        yield url
    finally:
        await drop_pg_database(url)


class Harness:
    """Starts nodes from a config; makes accounts and logged-in clients."""

    def __init__(self, tmp_path: Path, storage_url: str, domain: str = "localhost") -> None:
        self.tmp_path = tmp_path
        self.domain = domain
        #: the [s2s] section (empty: federation off)
        self.s2s_extra = ""
        self.storage_url = storage_url
        self.node: Node | None = None
        self.clients: list[Client] = []
        self.extra_config = ""
        self.c2s_extra = ""
        self.http_extra = ""
        self.server_extra = ""
        #: the nodes' clock, which a test moves with ``await harness.clock.advance(s)``
        self.clock = SteppedClock()

    async def start(self, extra: str | None = None, c2s_extra: str | None = None,
                    http_extra: str | None = None, server_extra: str | None = None) -> Node:
        """Start a node; ``extra`` is appended to the config file, ``c2s_extra``,
        ``http_extra`` and ``server_extra`` go into its [c2s], [http] and [server] sections.
        All are remembered for :meth:`restart`."""
        if extra is not None:
            self.extra_config = extra
        if c2s_extra is not None:
            self.c2s_extra = c2s_extra
        if http_extra is not None:
            self.http_extra = http_extra
        if server_extra is not None:
            self.server_extra = server_extra
        cfg = load_config(write_config(self.tmp_path, self.storage_url, self.extra_config,
                                       self.c2s_extra, self.http_extra, self.server_extra,
                                       self.s2s_extra, self.domain))
        self.node = Node(cfg, clock=self.clock)
        await self.node.start()
        return self.node

    async def restart(self) -> Node:
        await self.stop_node()
        return await self.start()

    async def stop_node(self) -> None:
        for c in self.clients:
            await c.close()
        self.clients.clear()
        if self.node is not None:
            await self.node.stop()
            self.node = None

    @property
    def port(self) -> int:
        assert self.node is not None
        return self.node.c2s_port

    async def user(self, name: str, password: str = PASSWORD) -> str:
        assert self.node is not None
        await self.node.accounts.create(name, password, time.time())
        return f"{name}@{self.domain}"

    async def client(self, jid: str, password: str = PASSWORD, *, login: bool = True,
                     presence: bool = True, direct_tls: bool = False,
                     plugins: tuple[str, ...] = (), manual: bool = False) -> Client:
        """A client for ``jid``; ``manual`` turns off slixmpp's automatic answers to
        subscription requests (before login, so that requests waiting offline stay open)."""
        c = Client(jid, password, plugins)
        if manual:
            c.auto_authorize = None
            c.auto_subscribe = False
        self.clients.append(c)
        if login:
            port = self.port
            if direct_tls:
                assert self.node is not None
                port = self.node.direct_tls_port
            ok = await c.login(port, direct_tls=direct_tls, presence=presence)
            assert ok, f"{jid} could not log in"
        return c

    async def logged_in(self, name: str, **kw: Any) -> Client:
        """Create account ``name`` and return a client logged in as name@localhost/test."""
        jid = await self.user(name)
        return await self.client(jid + "/" + kw.pop("resource", "test"), **kw)


@pytest.fixture
async def harness(tmp_path: Path, storage_url: str) -> AsyncIterator[Harness]:
    h = Harness(tmp_path, storage_url)
    await h.start()
    try:
        yield h
    finally:
        await h.stop_node()


Factory = Callable[..., Awaitable[Client]]


@pytest.fixture
async def browsers(tmp_path: Path) -> AsyncIterator[Browsers]:
    """Headless Chromium driven by playwright-core (tests/integration/browser.py)."""
    require_browser()
    b = Browsers(tmp_path / "profiles")
    await b.start()
    try:
        yield b
    finally:
        await b.stop()


@pytest.fixture
async def clients() -> AsyncIterator[list[IrcClient]]:
    """The raw IRC clients a test opens, closed after it (tests/integration/ircclient.py)."""
    made: list[IrcClient] = []
    try:
        yield made
    finally:
        for c in made:
            await c.close()
