"""The Module base class and the Module API: the only way a module reaches the server.

A module declares, in one place, the XEPs it implements (with versions), its disco features, its
dependencies and its tables (migrations); its handlers are methods marked with :func:`iq_handler`
and :func:`hook`. Everything it registers through its :class:`ModuleAPI` is tracked and released
when it stops, so a module needs no teardown code of its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

from hongyan.server.hooks import HookBus, HookSet
from hongyan.server.iq import Iq, IqHandlerFn, IqSpec, iq_handler
from hongyan.server.metrics import Kind, Metrics, Reading, Source
from hongyan.server.settle import retrieved
from hongyan.storage.migrations import Migration
from hongyan.xmpp.element import Element
from hongyan.xmpp.errors import StanzaError, error_reply
from hongyan.xmpp.jid import JID

if TYPE_CHECKING:
    from hongyan.config.schema import Config, Section
    from hongyan.server.accounts import Accounts
    from hongyan.server.auth import Guard
    from hongyan.server.clock import Clock, Handle
    from hongyan.server.cluster import Cluster, NoticeHandler
    from hongyan.server.iq import IqTracker
    from hongyan.server.router import ComponentHandler, Router
    from hongyan.server.session import NonzaHandler
    from hongyan.server.sessions import SessionManager
    from hongyan.server.settle import Provider, Settle
    from hongyan.storage.db import Database
    from hongyan.storage.kv import KeyValueStore
    from hongyan.transport.http import Handler, Routes

# what a feature module imports from here
__all__ = ["Iq", "Module", "ModuleAPI", "Timer", "hook", "iq_handler", "retrieved"]

#: what answers a question another process asks (:meth:`ModuleAPI.on_ask`): its body -> the
#: answer's
AskHandler = Callable[[bytes], "bytes | Awaitable[bytes]"]

#: what answers the IQs of a service (:meth:`ModuleAPI.service`): (type, payload, sender) ->
#: the result's payload (None: an empty result); a StanzaError raised is the error answer
ServiceHandler = Callable[[str, Element, JID], Awaitable[Element | None]]

E = TypeVar("E")
#: seconds a module's background tasks get to end after their cancel when it stops
RELEASE_TIMEOUT = 5.0
M = TypeVar("M", bound="Module")
S = TypeVar("S", bound="Section")


@dataclass(frozen=True, slots=True)
class HookSpec:
    event: type
    priority: int


def hook(event: type, priority: int = 0) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a module method as a handler of hook ``event``."""

    def mark(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn._hook_spec = HookSpec(event, priority)  # type: ignore[attr-defined]
        return fn

    return mark


class Module:
    """Base class of every feature module."""

    name: ClassVar[str] = ""
    xeps: ClassVar[dict[str, str]] = {}
    features: ClassVar[frozenset[str]] = frozenset()
    #: disco features an account's bare JID answers with when this module is loaded
    account_features: ClassVar[frozenset[str]] = frozenset()
    identities: ClassVar[tuple[tuple[str, str, str], ...]] = ()  # (category, type, name)
    #: disco identities each account's bare JID answers with when this module is loaded
    account_identities: ClassVar[tuple[tuple[str, str, str], ...]] = ()
    #: modules this one needs: it loads after them, and is off when one of them is
    depends: ClassVar[tuple[str, ...]] = ()
    #: modules this one works with when they are there (:meth:`ModuleAPI.optional`)
    uses: ClassVar[tuple[str, ...]] = ()
    migrations: ClassVar[tuple[Migration, ...]] = ()

    def __init__(self, api: ModuleAPI) -> None:
        self.api = api
        self.log = logging.getLogger(f"hongyan.mod.{self.name}")

    async def start(self) -> None:
        """Called once the database is migrated, before listeners open."""

    async def stop(self) -> None:
        """Called at shutdown, after listeners closed."""

    def cluster_ready(self, cluster: Cluster) -> None:
        """The node runs several processes (``server.workers``) and this is one of them:
        called after :meth:`start`, before the links to the others open."""


class Host(Protocol):
    """What the module API uses of the node its modules run on."""

    config: Config
    domain: str
    domain_jid: JID
    admins: frozenset[str]
    sessions: SessionManager
    hooks: HookBus
    router: Router
    iq_tracker: IqTracker
    nonzas: dict[tuple[str, str], NonzaHandler]
    modules: dict[str, Module]
    clock: Clock
    http_routes: Routes
    #: who may read ``/health``'s details (``ModuleAPI.health_readers``; none unless set)
    health_detail: Callable[[Any], bool]
    metrics: Metrics
    settle: Settle
    #: the HTTP listener's ports (0: not listening)
    http_port: int
    https_port: int
    #: the client listener's ports (0: not listening, or not yet: they open after modules start)
    c2s_port: int
    direct_tls_port: int
    #: in-band registration takes invitation tokens (XEP-0445)
    ibr_tokens: bool
    #: failed logins per client address and PLAIN password checks
    guard: Guard

    @property
    def db(self) -> Database: ...
    @property
    def kv(self) -> KeyValueStore: ...
    @property
    def accounts(self) -> Accounts: ...
    @property
    def cluster(self) -> Cluster | None: ...
    async def delete_account(self, username: str) -> bool: ...
    def request_shutdown(self, restart: bool) -> None: ...


class Timer:
    """A timer armed through :meth:`ModuleAPI.call_later`. The module holds it only while it is
    pending: firing or :meth:`cancel` lets it go, and stopping the module cancels what is left,
    so a module that arms a timer per flush holds at most the timers still to fire."""

    __slots__ = ("_fn", "_handle", "_pending")

    def __init__(self, pending: set[Timer], fn: Callable[[], None], delay: float,
                 clock: Clock) -> None:
        self._pending = pending
        self._fn = fn
        self._handle: Handle = clock.call_later(delay, self._fire)
        pending.add(self)

    def _fire(self) -> None:
        self._pending.discard(self)
        self._fn()

    def cancel(self) -> None:
        self._handle.cancel()
        self._pending.discard(self)

    def cancelled(self) -> bool:
        return self._handle.cancelled()


class ModuleAPI:
    """What a module may use. Registrations are tracked and undone by :meth:`release`."""

    def __init__(self, node: Host, module_name: str) -> None:
        self._node = node
        self.module_name = module_name
        self._undo: list[Callable[[], None]] = []
        self._notices: list[tuple[str, NoticeHandler]] = []  # until the cluster is up
        self._tasks: set[asyncio.Task[Any]] = set()
        self._timers: set[Timer] = set()
        #: questions to the other processes (ask): id -> (all answered, answers by process)
        self._asks: dict[int, tuple[asyncio.Future[None], dict[int, bytes]]] = {}
        self._ask_ids = 0
        self._ask_handlers: dict[str, AskHandler] = {}

    # -- read-only context ----------------------------------------------------------------------
    @property
    def config(self) -> Config:
        return self._node.config

    def options(self, cls: type[S]) -> S:
        """A feature's own section of the config file (``cls``, from its ``options.py``)."""
        return self._node.config.options(cls)

    @property
    def domain(self) -> str:
        return self._node.domain

    @property
    def domain_jid(self) -> JID:
        return self._node.domain_jid

    @property
    def admins(self) -> frozenset[str]:
        """The server's administrators (``server.admins``), as prepared bare JIDs: what a
        feature compares a requester's ``bare_str`` with to grant it more."""
        return self._node.admins

    @property
    def guard(self) -> Guard:
        """The password checks and failed-login delays of the node's logins, for a module that
        takes a password of its own (the admin page)."""
        return self._node.guard

    @property
    def db(self) -> Database:
        return self._node.db

    @property
    def kv(self) -> KeyValueStore:
        return self._node.kv

    @property
    def sessions(self) -> SessionManager:
        return self._node.sessions

    @property
    def cluster(self) -> Cluster | None:
        """The node's other processes, or None when this process is the whole node."""
        return self._node.cluster

    def home(self, username: str) -> int | None:
        """The process where ``username`` is handled, or None when it is this one."""
        cluster = self._node.cluster
        if cluster is None:
            return None
        home = cluster.home(username)
        return None if home == cluster.index else home

    def is_home(self, username: str) -> bool:
        """Whether ``username``'s sessions and stanzas are handled in this process."""
        return self.home(username) is None

    def service_home(self, domain: str) -> int | None:
        """The process that runs the service ``domain``, or None when it is this one."""
        cluster = self._node.cluster
        if cluster is None:
            return None
        home = cluster.service_home(domain)
        return None if home == cluster.index else home

    def notify(self, topic: str, body: bytes = b"", to: int | None = None) -> None:
        """A notice to process ``to``, or to every other one (nothing when alone)."""
        cluster = self._node.cluster
        if cluster is not None:
            cluster.notify(topic, body, to)

    async def broadcast(self, topic: str, body: bytes = b"") -> None:
        """A notice to every other process, returning once each has handled it."""
        cluster = self._node.cluster
        if cluster is not None:
            await cluster.notify_all(topic, body)

    @property
    def accounts(self) -> Accounts:
        return self._node.accounts

    @property
    def router(self) -> Router:
        return self._node.router

    @property
    def hooks(self) -> HookBus:
        return self._node.hooks

    def now(self) -> float:
        """Wall-clock time (seconds since the epoch) from the node's injectable clock."""
        return self._node.clock.time()

    def monotonic(self) -> float:
        """Monotonic seconds from the node's clock (for durations: uptime, idle times)."""
        return self._node.clock.monotonic()

    @property
    def clock(self) -> Callable[[], float]:
        """The node's clock itself (what :meth:`now` calls), for a hot path to keep."""
        return self._node.clock.time

    def module(self, cls: type[M]) -> M:
        """A module this module declared in ``depends`` (its public methods only)."""
        mod = self._node.modules.get(cls.name)
        if not isinstance(mod, cls):
            raise LookupError(f"module {cls.name!r} is not loaded")
        return mod

    def loaded(self) -> list[Module]:
        """Every loaded module, in load order (for disco)."""
        return list(self._node.modules.values())

    def has_module(self, name: str) -> bool:
        return name in self._node.modules

    def optional(self, name: str) -> Module | None:
        """A module this one ``uses``, or None when it is not loaded."""
        return self._node.modules.get(name)

    # -- registration ---------------------------------------------------------------------------
    def on(self, event: type[E], handler: Callable[[E], Any], priority: int = 0) -> None:
        self._undo.append(self._node.hooks.on(event, handler, priority))

    def hook_set(self, *entries: tuple[type, Callable[[Any], Any], int]) -> HookSet:
        """Hooks the module switches on and off with :meth:`HookSet.set` (registered only
        while they have work to do); switched off when the module stops."""
        hooks = HookSet(self._node.hooks, *entries)
        self._undo.append(lambda: hooks.set(False))
        return hooks

    def on_notice(self, topic: str, handler: NoticeHandler) -> None:
        """Handle the notices other processes send on ``topic`` (registered once the cluster
        is there, if ever); removed when the module stops."""
        cluster = self._node.cluster
        if cluster is None:
            self._notices.append((topic, handler))
        else:
            self._undo.append(cluster.on(topic, handler))

    def on_ask(self, topic: str, handler: AskHandler) -> None:
        """Answer the questions :meth:`ask` puts on ``topic``, in this process and (notices
        ``<topic>:ask``/``<topic>:answer``) for the others."""
        self._ask_handlers[topic] = handler

        async def asked(body: bytes) -> None:
            origin, ask_id, payload = body.split(b" ", 2)
            cluster = self._node.cluster
            assert cluster is not None
            answer = await self._answer(handler, payload)
            self.notify(f"{topic}:answer", b"%d %s " % (cluster.index, ask_id) + answer,
                        to=int(origin))

        def answered(body: bytes) -> None:
            index, ask_id, payload = body.split(b" ", 2)
            waiting = self._asks.get(int(ask_id))
            cluster = self._node.cluster
            if waiting is None or cluster is None:
                return  # (too late: that question was answered without it)
            done, answers = waiting
            answers[int(index)] = payload
            if len(answers) >= cluster.count and not done.done():
                done.set_result(None)

        self.on_notice(f"{topic}:ask", asked)
        self.on_notice(f"{topic}:answer", answered)

    @staticmethod
    async def _answer(handler: AskHandler, body: bytes) -> bytes:
        result = handler(body)
        if not isinstance(result, bytes):
            result = await result
        return result

    async def ask(self, topic: str, body: bytes = b"", timeout: float = 5.0
                  ) -> dict[int, bytes]:
        """Every process's answer to ``body`` on ``topic`` (this one's included; see
        :meth:`on_ask`), by process index (alone: index 0). A process that does not answer
        within ``timeout`` seconds is missing from the result."""
        handler = self._ask_handlers[topic]
        cluster = self._node.cluster
        if cluster is None:
            return {0: await self._answer(handler, body)}
        self._ask_ids += 1
        ask_id = self._ask_ids
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        answers: dict[int, bytes] = {}
        self._asks[ask_id] = (done, answers)
        try:
            self.notify(f"{topic}:ask", b"%d %d " % (cluster.index, ask_id) + body)
            answers[cluster.index] = await self._answer(handler, body)
            if len(answers) < cluster.count:
                try:
                    await asyncio.wait_for(asyncio.shield(done), timeout)
                except TimeoutError:
                    missing = sorted(set(range(cluster.count)) - set(answers))
                    logging.getLogger(f"hongyan.mod.{self.module_name}").warning(
                        "%s: no answer from workers %s within %s s", topic, missing, timeout)
            return dict(answers)
        finally:
            del self._asks[ask_id]

    def cluster_ready(self, cluster: Cluster) -> None:
        """The node's cluster came up: the notice handlers asked for before it register."""
        for topic, handler in self._notices:
            self._undo.append(cluster.on(topic, handler))
        self._notices.clear()

    def iq(self, spec: IqSpec, handler: IqHandlerFn) -> None:
        self._undo.append(self._node.router.register_iq(spec, handler))

    def nonza(self, xmlns: str, name: str,
              handler: NonzaHandler) -> None:
        """Handle top-level elements ``{xmlns}name`` a client sends once authenticated
        (stream management, client state indication). The handler checks the session's state."""
        key = (xmlns, name)
        nonzas = self._node.nonzas
        if key in nonzas:
            raise ValueError(f"two handlers for nonza {key}")
        nonzas[key] = handler
        self._undo.append(lambda: nonzas.pop(key, None) and None)

    def component(self, domain: str, handler: ComponentHandler) -> None:
        """Receive every stanza addressed to ``domain`` (a subdomain the module hosts, such as
        ``conference.<domain>``): ``handler(stanza, sender, to)``, with the router's contract
        (return an awaitable to keep the sender's stanzas in order)."""
        self._undo.append(self._node.router.register_component(domain, handler))

    def service(self, domain: str, handler: ServiceHandler) -> None:
        """Host ``domain`` as a service spoken to with IQs (publish-subscribe, file upload):
        an IQ get or set to the domain itself with one payload goes to ``handler``, and its
        answer or :class:`StanzaError` goes back from ``domain``; a message gets
        service-unavailable, anything else is ignored."""
        route = self.route

        async def answer(el: Element, itype: str, payload: Element, sender: JID) -> None:
            try:
                result = await handler(itype, payload, sender)
            except StanzaError as exc:
                route(error_reply(el, exc))
                return
            reply = Element("iq", attrs={"type": "result", "id": el.attrs.get("id", ""),
                                         "from": domain, "to": str(sender)})
            if result is not None:
                reply.children.append(result)
            route(reply)

        def on_stanza(el: Element, sender: JID, to: JID) -> Awaitable[object] | None:
            if el.name != "iq":
                if el.name == "message" and el.attrs.get("type") != "error":
                    self._node.router.bounce(el, StanzaError("service-unavailable"))
                return None
            itype = el.attrs.get("type", "")
            if itype not in ("get", "set"):
                return None
            payloads = list(el.elements)
            if to.local or to.resource or len(payloads) != 1:
                self._node.router.bounce(el, StanzaError(
                    "service-unavailable" if payloads else "bad-request"))
                return None
            return answer(el, itype, payloads[0], sender)

        self.component(domain, on_stanza)

    def accept_ibr_tokens(self) -> None:
        """Let a client register in band with an invitation token (XEP-0445) even when open
        registration is off: the stream features say so, and the ``jabber:iq:register`` and
        ``urn:xmpp:pars:0`` IQs reach their handlers before authentication."""
        node = self._node
        node.ibr_tokens = True

        def undo() -> None:
            node.ibr_tokens = False
        self._undo.append(undo)

    def http_route(self, method: str, path: str, handler: Handler) -> None:
        """Serve HTTP ``method`` on ``path`` (ports 5280/5281; a path ending in ``/*``: every
        path under it) with the aiohttp handler ``handler(request) -> response``. The request's
        ``remote`` and ``scheme`` are the client's, also behind a trusted reverse proxy. With
        several workers, a request is served by whichever worker accepted its connection."""
        self._undo.append(self._node.http_routes.add(method, path, handler))

    def health_readers(self, may_read: Callable[[Any], bool]) -> None:
        """Who sees ``/health``'s details (domain, sessions, workers, the missing ones):
        ``may_read(request)``. Everyone else gets the status alone (``{"status": ...}`` with
        the same 200 or 503), which is all a load balancer needs."""
        node = self._node
        before = node.health_detail
        node.health_detail = may_read

        def undo() -> None:
            node.health_detail = before
        self._undo.append(undo)

    def metric(self, kind: Kind, name: str, help: str, read: Callable[[], Reading],
               labels: tuple[str, ...] = ()) -> None:
        """Show a number at ``/metrics`` as ``hongyan_<name>`` (a counter: ``_total``
        appended), read by ``read()`` only when it is scraped: a module counts in a plain
        attribute of its own and nothing runs per stanza. ``read`` returns one value, or one
        per tuple of ``labels`` values."""
        self._undo.append(self._node.metrics.add(Source(name, kind, help, read, labels)))

    @property
    def metrics(self) -> Metrics:
        """The node's numbers (what ``/metrics`` shows)."""
        return self._node.metrics

    @property
    def http_url(self) -> str:
        """The HTTP listener's base URL as this node knows it: ``https://<domain>:<port>``
        when it serves HTTPS, else ``http://``; empty while it does not listen. A reverse
        proxy's public address is configuration (the modules' own options)."""
        node = self._node
        if node.https_port:
            return f"https://{node.domain}:{node.https_port}"
        if node.http_port:
            return f"http://{node.domain}:{node.http_port}"
        return ""

    @property
    def c2s_ports(self) -> tuple[int, int]:
        """The client listener's STARTTLS and direct TLS ports; 0 while one does not listen
        (they open after every module started: a module that announces them waits)."""
        return self._node.c2s_port, self._node.direct_tls_port

    def register(self, module: Module) -> None:
        """Register every handler ``module`` marked with decorators."""
        for attr in dir(type(module)):
            fn = getattr(type(module), attr, None)
            if fn is None or not callable(fn):
                continue
            bound = getattr(module, attr)
            for spec in getattr(fn, "_iq_specs", ()):
                self.iq(spec, bound)
            hspec = getattr(fn, "_hook_spec", None)
            if isinstance(hspec, HookSpec):
                self.on(hspec.event, bound, hspec.priority)

    # -- acting ---------------------------------------------------------------------------------
    def route(self, stanza: Element) -> None:
        """Route a stanza the server itself sends (``from`` and ``to`` set), to completion
        (an offline recipient's message is stored, not dropped)."""
        self._node.router.send(stanza)

    async def request(self, iq: Element, timeout: float) -> Element:
        """Send an IQ get/set the server originates (``from``, ``to`` and a unique ``id`` set)
        and return its answer, a result or an error; :class:`TimeoutError` after ``timeout``
        seconds. Answers are matched by id, and only from the JID the request went to."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Element] = loop.create_future()
        tracker = self._node.iq_tracker
        iq_id = iq.attrs["id"]
        to = iq.attrs["to"]

        def got(el: Element) -> None:
            if el.attrs.get("from", self.domain) != to:
                tracker.expect(iq_id, got)  # not from the addressee: keep waiting
            elif not answer.done():
                answer.set_result(el)

        tracker.expect(iq_id, got)
        try:
            self.route(iq)
            return await asyncio.wait_for(answer, timeout)
        finally:
            tracker.cancel(iq_id)

    async def delete_account(self, username: str) -> bool:
        """Delete an account with all its data (every module's AccountDeleted hook runs) and
        close its sessions."""
        return await self._node.delete_account(username)

    def shutdown(self, restart: bool = False) -> None:
        """Stop the whole node (every worker), or restart it (``restart``: the process
        starts again with the same arguments once everything stopped)."""
        self._node.request_shutdown(restart)

    def durable(self, provider: Provider) -> None:
        """Register what says when the module's batched writes are committed: ``provider()``
        returns a future done once everything it queued so far is (failed if that write
        failed), or None when nothing is outstanding. Stream management acks wait for it
        (see :meth:`settled`)."""
        self._undo.append(self._node.settle.add(provider))

    def settled(self) -> asyncio.Future[None] | None:
        """A future done once everything routed so far survives a crash of the server: every
        module's batched writes committed, and every other process of the node handled what
        this one handed it; None when nothing is outstanding (``server/settle.py``)."""
        return self._node.settle.pending()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run a background coroutine owned by the module (cancelled when it stops)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logging.getLogger(f"hongyan.mod.{self.module_name}").error(
                "background task failed", exc_info=task.exception())

    def call_later(self, delay: float, fn: Callable[[], None]) -> Timer:
        """Call ``fn`` after ``delay`` seconds unless cancelled or the module stops first."""
        return Timer(self._timers, fn, delay, self._node.clock)

    async def sleep(self, delay: float) -> None:
        """Wait ``delay`` seconds on the node's clock (a periodic task's pause)."""
        await self._node.clock.sleep(delay)

    @property
    def pending_timers(self) -> int:
        """How many timers armed through this API are still to fire."""
        return len(self._timers)

    async def release(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()
        for timer in list(self._timers):
            timer.cancel()
        for t in list(self._tasks):
            t.cancel()
        # bounded: a task that lost its cancel (Python 3.11's wait_for can swallow one that
        # arrives as the awaited thing finishes) is cancelled once more, then left behind with
        # an error naming it, instead of holding the node's stop forever
        for attempt in range(2):
            if not self._tasks:
                return
            _, pending = await asyncio.wait(set(self._tasks), timeout=RELEASE_TIMEOUT)
            if not pending:
                return
            for t in pending:
                if attempt == 0:
                    t.cancel()
                else:
                    logging.getLogger(f"hongyan.mod.{self.module_name}").error(
                        "background task %s did not end when cancelled; left behind",
                        t.get_coro())
