"""The node: the composition root that builds and wires everything once.

No globals and no service locator: the node creates the storage, the session manager, the
router, the hook bus and the modules, hands each what it needs, and opens the listeners.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import logging
import secrets
import socket
import ssl
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from aiohttp import web

from hongyan.cluster.workers import Workers
from hongyan.config.schema import Config
from hongyan.server import accounts as accounts_mod
from hongyan.server.accounts import Accounts
from hongyan.server.auth import Guard
from hongyan.server.bosh import BOSH_PATH, BoshEndpoint
from hongyan.server.c2s import AUTHENTICATED, DETACHED, C2SSession, Transport
from hongyan.server.clock import Clock
from hongyan.server.cluster import Cluster
from hongyan.server.component import ComponentSession, ExternalComponents
from hongyan.server.fast import FastTokens
from hongyan.server.features import load_module_classes
from hongyan.server.hooks import AccountDeleted, HookBus
from hongyan.server.iq import Iq, IqTracker
from hongyan.server.irc import IrcSession
from hongyan.server.limits import Addresses, Preauth
from hongyan.server.metrics import Counters, Metrics, Reading, Source, resident_memory
from hongyan.server.module import Module, ModuleAPI
from hongyan.server.router import Router
from hongyan.server.s2s import Federation, Served
from hongyan.server.s2s.certs import Trust
from hongyan.server.sasl2 import Outcome
from hongyan.server.session import Flushable, NonzaHandler
from hongyan.server.sessions import SessionManager
from hongyan.server.settle import Settle
from hongyan.server.tls import cert_der, client_context, ensure_self_signed, server_context
from hongyan.server.web import WEBSOCKET_PATH, WebSocketEndpoint, health
from hongyan.storage.db import Database, open_database
from hongyan.storage.kv import KV_MIGRATIONS, KeyValueStore
from hongyan.storage.migrations import Migration, migrate
from hongyan.transport.bosh import BoshTransport
from hongyan.transport.http import HeadLimits, HttpServer, Proxies, Routes
from hongyan.transport.tcp import (
    Connections,
    StreamTransport,
    TLSConfig,
    listen,
    listening_sockets,
)
from hongyan.transport.wsfront import FrontDoor
from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element
from hongyan.xmpp.errors import StanzaError, StreamError, error_reply
from hongyan.xmpp.jid import JID, JIDError
from hongyan.xmpp.parser import parse_element
from hongyan.xmpp.sasl import tls_server_end_point
from hongyan.xmpp.stream import COMPONENT, RFC7395, S2S, Parsers, Profile

log = logging.getLogger("hongyan.node")


class WorkerSpec:
    """What a worker process of a multi-worker node gets from the supervisor."""

    __slots__ = ("count", "index", "listeners", "run_dir")

    def __init__(self, index: int, count: int, run_dir: str,
                 listeners: dict[str, list[socket.socket]]) -> None:
        self.index = index
        self.count = count
        self.run_dir = run_dir
        #: "c2s" and "tls" (one per c2s.bind address), "http" and "https" (per http.bind
        #: address): the listening sockets made by the supervisor
        self.listeners = listeners


#: kv_store namespace of server-wide values (username "" is never an account's).
_SECRET_NS = "hongyan:server"


class Node:
    def __init__(self, config: Config, clock: Clock | None = None,
                 worker: WorkerSpec | None = None) -> None:
        self.config = config
        self._worker = worker
        #: the other worker processes of this node (None: this process is the whole node)
        self.workers: Workers | None = None
        #: wall time, monotonic time and timers for everything that waits (tests move it)
        self.clock = clock if clock is not None else Clock()
        self.domain = config.server.domain
        self.domain_jid = JID("", self.domain, "")
        self.admins = _admins(config.server.admins)
        self.data_dir = Path(config.server.data_dir)
        self.hooks = HookBus()
        #: what a XEP-0198 ack waits for (archive writes, other workers): server/settle.py
        self.settle = Settle()
        #: what /metrics shows, and what the sessions and listeners count for it
        self.metrics = Metrics()
        self.counters = Counters()
        self.connections = Connections()
        self.sessions = SessionManager()
        self.router = Router(self)
        self.iq_tracker = IqTracker()
        self.modules: dict[str, Module] = {}
        #: who may read /health's details: the metrics module's readers (``[metrics]``)
        self.health_detail: Callable[[Any], bool] = lambda _request: False
        self.nonzas: dict[tuple[str, str], NonzaHandler] = {}
        self.registration_enabled = config.registration_enabled
        #: in-band registration with an invitation token (XEP-0445), when a module takes them
        self.ibr_tokens = False
        # Server-wide secret (fake SCRAM salts for unknown users, the PLAIN check cache): read
        # from the database at start so that it is the same across restarts and cluster nodes.
        self.secret = secrets.token_bytes(32)
        self.ssl_context: ssl.SSLContext | None = None
        self._tls: TLSConfig | None = None
        self._https_context: ssl.SSLContext | None = None
        self._db: Database | None = None
        self._kv: KeyValueStore | None = None
        self._accounts: Accounts | None = None
        self._fast: FastTokens | None = None
        self._apis: list[ModuleAPI] = []
        self._servers: list[asyncio.AbstractServer] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        #: failed logins per client address, remembered PLAIN successes
        self.guard = Guard(config.auth, lambda: self.accounts, lambda: self.secret)
        self._rest_task: asyncio.Task[None] | None = None
        #: what stops the node when a module asks (ModuleAPI.shutdown): ``serve`` and a worker
        #: set it; ``shutdown_asked`` says what was asked (True: a restart)
        self.on_shutdown: Callable[[bool], None] | None = None
        self.shutdown_asked: bool | None = None
        self._dirty: list[Flushable] = []
        self._flush_scheduled = False
        self.in_batch = False
        #: what every c2s stream shares: domain, parser limits, the negotiation deadline
        parsers = Parsers(max_stanza_size=config.c2s.max_stanza_size,
                          max_depth=config.c2s.max_depth)
        preauth = Parsers(max_stanza_size=min(config.c2s.preauth_max_stanza_size,
                                              config.c2s.max_stanza_size),
                          max_depth=config.c2s.max_depth)
        self.c2s_streams: Profile = Profile(config.server.domain, parsers,
                                            clock=self.clock.monotonic,
                                            timeout=config.c2s.auth_timeout, preauth=preauth)
        #: unauthenticated connections per address and in all (this process's)
        self.preauth = Preauth(config.c2s.preauth_per_ip, config.c2s.preauth_total)
        #: the byte and stanza budgets each address's client streams share (this process's)
        c2s = config.c2s
        self.addresses = Addresses(c2s.rate_bytes_per_ip, c2s.rate_burst_per_ip,
                                   c2s.rate_stanzas_per_ip, c2s.rate_stanzas_burst_per_ip)
        #: the same over WebSocket (RFC 7395 framing)
        self.ws_streams: Profile = Profile(config.server.domain, parsers, framing=RFC7395,
                                           clock=self.clock.monotonic,
                                           timeout=config.c2s.auth_timeout)
        self.c2s_port = 0
        self.direct_tls_port = 0
        #: the HTTP routes, the node's own and those modules register (ModuleAPI.http_route)
        self.http_routes = Routes()
        self._proxies = Proxies(config.http.trusted_proxies)
        self._http: HttpServer | None = None
        #: XMPP over BOSH at /http-bind (None: off)
        self.bosh: BoshEndpoint | None = None
        self.ws_endpoint: WebSocketEndpoint | None = None
        self.http_port = 0
        self.https_port = 0
        self._http_routes()
        #: external components (XEP-0114): their streams share the limits of c2s's
        self.components = ExternalComponents(
            self.router, config.components,
            Guard(config.auth, lambda: self.accounts, lambda: self.secret))
        self.component_streams: Profile = Profile(
            config.server.domain, parsers, role=COMPONENT,
            domains=self.components.names)
        self.component_port = 0
        #: server-to-server federation (``[s2s]``; None when off), made once TLS is set up
        self.federation: Federation | None = None
        self.s2s_port = 0
        self.s2s_direct_tls_port = 0
        #: the IRC listener's ports (``[irc]``; 0: off)
        self.irc_port = 0
        self.irc_tls_port = 0
        self._metrics()

    # -- services -------------------------------------------------------------------------------
    @property
    def fast(self) -> FastTokens | None:
        """The FAST tokens (XEP-0484), when ``auth.fast`` is on."""
        return self._fast

    @property
    def cluster(self) -> Cluster | None:
        """The node's other processes as everything but the composition sees them."""
        return self.workers

    @property
    def db(self) -> Database:
        assert self._db is not None, "node not started"
        return self._db

    @property
    def kv(self) -> KeyValueStore:
        assert self._kv is not None, "node not started"
        return self._kv

    @property
    def accounts(self) -> Accounts:
        assert self._accounts is not None, "node not started"
        return self._accounts

    def schedule_flush(self, session: Flushable) -> None:
        """Write ``session``'s queued output soon: at the end of the input batch being handled
        (see :meth:`end_batch`), or else at the end of this pass of the event loop."""
        self._dirty.append(session)
        if not self.in_batch and not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush_dirty)

    def flush_dirty(self) -> None:
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, []
        for s in dirty:
            s.flush()

    def end_batch(self) -> None:
        """A session finished handling one read: write what it produced, for every
        recipient, now (no extra loop pass, so no added latency)."""
        self.in_batch = False
        if self._dirty:
            self.flush_dirty()

    async def _rest_idle_parsers(self) -> None:
        interval = self.config.c2s.idle_parser_release
        while True:
            await asyncio.sleep(interval)
            released = sum(s.rest() for s in self.sessions.all())
            if released >= 64:
                # expat's buffers come from malloc; give the freed pages back to the OS.
                _malloc_trim()

    def spawn(self, coro: Coroutine[Any, Any, Any] | Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

    # -- lifecycle ------------------------------------------------------------------------------
    async def open_storage(self) -> None:
        """Open the database and apply every migration (also used by the CLI)."""
        self._db = await open_database(self.config.storage.url,
                                       pool_size=self.config.storage.pool_size)
        self._kv = KeyValueStore(self._db)
        self._accounts = Accounts(self._db, self.config.auth.scram_iterations)
        if self.config.auth.fast:
            self._fast = FastTokens(self._db, lambda: self.secret,
                                    self.config.auth.fast_token_lifetime,
                                    lambda: self.clock.time())
        classes = load_module_classes(self.config.modules.disabled, self.config.modules.package)
        migs: list[Migration] = [*accounts_mod.MIGRATIONS, *KV_MIGRATIONS]
        for cls in classes:
            migs.extend(cls.migrations)
        applied = await migrate(self._db, migs)
        if applied:
            log.info("applied migrations: %s", ", ".join(f"{c}/{v}" for c, v in applied))
        self._classes = classes

    async def _server_secret(self) -> bytes:
        """The persistent server secret (created once; the first node to start wins a race).

        Why persistent: a fake salt that changed with every restart would tell an attacker
        which usernames do not exist (a real account's salt never changes)."""
        return bytes.fromhex(await self.kv.setdefault("", _SECRET_NS, "secret",
                                                      secrets.token_hex(32)))

    async def start(self, listen_c2s: bool = True) -> None:
        if self.config.cluster.backend != "local":
            raise RuntimeError("cluster.backend = 'redis' is not available yet; use 'local'")
        await self.open_storage()
        self.secret = await self._server_secret()
        self._setup_tls()
        if self.config.s2s_enabled:
            await self._setup_federation()
        for cls in self._classes:
            api = ModuleAPI(self, cls.name)
            module = cls(api)
            api.register(module)
            self.modules[cls.name] = module
            self._apis.append(api)
        for module in self.modules.values():
            await module.start()
        if self._worker is not None:
            w = self._worker
            self.workers = Workers(self, w.index, w.count, w.run_dir)
            self.workers.on("iq", self._peer_iq_result)
            self.workers.on("account-deleted", self._peer_account_deleted)
            self.workers.on("auth-failed", self.guard.peer_failed)
            self.workers.on("auth-ok", self.guard.peer_ok)
            self.guard.notify = self.workers.notify
            self.components.attach_cluster(self.workers)
            if self.bosh is not None:
                self.bosh.attach(self.workers)
            # the router and the modules look the workers up as they start routing
            self.router.attach(self.workers)
            self.settle.cluster = self.workers
            for api in self._apis:
                api.cluster_ready(self.workers)
            for module in self.modules.values():
                module.cluster_ready(self.workers)
            await self.workers.start()
        if listen_c2s:
            await self._listen()
            if self.config.http.enabled:
                await self._listen_http()
            await self._listen_components()
            if self.federation is not None:
                await self._listen_s2s()
            if self.config.irc.enabled:
                await self._listen_irc()
        if self.config.c2s.idle_parser_release > 0:
            self._rest_task = asyncio.get_running_loop().create_task(self._rest_idle_parsers())

    def _setup_tls(self) -> None:
        tls = self.config.tls
        if tls.cert_file and tls.key_file:
            cert, key = Path(tls.cert_file), Path(tls.key_file)
        else:
            cert, key = ensure_self_signed(self.data_dir, self.domain)
        self.ssl_context = server_context(cert, key, alpn=["xmpp-client"])
        #: the same certificate for HTTPS, which negotiates HTTP/1.1 instead of xmpp-client
        self._https_context = server_context(cert, key, alpn=["http/1.1"])
        self._tls = TLSConfig(self.ssl_context, tls_server_end_point(cert_der(cert)))

    async def _setup_federation(self) -> None:
        """Federation's streams, its TLS contexts and its dialback secret (XEP-0185), kept in
        the database so that every worker, node and restart makes the same keys."""
        cfg = self.config.s2s
        parsers = Parsers(max_stanza_size=cfg.max_stanza_size,
                          max_depth=self.config.c2s.max_depth)
        streams = Profile(self.domain, parsers, role=S2S, domains=Served(self.router),
                          clock=self.clock.monotonic, timeout=cfg.negotiation_timeout)
        tls = self.config.tls
        if tls.cert_file and tls.key_file:
            cert, key = Path(tls.cert_file), Path(tls.key_file)
        else:
            cert, key = ensure_self_signed(self.data_dir, self.domain)
        fed = Federation(self, cfg, streams, client_context(cert, key), Trust(cfg.ca_file))
        fed.secret = bytes.fromhex(await self.kv.setdefault("", _SECRET_NS, "dialback",
                                                            secrets.token_hex(32)))
        ctx = server_context(cert, key, alpn=["xmpp-server"])
        if cfg.require_valid_certificates:
            # ask peers for their certificate (SASL EXTERNAL): one that does not validate
            # fails the handshake, as such a peer is refused anyway
            ctx.verify_mode = ssl.CERT_OPTIONAL
            ctx.load_default_certs()
            if cfg.ca_file:
                ctx.load_verify_locations(cfg.ca_file)
        self._s2s_tls = TLSConfig(ctx, b"")
        self.federation = fed
        self.router.remote = fed

    async def _listen_s2s(self) -> None:
        """The server-to-server listener (``[s2s]``, port 5269)."""
        fed = self.federation
        assert fed is not None
        cfg = self.config.s2s
        tls = self._s2s_tls

        def factory() -> StreamTransport:
            return StreamTransport(fed.incoming_stream, tls, False)

        def direct() -> StreamTransport:
            return StreamTransport(fed.incoming_stream, tls, True)

        self.s2s_port = await self._open(cfg.bind, cfg.port, factory, None, "s2s")
        if cfg.direct_tls:
            self.s2s_direct_tls_port = await self._open(cfg.bind, cfg.direct_tls_port, direct,
                                                        tls.context, "s2s-tls")
        log.info("%s: server-to-server on %s (STARTTLS) and %s (direct TLS)", self.domain,
                 self.s2s_port, self.s2s_direct_tls_port or "off")

    async def _listen(self) -> None:
        c2s = self.config.c2s
        self.c2s_port = await self._serve(c2s.port, False, "c2s")
        if c2s.direct_tls:
            self.direct_tls_port = await self._serve(c2s.direct_tls_port, True, "tls")
        log.info("%s: c2s on %s (STARTTLS) and %s (direct TLS)", self.domain, self.c2s_port,
                 self.direct_tls_port or "off")

    async def _serve(self, port: int, direct: bool, name: str) -> int:
        """Accept clients on ``c2s.bind``:``port`` (see :meth:`_open`); return the port."""
        tls = self._tls
        ctx = None
        if direct:
            assert tls is not None
            ctx = tls.context

        def factory() -> StreamTransport:
            return StreamTransport(self._new_session, tls, direct, self.connections)

        return await self._open(self.config.c2s.bind, port, factory, ctx, name)

    async def _open(self, bind: list[str], port: int, factory: Callable[[], asyncio.Protocol],
                    ctx: ssl.SSLContext | None, name: str) -> int:
        """Listen on ``bind``:``port``, or, in a worker, on the listening sockets the
        supervisor made for the listener ``name``; return the port."""
        socks = self._worker.listeners.get(name, []) if self._worker is not None else []
        given: list[socket.socket | None] = [*socks] or [None]
        servers = [await listen(bind, port, factory, ctx, sock=sock) for sock in given]
        self._servers.extend(servers)
        return int(servers[0].sockets[0].getsockname()[1])

    def _http_routes(self) -> None:
        async def get_health(request: web.BaseRequest) -> web.StreamResponse:
            return await health(self, self.config.http.health_timeout,
                                self.health_detail(request))

        self.http_routes.add("GET", "/health", get_health)
        if self.config.http.websocket:
            self.ws_endpoint = WebSocketEndpoint(self, self.config.http, self._proxies)
            self.http_routes.add("GET", WEBSOCKET_PATH, self.ws_endpoint)
        if self.config.http.bosh:
            bosh = self.bosh = BoshEndpoint(self, self.config.http, self._proxies)
            self.http_routes.add("POST", BOSH_PATH, bosh.post)
            self.http_routes.add("GET", BOSH_PATH, bosh.get)
            self.http_routes.add("OPTIONS", BOSH_PATH, bosh.options)

    def _metrics(self) -> None:
        """The core's numbers for /metrics (modules add theirs: ``ModuleAPI.metric``)."""
        conns, counters, guard, router = (self.connections, self.counters, self.guard,
                                          self.router)
        for source in (
            Source("connections", "gauge", "client connections open, by transport",
                   lambda: {("tcp",): conns.tcp, ("tls",): conns.tls,
                            ("websocket",): conns.websocket,
                            ("bosh",): len(self.bosh.sessions) if self.bosh else 0},
                   ("transport",)),
            Source("sessions", "gauge", "bound client sessions, by transport (detached: "
                   "kept for a stream management resumption)", self._sessions_by_transport,
                   ("transport",)),
            Source("stanzas_in", "counter", "stanzas from bound client sessions, routed",
                   lambda: router.messages_routed + router.others_routed),
            Source("stanzas_out", "counter", "XML elements written to client streams "
                   "(stanzas, and the streams' own: headers, features, SASL, acks)",
                   lambda: counters.written),
            Source("messages_routed", "counter", "messages from bound client sessions, routed",
                   lambda: router.messages_routed),
            Source("logins", "counter", "successful logins (SASL)", lambda: guard.logins),
            Source("login_failures", "counter", "failed logins (SASL)",
                   lambda: guard.login_failures),
            Source("resident_memory_bytes", "gauge", "resident memory of the process",
                   resident_memory),
        ):
            self.metrics.add(source)

    def _sessions_by_transport(self) -> Reading:
        counts: dict[tuple[str, ...], float] = dict.fromkeys(
            (("tcp",), ("tls",), ("websocket",), ("bosh",), ("irc",), ("detached",)), 0.0)
        for s in self.sessions.all():
            if isinstance(s, IrcSession):
                counts[("irc",)] += 1
                continue
            if not isinstance(s, C2SSession):
                continue
            if s.transport is DETACHED:
                kind = "detached"
            elif isinstance(s.transport, BoshTransport):
                kind = "bosh"
            elif s.stream.profile is self.ws_streams:
                kind = "websocket"
            else:
                kind = "tls" if s.transport.secure else "tcp"
            counts[(kind,)] += 1
        return counts

    async def _listen_http(self) -> None:
        """The HTTP listener (``[http]``): port 5280, and 5281 with the certificate of c2s."""
        http = self.config.http
        socks = self._worker.listeners if self._worker is not None else {}
        plain = socks.get("http") or listening_sockets(http.bind, http.port)
        secure: list[socket.socket] = []
        if http.tls:
            secure = socks.get("https") or listening_sockets(http.bind, http.tls_port)
        limits = HeadLimits(http.max_request_line, http.max_header_size, http.max_headers,
                            http.header_timeout, http.keepalive_timeout)
        self._http = HttpServer(self.http_routes, self._proxies, clock=self.clock,
                                limits=limits)
        front = None
        ws = self.ws_endpoint
        if ws is not None and http.websocket_lean:
            front = FrontDoor(self._http.server, WEBSOCKET_PATH, ws.upgrade, self.clock,
                              http.header_timeout, http.max_request_line)
        await self._http.start(plain, secure, self._https_context, front)
        self.http_port = int(plain[0].getsockname()[1])
        self.https_port = int(secure[0].getsockname()[1]) if secure else 0
        log.info("%s: HTTP on %s, HTTPS on %s", self.domain, self.http_port,
                 self.https_port or "off")

    def _new_session(self, transport: StreamTransport) -> C2SSession:
        session = C2SSession(self, transport)
        session.admit()
        return session

    async def _listen_irc(self) -> None:
        """IRC clients (``[irc]``, ports 6667 and 6697 with the c2s certificate)."""
        cfg = self.config.irc

        def session(transport: StreamTransport) -> IrcSession:
            s = IrcSession(self, transport, cfg)
            s.admit()
            return s

        def factory() -> StreamTransport:
            return StreamTransport(session, None, False, self.connections)

        def direct() -> StreamTransport:
            return StreamTransport(session, None, True, self.connections)

        self.irc_port = await self._open(cfg.bind, cfg.port, factory, None, "irc")
        if cfg.tls:
            assert self._tls is not None
            self.irc_tls_port = await self._open(cfg.bind, cfg.tls_port, direct,
                                                 self._tls.context, "irc-tls")
        log.info("%s: IRC on %s and %s (TLS)", self.domain, self.irc_port,
                 self.irc_tls_port or "off")

    async def _listen_components(self) -> None:
        """The XEP-0114 listener (``[component_listener]``), when some component is
        configured: plain TCP (the protocol has no TLS), on loopback by default."""
        if not self.components.names:
            return
        cfg = self.config.component_listener

        def factory() -> StreamTransport:
            return StreamTransport(self.adopted_component, None, False)

        self.component_port = await self._open(cfg.bind, cfg.port, factory, None, "component")
        log.info("%s: components (XEP-0114) on %s", self.domain, self.component_port)

    def adopted_component(self, transport: StreamTransport, received: bytes = b""
                          ) -> ComponentSession:
        """A component's connection, accepted here or (``received``: what was read from it)
        by another worker."""
        return ComponentSession(self, transport, received)

    def _peer_account_deleted(self, body: bytes) -> None:
        self.accounts.forget(body.decode())

    def _peer_iq_result(self, body: bytes) -> None:
        self.iq_tracker.resolve(parse_element(body))

    @property
    def tls_config(self) -> TLSConfig | None:
        return self._tls

    def adopted_session(self, transport: Transport, username: str, websocket: bool = False,
                        sasl2: Outcome | None = None) -> C2SSession:
        """A connection another worker authenticated for ``username`` (homed here): the next
        thing on it is the client's stream restart (``websocket``: an RFC 7395 stream), or,
        after SASL2 (``sasl2``), the rest of the login, which this process finishes now."""
        session = C2SSession(self, transport, self.ws_streams if websocket else None)
        session.username = username
        session.state = AUTHENTICATED
        session.share_address_budget()
        if sasl2 is None:
            session.stream.restart(authenticated=True)
        else:
            session.stream.opened()  # the header was read where the connection came in
            self.spawn(session.finish_sasl2(sasl2))
        return session

    def adopted_irc(self, transport: StreamTransport, state: dict[str, Any]) -> IrcSession:
        """An IRC connection another worker logged in for an account homed here."""
        return IrcSession.adopted(self, transport, self.config.irc, state)

    def adopted_websocket(self, username: str, peer_host: str, secure: bool
                          ) -> asyncio.Protocol | None:
        """The protocol for a lean WebSocket's socket that another worker authenticated for
        ``username`` and moved here (None: this node serves no WebSocket)."""
        ws = self.ws_endpoint
        return ws.adopted(username, peer_host, secure) if ws is not None else None

    async def stop(self) -> None:
        if self._rest_task is not None:
            self._rest_task.cancel()
            self._rest_task = None
        for server in self._servers:
            server.close()
        for s in self.sessions.all():
            s.stream_error(StreamError("system-shutdown"))
        if self.bosh is not None:
            self.bosh.stop()
        self.components.stop()
        if self.federation is not None:
            self.federation.stop()
        if self._http is not None:
            await self._http.stop()
            self._http = None
        if self.ws_endpoint is not None:
            self.ws_endpoint.keepalive.close_all()
        if self._tasks:
            # let the SessionClosed hooks just started finish while their modules are still
            # there (stream management hands unacknowledged messages to offline storage)
            await asyncio.wait(list(self._tasks), timeout=5)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        if self.workers is not None:
            await self.workers.stop()
        for module in reversed(list(self.modules.values())):
            try:
                await module.stop()
            except Exception:
                log.exception("module %s failed to stop", module.name)
        self.components.release()
        for api in reversed(self._apis):
            await api.release()
        self._apis.clear()
        self.modules.clear()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        if self._db is not None:
            await self._db.close()
            self._db = None

    # -- authentication helpers -----------------------------------------------------------------
    # -- accounts -------------------------------------------------------------------------------
    async def delete_account(self, username: str) -> bool:
        """Delete an account, all its data, and close its sessions."""
        existed = await self.accounts.delete(username)
        if self.workers is not None:
            self.workers.notify("account-deleted", username.encode())
        await self.hooks.fire(AccountDeleted(username))
        await self.kv.delete_user(username)
        for s in self.sessions.resources(JID(username, self.domain, "")):
            s.stream_error(StreamError("not-authorized", "this account was deleted"))
        return existed

    def request_shutdown(self, restart: bool) -> None:
        log.warning("%s asked by an administrator", "restart" if restart else "shutdown")
        self.shutdown_asked = restart
        if self.on_shutdown is not None:
            self.on_shutdown(restart)

    # -- pre-auth IQ ----------------------------------------------------------------------------
    def preauth_iq(self, session: C2SSession, el: Element, payload: Element
                   ) -> Awaitable[object] | None:
        itype = el.attrs.get("type", "")
        handler = self.router._iq.get((payload.xmlns, payload.name, itype, "host"))
        if handler is None or itype not in ("get", "set"):
            session.send(_anon(error_reply(el, StanzaError("service-unavailable"))))
            return None
        iq = Iq(el, self.domain_jid, self.domain_jid, session, payload)
        return self._preauth_run(session, handler, iq)

    async def _preauth_run(self, session: C2SSession, handler: Callable[[Iq], Any], iq: Iq
                           ) -> None:
        try:
            result = handler(iq)
            if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                result = await result
        except StanzaError as exc:
            result = error_reply(iq.stanza, exc)
        except Exception:
            log.exception("pre-auth iq failed")
            result = error_reply(iq.stanza, StanzaError("internal-server-error"))
        if isinstance(result, Element):
            session.send(_anon(result))


def _admins(jids: list[str]) -> frozenset[str]:
    """``server.admins`` prepared (RFC 7622), so that they compare with a requester's bare
    JID; one that is no bare JID is a configuration error."""
    out = set()
    for text in jids:
        try:
            jid = JID.parse(text)
        except JIDError as exc:
            raise ValueError(f"server.admins: {text!r} is not a JID: {exc}") from None
        if not jid.local or jid.resource:
            raise ValueError(f"server.admins: {text!r} is not a bare JID (user@domain)")
        out.add(jid.bare_str)
    return frozenset(out)


@functools.cache
def _libc_malloc_trim() -> Callable[[int], int] | None:
    try:
        trim: Callable[[int], int] = ctypes.CDLL(
            ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # no glibc
        return None
    return trim


def _malloc_trim() -> None:
    trim = _libc_malloc_trim()
    if trim is not None:
        trim(0)


def _anon(el: Element) -> Element:
    el.attrs.pop("to", None)
    el.attrs.pop("from", None)
    return el


__all__ = ["NS", "Node"]
