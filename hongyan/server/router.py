"""The router: sorts each stanza by kind and address and hands it to a session, a module or a
remote domain (RFC 6120 §10, RFC 6121 §8).

Routing a 1:1 message touches no database and creates no task: the only async paths are IQ
handlers that do I/O and a message for an account with no available resource (offline storage).
Those return an awaitable; the calling session awaits it before it processes its next stanza, so
each sender's stanzas keep their order.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from hongyan.server.hooks import (
    MessageUndeliverable,
    PresenceInbound,
    PresenceOutbound,
    StanzaInbound,
    StanzaOutbound,
    runs_anywhere,
)
from hongyan.server.iq import Iq, IqHandlerFn, IqSpec
from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element
from hongyan.xmpp.errors import StanzaError, error_reply
from hongyan.xmpp.jid import JID, JIDError
from hongyan.xmpp.parser import parse_element

if TYPE_CHECKING:
    import asyncio

    from hongyan.server.accounts import Accounts
    from hongyan.server.cluster import Cluster
    from hongyan.server.hooks import HookBus
    from hongyan.server.iq import IqTracker
    from hongyan.server.session import ClientSession
    from hongyan.server.sessions import SessionManager

log = logging.getLogger("hongyan.router")

IQ_TYPES = frozenset({"get", "set", "result", "error"})
ComponentHandler = Callable[[Element, JID, JID], "Awaitable[object] | None"]

# where a JID's stanzas are handled (Router.resolve)
HERE, PROCESS, SERVICE, UNREACHABLE, REMOTE = range(5)


class Target:
    """A place stanzas are handled: this process (its sessions, its modules, the server
    itself), another process of the node (``index``), a service such as a component
    (``handler``), a remote domain (server-to-server), or out of reach (a domain this server
    does not federate with)."""

    __slots__ = ("handler", "index", "kind")

    def __init__(self, kind: int, index: int = -1, handler: ComponentHandler | None = None
                 ) -> None:
        self.kind = kind
        self.index = index
        self.handler = handler

    def __repr__(self) -> str:
        kinds = ("here", "process", "service", "unreachable", "remote")
        return f"<Target {kinds[self.kind]} {self.index}>"


THIS_PROCESS = Target(HERE)
OUT_OF_REACH = Target(UNREACHABLE)
ELSEWHERE = Target(REMOTE)


class Remote(Protocol):
    """Server-to-server federation as the router uses it."""

    def federates(self, domain: str) -> bool:
        """Stanzas for ``domain`` (not one of this server's) go out to its server."""
    def deliver(self, el: Element, sender: JID, to: JID) -> None:
        """Send ``el`` (``from`` a domain of this server) to the server of ``to``."""


class Endpoint:
    """A full JID whose session is bound in another place (``target``), as a service here
    writes to it: a room's occupant homed on another process of the node. What it is sent
    is serialized and written by that place. It has no stream, outbox or filters here."""

    __slots__ = ("_cluster", "jid", "target")

    #: what a session's stream-management state would be (a room asks of every occupant)
    sm: None = None

    def __init__(self, cluster: Cluster, target: Target, jid: JID) -> None:
        self._cluster = cluster
        self.target = target
        self.jid = jid

    def __repr__(self) -> str:
        return f"<Endpoint {self.jid} at {self.target}>"

    def send(self, item: Element | bytes) -> None:
        data = item.to_bytes(NS.CLIENT) if isinstance(item, Element) else item
        self._cluster.deliver(self.target.index, self.jid.text, data)


class RemoteEndpoint:
    """A full JID at another server, as a service here writes to it (a room's remote
    occupant): what it is sent goes out through server-to-server, from its ``from``."""

    __slots__ = ("_router", "jid")

    sm: None = None

    def __init__(self, router: Router, jid: JID) -> None:
        self._router = router
        self.jid = jid

    def __repr__(self) -> str:
        return f"<RemoteEndpoint {self.jid}>"

    def send(self, item: Element | bytes) -> None:
        el = item if isinstance(item, Element) else parse_element(item)
        try:
            sender = JID.parse(el.attrs["from"])
        except (KeyError, JIDError):
            log.warning("dropping a stanza for %s without a valid from", self.jid)
            return
        self._router.remote_send(el, sender, self.jid)


class Host(Protocol):
    """What the router uses of the node it routes for."""

    domain: str
    sessions: SessionManager
    hooks: HookBus
    iq_tracker: IqTracker

    @property
    def accounts(self) -> Accounts: ...
    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]: ...


