"""A typed hook bus: events are dataclasses, handlers are keyed by event class.

Handlers run in priority order (higher first). A handler may be a plain function or a coroutine
function; :meth:`HookBus.fire` awaits the coroutines in order. A handler that returns ``True``
stops the chain ("handled"). Hot paths use :meth:`HookBus.fire_sync`, which refuses coroutine
handlers, so that no task is created per stanza.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from hongyan.xmpp.element import Element
from hongyan.xmpp.jid import JID

if TYPE_CHECKING:
    from hongyan.server.session import ClientSession

E = TypeVar("E")
Handler = Callable[[Any], "bool | Awaitable[bool | None] | None"]


#: the attribute :func:`anywhere` sets on a handler
ANYWHERE = "_hy_anywhere"


def anywhere(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a :class:`StanzaInbound` handler that any worker process may run for any local
    recipient, because every worker holds what it reads (every blocklist, every archive
    preference): with several workers the sender's worker runs such handlers before it hands
    a message to the recipient's home, which then runs only the others (carbons, which needs
    the recipient's sessions). So the home can write the message without parsing it again.
    Such handlers must come first in the chain (a higher priority than every other one)."""
    setattr(fn, ANYWHERE, True)
    return fn


def runs_anywhere(handler: Handler) -> bool:
    return bool(getattr(handler, ANYWHERE, False))


class HookBus:
    def __init__(self) -> None:
        self._handlers: dict[type, list[tuple[int, int, Handler]]] = {}
        self._seq = 0

    def on(self, event: type[E], handler: Callable[[E], Any], priority: int = 0
           ) -> Callable[[], None]:
        """Register ``handler`` for ``event``; returns a function that unregisters it.
        A sync event (``SYNC = True``) refuses coroutine functions here, once, so that firing
        it needs no per-call check."""
        if getattr(event, "SYNC", False) and inspect.iscoroutinefunction(handler):
            raise TypeError(f"{handler!r} is async but {event.__name__} is a sync hook")
        self._seq += 1
        entry = (-priority, self._seq, handler)
        lst = self._handlers.setdefault(event, [])
        lst.append(entry)
        lst.sort(key=lambda e: (e[0], e[1]))

        def remove() -> None:
            if entry in lst:
                lst.remove(entry)

        return remove

    def has(self, event: type) -> bool:
        return bool(self._handlers.get(event))

    def chain(self, event: type) -> list[tuple[int, int, Handler]]:
        """The live, ordered handler list of ``event`` (empty while none is registered): a hot
        path keeps it and runs ``for _, _, handler in chain`` itself, as :meth:`fire_sync`
        does, without two method calls per stanza. Registration changes it in place."""
        return self._handlers.setdefault(event, [])

    async def fire(self, event: object) -> bool:
        for _, _, handler in self._handlers.get(type(event), ()):
            result = handler(event)
            if inspect.isawaitable(result):
                result = await result
            if result is True:
                return True
        return False

    def fire_sync(self, event: object) -> bool:
        # a plain loop, not any(): no generator per call (this runs on every routed stanza)
        for _, _, handler in self._handlers.get(type(event), ()):  # noqa: SIM110
            if handler(event) is True:
                return True
        return False


class HookSet:
    """Handlers registered only while they have work to do (a blocklist exists, a session
    enabled carbons): a stanza then builds no hook event for them, which matters on the
    routing path, where every sync event costs an object and a call per stanza."""

    __slots__ = ("_bus", "_entries", "_undo")

    def __init__(self, bus: HookBus, *entries: tuple[type, Callable[[Any], Any], int]) -> None:
        self._bus = bus
        self._entries = entries
        self._undo: list[Callable[[], None]] | None = None

    def set(self, wanted: bool) -> None:
        if wanted and self._undo is None:
            self._undo = [self._bus.on(ev, handler, prio) for ev, handler, prio in self._entries]
        elif not wanted and self._undo is not None:
            for undo in self._undo:
                undo()
            self._undo = None

    @property
    def active(self) -> bool:
        return self._undo is not None


# ---- events -----------------------------------------------------------------------------------


@dataclass(slots=True)
class StanzaOutbound:
    """A stanza a local session sent, before routing. Return True to stop it (the handler then
    answers the sender itself). Sync hook."""

    SYNC: ClassVar[bool] = True

    stanza: Element
    sender: JID
    to: JID | None
    session: ClientSession | None