class Router:
    def __init__(self, node: Host) -> None:
        self._node = node
        self._domain = node.domain
        self._sessions = node.sessions
        self._hooks = node.hooks
        # the 1:1 message path's sync hooks, kept (HookBus.chain): no has()/fire_sync() calls
        self._outbound = node.hooks.chain(StanzaOutbound)
        self._inbound = node.hooks.chain(StanzaInbound)
        self._iq: dict[tuple[str, str, str, str], IqHandlerFn] = {}
        self.components: dict[str, ComponentHandler] = {}
        #: the domains of external components (XEP-0114 gateways, connected or not): what
        #: they send is a contact's message like any other, unlike what a room sends
        self.gateways: set[str] = set()
        self._services: dict[str, Target] = {}
        #: the node's other processes (None: this process is the whole node). An account's
        #: stanzas are handled on its home process (see :meth:`resolve`).
        self.cluster: Cluster | None = None
        self._processes: tuple[Target, ...] = ()
        #: server-to-server federation (None: every remote domain is out of reach)
        self.remote: Remote | None = None
        #: stanzas from this process's client sessions it routed: messages, and the others
        #: (one increment per stanza; /metrics adds them up)
        self.messages_routed = 0
        self.others_routed = 0

    def attach(self, cluster: Cluster) -> None:
        """This process is one of several (``server.workers``)."""
        self.cluster = cluster
        self._processes = tuple(Target(PROCESS, i) for i in range(cluster.count))

    # -- where ----------------------------------------------------------------------------------
    def resolve(self, to: JID) -> Target:
        """Where stanzas for ``to`` are handled. The one place that knows: the router's
        entry points ask it, and so will server-to-server and a cluster across machines."""
        cluster = self.cluster
        if to.domain != self._domain:
            service = self._services.get(to.domain)
            if service is None:
                remote = self.remote
                if remote is None or not remote.federates(to.domain):
                    return OUT_OF_REACH
                service = ELSEWHERE  # (one process of the node keeps each domain's stream)
            if cluster is not None:
                home = cluster.service_home(to.domain)
                if home != cluster.index:
                    return self._processes[home]
            return service
        if cluster is not None and to.local:
            home = cluster.home(to.local)
            if home != cluster.index:
                return self._processes[home]
        return THIS_PROCESS

    def reach(self, jid: JID) -> ClientSession | Endpoint | RemoteEndpoint | None:
        """What writes to the bound resource ``jid`` wherever it is: its session here, an
        :class:`Endpoint` for a session homed elsewhere, a :class:`RemoteEndpoint` for one at
        another server, None when it is not bound here and has no other place (services such
        as rooms write to occupants this way)."""
        s = self._sessions.get(jid)
        if s is not None or not jid.resource or not jid.local:
            return s
        if jid.domain != self._domain:
            if jid.domain in self._services or self.resolve(jid) is OUT_OF_REACH:
                return None
            return RemoteEndpoint(self, jid)
        target = self.resolve(jid)
        if target.kind != PROCESS:
            return None
        assert self.cluster is not None
        return Endpoint(self.cluster, target, jid)

    def _reach(self, el: Element, sender: JID, to: JID, target: Target
               ) -> Awaitable[object] | None:
        """Hand a stanza to a target that is not here."""
        if target.kind == PROCESS:
            assert self.cluster is not None
            self.cluster.forward(el, sender, to, target.index)
            return None
        if target.kind == SERVICE:
            assert target.handler is not None
            return target.handler(el, sender, to)
        if target.kind == REMOTE:
            assert self.remote is not None
            self.remote.deliver(el, sender, to)
            return None
        self.bounce(el, StanzaError("remote-server-not-found",
                                    f"this server does not federate with {to.domain}"))
        return None

    def remote_send(self, el: Element, sender: JID, to: JID) -> None:
        """A stanza for a JID at another server (from a :class:`RemoteEndpoint`)."""
        pending = self._reach(el, sender, to, self.resolve(to))
        if pending is not None:
            self._node.spawn(pending)

    def serves(self, domain: str) -> bool:
        """``domain`` is this server's or one of its services' (a stream from another server
        may name it)."""
        return domain == self._domain or domain in self._services

    # -- registration ---------------------------------------------------------------------------
    def register_iq(self, spec: IqSpec, handler: IqHandlerFn) -> Callable[[], None]:
        keys = [(spec.xmlns, spec.name, spec.type, scope) for scope in spec.scopes]
        for key in keys:
            if key in self._iq:
                raise ValueError(f"two handlers for IQ {key}")
            self._iq[key] = handler

        def undo() -> None:
            for key in keys:
                self._iq.pop(key, None)

        return undo

    def has_iq(self, xmlns: str, name: str, type: str, scope: str) -> bool:
        return (xmlns, name, type, scope) in self._iq

    def register_component(self, domain: str, handler: ComponentHandler, listed: bool = True
                           ) -> Callable[[], None]:
        """Hand every stanza for ``domain`` to ``handler``; ``listed``: among the server's
        components (disco#items) from now on, else once :meth:`announce` says so."""
        if listed:
            self.components[domain] = handler
        else:
            self.gateways.add(domain)
        self._services[domain] = Target(SERVICE, handler=handler)

        def undo() -> None:
            self.components.pop(domain, None)
            self.gateways.discard(domain)
            self._services.pop(domain, None)

        return undo

    def announce(self, domain: str, listed: bool) -> None:
        """List the service ``domain`` among the server's components or not (an external
        component that connected or left, here or on another process of the node)."""
        service = self._services.get(domain)
        if listed and service is not None and service.handler is not None:
            self.components[domain] = service.handler
        elif not listed:
            self.components.pop(domain, None)

    # -- entry points ---------------------------------------------------------------------------
    def route_from_session(self, el: Element, session: ClientSession, to: JID | None
                           ) -> Awaitable[object] | None:
        """A stanza from a bound local session; ``from`` is already stamped."""
        sender = session.jid
        assert sender is not None
        if self._outbound:
            ev_out = StanzaOutbound(el, sender, to, session)
            for _, _, handler in self._outbound:
                if handler(ev_out) is True:
                    return None
        name = el.name
        if name == "message":
            self.messages_routed += 1
            return self.message(el, sender, to if to is not None else sender.bare)
        self.others_routed += 1
        if name == "presence":
            return self._hooks.fire(PresenceOutbound(el, session, to))
        return self.iq(el, sender, to, session)

    def route_from_server(self, el: Element) -> Awaitable[object] | None:
        """A stanza the server (or a module, or a component) originates; ``from``/``to`` set."""
        try:
            sender = JID.parse(el.attrs["from"])
            to = JID.parse(el.attrs["to"])
        except (KeyError, JIDError):
            log.warning("dropping a server stanza without valid from/to: %s", el)
            return None
        return self.route(el, sender, to)

    def send(self, el: Element) -> None:
        """Route a server-originated stanza (``from``/``to`` set) to completion: work that
        must wait (storing a message for an offline user, a presence broadcast) runs as a
        task of the node instead of being dropped with an unawaited result."""
        pending = self.route_from_server(el)
        if pending is not None:
            self._node.spawn(pending)

    def route(self, el: Element, sender: JID, to: JID) -> Awaitable[object] | None:
        name = el.name
        if name == "message":
            return self.message(el, sender, to)
        if name == "presence":
            return self.presence(el, sender, to)
        return self.iq(el, sender, to, None)

    # -- bounce ---------------------------------------------------------------------------------
    def bounce(self, el: Element, error: StanzaError) -> None:
        """Answer ``el`` with ``error`` unless it is itself an error. A stanza with no ``to``
        was for the sender's own account (RFC 6120 §10.3.3), so the error comes from its bare
        JID (§8.1.2.1): from the domain, a client could not match it to its request."""
        if el.attrs.get("type") == "error":
            return
        reply = error_reply(el, error)
        if "from" not in reply.attrs:
            frm = reply.attrs.get("to")
            reply.attrs["from"] = frm.split("/", 1)[0] if frm else self._domain
        self.send(reply)

    # -- messages -------------------------------------------------------------------------------
    def message(self, el: Element, sender: JID, to: JID, at_home: bool = False
                ) -> Awaitable[object] | None:
        """Route a message. ``at_home``: it came from another worker, which already ran the
        inbound handlers any worker may run (:func:`~hongyan.server.hooks.anywhere`)."""
        if self.cluster is not None or to.domain != self._domain:  # (the 1:1 hot path)
            where = self.resolve(to)
            if where is not THIS_PROCESS:
                if where.kind == PROCESS and to.domain == self._domain:
                    return self._to_home(el, sender, to, where.index)
                # a service or a remote domain kept by another worker: no local user's
                # inbound handlers, as when this process keeps it
                return self._reach(el, sender, to, where)
        if not to.local:
            # Messages to the server itself: nothing handles them yet (RFC 6121 §8.5.1).
            if el.attrs.get("type") not in ("error", "groupchat", "headline"):
                self.bounce(el, StanzaError("service-unavailable"))
            return None
        wire: bytes | None = None
        wait: Awaitable[None] | None = None
        if self._inbound:
            # handlers that may run anywhere ran where the message came from (at_home)
            ev = self._inbound_pass(el, sender, to, False if at_home else None)
            if ev is None:
                return None
            if ev.serialized is not None:
                wire = _serialize_once(el, ev.serialized)
            wait = ev.wait
        mtype = el.attrs.get("type", "normal")
        if to.resource:
            target = self._sessions.get(to)
            if target is not None:
                if wire is None:
                    target.send(el)
                else:
                    target.send(wire)
                return wait
            if mtype == "groupchat":
                self.bounce(el, StanzaError("service-unavailable"))
                return None
            if mtype == "error":
                return None
        if mtype == "error":
            return None
        if mtype == "groupchat":
            self.bounce(el, StanzaError("service-unavailable"))
            return None
        targets = self._sessions.deliverable(to)
        if targets:
            for s in targets:
                if wire is None:
                    s.send(el)
                else:
                    s.send(wire)
            return wait
        if mtype == "headline":
            return wait
        return self._undeliverable(el, to.bare)

    def _to_home(self, el: Element, sender: JID, to: JID, home: int
                 ) -> Awaitable[object] | None:
        """A message for a user homed on worker ``home``: run the inbound handlers any worker
        may run (blocking, the archive) here, where the message is parsed already, then hand
        it over, serialized once for both the archive and the wire."""
        wire: bytes | None = None
        wait: Awaitable[None] | None = None
        if self._inbound:
            ev = self._inbound_pass(el, sender, to, True)
            if ev is None:
                return None
            if ev.serialized is not None:
                wire = _serialize_once(el, ev.serialized)
            wait = ev.wait
        assert self.cluster is not None
        self.cluster.forward(el, sender, to, home, wire)
        return wait

    def _inbound_pass(self, el: Element, sender: JID, to: JID, anywhere: bool | None
                      ) -> StanzaInbound | None:
        """Run the message's inbound handlers: all of them (``anywhere`` None), only those
        that may run on any process (True: before it leaves for its home), or only the
        others (False: at its home). None: one of them handled it."""
        ev = StanzaInbound(el, sender, to)
        for _, _, handler in self._inbound:
            if anywhere is not None and runs_anywhere(handler) is not anywhere:
                continue
            if handler(ev) is True:
                return None
        return ev

    def deliver_serialized(self, data: bytes, to: str, mtype: bytes) -> bool:
        """A message that reached the home of ``to`` (a JID's text) still serialized, its
        :func:`~hongyan.server.hooks.anywhere` handlers run where it entered (another process
        of the node today): write it as it is when that is all :meth:`message` would do (no
        other inbound handler, a chat or normal message, a session to take it). False: it
        must be parsed and routed."""
        if mtype != b"chat" and mtype != b"normal":
            return False
        for _, _, handler in self._inbound:
            if not runs_anywhere(handler):
                return False
        bare, _, resource = to.partition("/")
        if resource:
            target = self._sessions.get_str(bare, resource)
            if target is None:
                return False
            target.send(data)
            return True
        targets = self._sessions.deliverable(bare)
        if not targets:
            return False
        for s in targets:
            s.send(data)
        return True

    async def _undeliverable(self, el: Element, to: JID) -> None:
        if not await self._node.accounts.exists(to.local):
            self.bounce(el, StanzaError("service-unavailable"))
            return
        if not await self._hooks.fire(MessageUndeliverable(el, to)):
            self.bounce(el, StanzaError("service-unavailable", "the recipient is offline"))

    # -- presence -------------------------------------------------------------------------------
    def presence(self, el: Element, sender: JID, to: JID) -> Awaitable[object] | None:
        """Presence for ``to`` (after the sender's side was processed)."""
        where = self.resolve(to)
        if where is not THIS_PROCESS:
            return self._reach(el, sender, to, where)
        if not to.local:
            return None
        hooks = self._hooks
        if hooks.has(StanzaInbound) and hooks.fire_sync(StanzaInbound(el, sender, to)):
            return None
        if hooks.has(PresenceInbound):
            return hooks.fire(PresenceInbound(el, sender, to))
        self.deliver_presence(el, to)
        return None

    def deliver_presence(self, el: Element, to: JID) -> None:
        """Plain delivery: to the full JID, or to every available resource of a bare JID."""
        if to.resource:
            s = self._sessions.get(to)
            if s is not None:
                s.send(el)
            return
        for s in self._sessions.available(to):
            s.send(el)

    # -- iq -------------------------------------------------------------------------------------
    def iq(self, el: Element, sender: JID, to: JID | None, session: ClientSession | None
           ) -> Awaitable[object] | None:
        itype = el.attrs.get("type")
        if itype not in IQ_TYPES or ("id" not in el.attrs and itype in ("get", "set")):
            self.bounce(el, StanzaError("bad-request", "an iq needs an id and a valid type"))
            return None
        if to is not None:
            where = self.resolve(to)
            if where is not THIS_PROCESS:
                return self._reach(el, sender, to, where)
        if to is not None and to.resource:
            if itype in ("get", "set") and to.local and self._hooks.has(StanzaInbound) and \
                    self._hooks.fire_sync(StanzaInbound(el, sender, to)):
                return None
            target = self._sessions.get(to)
            if target is not None:
                target.send(el)
            elif itype in ("get", "set"):
                self.bounce(el, StanzaError("service-unavailable"))
            return None
        if itype in ("result", "error"):
            if not self._node.iq_tracker.resolve(el) and self.cluster is not None:
                # the answer to an IQ another worker sent from the server's JID
                self.cluster.notify("iq", el.to_bytes(""))
            return None
        payloads = [c for c in el.children if isinstance(c, Element)]
        if len(payloads) != 1:
            self.bounce(el, StanzaError("bad-request", "an iq get/set has exactly one payload"))
            return None
        payload = payloads[0]
        if to is None or (to.local == sender.local and to.domain == sender.domain and
                          sender.local):
            target_jid = sender.bare
            scopes: tuple[str, ...] = ("self", "bare")
        elif not to.local:
            target_jid = to
            scopes = ("host",)
        else:
            target_jid = to
            scopes = ("bare",)
        handler = None
        for scope in scopes:
            handler = self._iq.get((payload.xmlns, payload.name, itype, scope))
            if handler is not None:
                break
        if handler is None:
            self.bounce(el, StanzaError("service-unavailable"))
            return None
        if scopes == ("bare",):
            return self._iq_bare(handler, Iq(el, sender, target_jid, session, payload))
        return self._run_iq(handler, Iq(el, sender, target_jid, session, payload))

    async def _iq_bare(self, handler: IqHandlerFn, iq: Iq) -> None:
        if not await self._node.accounts.exists(iq.to.local):
            self.bounce(iq.stanza, StanzaError("service-unavailable"))
            return
        result = self._run_iq(handler, iq)
        if result is not None:
            await result

    def _run_iq(self, handler: IqHandlerFn, iq: Iq) -> Awaitable[object] | None:
        try:
            result = handler(iq)
        except StanzaError as exc:
            self._reply(iq, error_reply(iq.stanza, exc))
            return None
        except Exception:
            log.exception("iq handler failed for %s", iq.stanza)
            self._reply(iq, error_reply(iq.stanza, StanzaError("internal-server-error")))
            return None
        if inspect.isawaitable(result):
            return self._await_iq(iq, result)
        if result is not None:
            self._reply(iq, result)
        return None

    async def _await_iq(self, iq: Iq, pending: Awaitable[Element | None]) -> None:
        try:
            result = await pending
        except StanzaError as exc:
            result = error_reply(iq.stanza, exc)
        except Exception:
            log.exception("iq handler failed for %s", iq.stanza)
            result = error_reply(iq.stanza, StanzaError("internal-server-error"))
        if result is not None:
            self._reply(iq, result)

    def _reply(self, iq: Iq, reply: Element) -> None:
        if iq.session is not None and iq.session.jid == iq.sender:
            if reply.attrs.get("from") == iq.sender.bare_str or "to" not in iq.stanza.attrs:
                reply.attrs.pop("from", None)
            iq.session.send(reply)
            return
        if "from" not in reply.attrs:
            reply.attrs["from"] = str(iq.to)
        reply.attrs["to"] = str(iq.sender)
        self.send(reply)

__all__ = ["NS", "Router"]


def _serialize_once(el: Element, consumer: Callable[[str], None]) -> bytes:
    """Serialize a message once for a hook that keeps it and for delivery, as written on a
    client stream (``jabber:client`` is the default namespace there, and not repeated)."""
    xml = el.to_str(NS.CLIENT)
    consumer(xml)
    return xml.encode()