@dataclass(slots=True)
class StanzaInbound:
    """A stanza about to be handled for a local user ``to`` (bare or full). Return True to stop
    it. Sync hook (blocking, privacy).

    A handler that needs a message as it is finally delivered (the archive) sets
    ``serialized``: when no handler stopped the message, the router serializes it once after
    every handler ran, as written on a client stream (``Element.to_str(NS.CLIENT)``: no
    ``xmlns`` on the root, ``jabber:client`` is implied), passes the text to that callback and
    delivers the same serialization, so the message is written once for both."""

    SYNC: ClassVar[bool] = True

    stanza: Element
    sender: JID
    to: JID
    serialized: Callable[[str], None] | None = None
    #: set by a handler that needs the sender to slow down (the archive, when its queue is
    #: full): the router delivers the message, then returns this, and the sender's session
    #: handles its next stanzas once it is done. It must not raise.
    wait: Awaitable[None] | None = None


@dataclass(slots=True)
class MessageUndeliverable:
    """A chat/normal message for a local account with no available resource. A handler that
    takes it (offline storage) returns True; otherwise the sender gets service-unavailable.
    Async hook."""

    stanza: Element
    to: JID


@dataclass(slots=True)
class PresenceOutbound:
    """A presence stanza a session sent with no ``to`` or to a JID (RFC 6121 §4 to §6); the presence
    module handles it. Async hook."""

    stanza: Element
    session: ClientSession
    to: JID | None


@dataclass(slots=True)
class PresenceInbound:
    """A presence stanza arriving for the local user ``to``. Async hook."""

    stanza: Element
    sender: JID
    to: JID


@dataclass(slots=True)
class SessionBound:
    """A resource was bound (sync hook)."""

    SYNC: ClassVar[bool] = True

    session: ClientSession


@dataclass(slots=True)
class SessionClosed:
    """A bound session ended, cleanly or not (async hook: unavailable broadcast)."""

    session: ClientSession
    was_available: bool


@dataclass(slots=True)
class AccountDeleted:
    """An account was deleted: every module removes the user's data (async hook)."""

    username: str


@dataclass(slots=True)
class StreamFeatures:
    """Collect post-auth stream features (sync hook): append elements to ``features``."""

    SYNC: ClassVar[bool] = True

    session: ClientSession
    features: Element


@dataclass(slots=True)
class InlineFeatures:
    """Collect what SASL2 (XEP-0388) may negotiate inline (sync hook): append to ``sasl2``
    (the ``<inline/>`` of ``<authentication/>``, e.g. XEP-0198 resumption) and add
    ``<feature var/>`` elements to ``bind2`` (the ``<inline/>`` of Bind2's ``<bind/>``)."""

    SYNC: ClassVar[bool] = True

    session: ClientSession
    sasl2: Element
    bind2: Element


@dataclass(slots=True)
class Bind2Request:
    """A Bind2 ``<bind/>`` (XEP-0386) just bound ``session`` (sync hook, after
    :class:`SessionBound`): handle your children of ``request`` and append your answers to
    ``bound``, the ``<bound/>`` of the SASL2 ``<success/>``. Nothing is on the wire yet: what a
    handler sends goes out after the ``<success/>``."""

    SYNC: ClassVar[bool] = True

    session: ClientSession
    request: Element
    bound: Element


@dataclass(slots=True)
class Sasl2Resume:
    """A SASL2 ``<authenticate/>`` carried a XEP-0198 ``<resume/>`` (sync hook): the stream
    management module resumes the session into ``session`` (authenticated, not bound) and
    appends ``<resumed/>`` or ``<failed/>`` to ``success``; what it sends (the stanzas sent
    again) goes out after the ``<success/>``. ``resumed``: it did."""

    SYNC: ClassVar[bool] = True

    session: ClientSession
    request: Element
    success: Element
    resumed: bool = False


@dataclass(slots=True)
class Bind2Prepare:
    """A Bind2 ``<bind/>`` (XEP-0386) for ``username`` is about to be handled (async hook,
    before anything is bound or written): append to ``bound`` what needs storage to say, such
    as the archive's catch-up hint (XEP-0313 metadata)."""

    username: str
    request: Element
    bound: list[Element]
