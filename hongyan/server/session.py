"""A session as the rest of the server sees it: a place stanzas are sent to.

One write verb, :meth:`Session.send`, whose keywords say what the bytes are: a stanza (passed
through the session's send filters), a nonza (``raw``: never held, never counted), or a stanza
some filter already saw (``after``: it continues from the next filter). One outbox per session:
everything written during one pass of the event loop leaves in one ``transport.write``.

Send filters are how features shape a session's output without the core knowing them: client
state indication (XEP-0352) holds some stanzas back, stream management (XEP-0198) counts and
keeps what it must be able to send again. A filter is a per-session object; the chain is a tuple
kept in :attr:`Session.filters` ordered by each filter's ``order`` (distinct per kind of
filter), and a session with none pays one truth test per stanza.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element
from hongyan.xmpp.errors import StreamError

if TYPE_CHECKING:
    from hongyan.server.clock import Handle
    from hongyan.server.metrics import Counters
    from hongyan.xmpp.jid import JID
    from hongyan.xmpp.parser import Event
    from hongyan.xmpp.stream import Stream

log = logging.getLogger("hongyan.session")

# states
WAIT_OPEN, NEGOTIATING, AUTHENTICATED, BOUND, CLOSED = range(5)


class Writer(Protocol):
    """The bytes side of a session (its transport)."""

    def write(self, data: bytes) -> None: ...


class Flushable(Protocol):
    """Something with an outbox (a session; a link between workers)."""

    def flush(self) -> None: ...


class Flusher(Protocol):
    """Who writes dirty outboxes once per pass of the event loop (the node)."""

    #: what its sessions count (what they write)
    counters: Counters

    def schedule_flush(self, session: Flushable) -> None: ...


class SendFilter(Protocol):
    """A stage of a session's outgoing stanzas. ``outgoing`` gets the serialized stanza (and
    the element when the sender had one) and returns the bytes to pass on (perhaps with a nonza
    after them) or None when it keeps them. ``drain`` gives up what it holds, when the session
    is taken over (XEP-0198 resumption sends it on the new connection)."""

    order: ClassVar[int]

    def outgoing(self, session: Session, data: bytes, el: Element | None) -> bytes | None: ...
    def drain(self) -> list[bytes]: ...


class Acks(SendFilter, Protocol):
    """What the core asks of stream management (XEP-0198), when a session enabled it."""

    @property
    def resumable(self) -> bool: ...
    @property
    def hibernated(self) -> bool: ...
    def handled(self) -> None: ...
    def hibernate(self, session: Session) -> None: ...
    def ended(self, session: Session) -> None: ...


class Session:
    """The outbox and the send filters of one session."""

    __slots__ = ("_out", "filters", "jid", "node", "sm", "state", "transport")

    node: Flusher
    transport: Writer
    jid: JID | None

    def __init__(self) -> None:
        self.state = WAIT_OPEN
        self.filters: tuple[SendFilter, ...] = ()
        self.sm: Acks | None = None  # XEP-0198, only once the client enabled it
        self._out: list[bytes] | None = None

    def send(self, item: Element | bytes, raw: bool = False,
             after: SendFilter | None = None) -> None:
        """Send a stanza (an element, or bytes serialized under ``jabber:client``) through the
        send filters; ``raw=True``: a nonza, past every filter; ``after=f``: a stanza the filter
        ``f`` already passed (it held it and lets it go now). Pass both by keyword."""
        # (plain defaults, not keyword-only: this is the hottest call of the server, and
        # keyword-only defaults cost a dictionary look-up each per call)
        if self.state == CLOSED:
            return
        if isinstance(item, bytes):
            el = None
            data = item
        else:
            el = item
            data = item.to_bytes(NS.CLIENT)
        filters = self.filters
        if filters and not raw:
            if after is not None:  # (it may have left the chain since: CSI on <active/>)
                filters = tuple(f for f in filters if f.order > after.order)
            for f in filters:
                passed = f.outgoing(self, data, el)
                if passed is None:
                    return
                data = passed
        out = self._out  # _write, inlined
        if out is None:
            self._out = [data]
            self.node.schedule_flush(self)
        else:
            out.append(data)

    def add_filter(self, f: SendFilter) -> None:
        self.filters = tuple(sorted((*self.filters, f), key=lambda x: x.order))

    def remove_filter(self, f: SendFilter) -> None:
        self.filters = tuple(x for x in self.filters if x is not f)

    def _write(self, data: bytes) -> None:
        """Queue bytes for the peer. Everything written during one pass of the event loop goes
        out in one ``transport.write`` (the node flushes dirty sessions once per pass): a burst
        of stanzas for one client costs one system call, not one each."""
        out = self._out
        if out is None:
            self._out = [data]
            self.node.schedule_flush(self)
        else:
            out.append(data)

    def flush(self) -> None:
        out = self._out
        if out is not None:
            self._out = None
            self.node.counters.written += len(out)
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))

    def stream_error(self, exc: StreamError) -> None:
        """End the stream with ``exc`` (a session with no stream of its own ignores it)."""

    def close(self) -> None:
        """End the stream cleanly."""


#: events read ahead while an earlier one is handled, before a stream's reading pauses
MAX_QUEUED = 256


class Connection(Writer, Protocol):
    """The transport of a stream of ours, as its input handling uses it."""

    def close(self) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...


class Batcher(Flusher, Protocol):
    """The node as a stream's input handling uses it: output waits for the end of the batch."""

    in_batch: bool

    def end_batch(self) -> None: ...


class StreamSession(Session):
    """A session over a stream of ours (a client's, a component's): its input handled strictly
    in order without a task per connection. Events are handled synchronously; one whose
    handling returns an awaitable starts one task that awaits it and handles the events queued
    behind it meanwhile (past MAX_QUEUED of them, reading pauses). A subclass provides the
    slots ``stream``, ``_pending``, ``_task`` and ``_timer``, :meth:`_handle` and :meth:`_ended`
    (or its own :meth:`_shutdown` and :meth:`connection_lost`)."""

    __slots__ = ()

    stream: Stream
    transport: Connection
    node: Batcher
    _pending: collections.deque[Event] | None
    _task: asyncio.Task[None] | None
    _timer: Handle | None

    def _receive(self, data: bytes) -> None:
        try:
            events = self.stream.receive(data)
        except StreamError as exc:
            self.stream_error(exc)
            return
        node = self.node
        node.in_batch = True
        try:
            for ev in events:
                if self._pending is not None:
                    self._pending.append(ev)
                    if len(self._pending) == MAX_QUEUED:
                        self.transport.pause_reading()
                    continue
                self._dispatch(ev)
                if self.state == CLOSED:
                    return
        finally:
            node.end_batch()

    def _dispatch(self, ev: Event) -> None:
        try:
            pending = self._handle(ev)
        except StreamError as exc:
            self.stream_error(exc)
            return
        if pending is not None:
            # (the subclass's slots: mypy sees only this class's empty ones)
            self._pending = collections.deque()  # type: ignore[misc]
            self._task = asyncio.get_running_loop().create_task(  # type: ignore[misc]
                self._drain(pending))

    async def _drain(self, first: Awaitable[object]) -> None:
        pending = self._pending
        assert pending is not None
        try:
            await first
            while pending and self.state != CLOSED:
                ev = pending.popleft()
                if len(pending) == MAX_QUEUED // 2:
                    self.transport.resume_reading()
                nxt = self._handle(ev)
                if nxt is not None:
                    await nxt
        except StreamError as exc:
            self.stream_error(exc)
        except Exception:
            log.exception("session %r failed", self)
            self.stream_error(StreamError("internal-server-error"))
        finally:
            if self._pending is pending:
                self._pending = None  # type: ignore[misc]
            self._task = None  # type: ignore[misc]
            if len(pending) >= MAX_QUEUED // 2:
                self.transport.resume_reading()

    def _handle(self, ev: Event) -> Awaitable[object] | None:
        """Handle one event; an awaitable when the events after it must wait for it."""
        raise NotImplementedError

    def _shutdown(self) -> None:
        """Write what is queued, end the session, close the connection."""
        self.flush()
        self._ended()
        self.transport.close()

    def connection_lost(self) -> None:
        self._ended()

    def _ended(self) -> None:
        """The session is over, by our end or the peer's: let go of what it holds."""
        raise NotImplementedError

    def _stop_timer(self) -> None:
        """Cancel the subclass's ``_timer`` slot (its negotiation deadline), if set."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None  # type: ignore[misc]

    def stream_error(self, exc: StreamError) -> None:
        if self.state == CLOSED:
            return
        log.debug("stream error to %r: %s", self, exc)
        self._write(self.stream.error(exc))
        self._shutdown()

    def close(self) -> None:
        """Close the stream cleanly (our closing tag, then the socket)."""
        if self.state == CLOSED:
            return
        self._write(self.stream.closing())
        self._shutdown()


class ClientSession(Session):
    """A client's bound resource, whatever carries its stream (TCP, later WebSocket or BOSH):
    what routing and the features read and keep for it (RFC 6121 §8.5: availability and
    priority decide delivery)."""

    __slots__ = ("available", "data", "interested", "presence", "priority", "username")

    def __init__(self) -> None:
        super().__init__()
        self.jid = None
        self.username = ""
        self.available = False
        self.priority = 0
        self.presence: Element | None = None
        #: it asked for the roster (RFC 6121 §2: roster pushes go to interested resources)
        self.interested = False
        #: per-feature state, by feature name (created on first use)
        self.data: dict[str, Any] | None = None

    def rest(self) -> bool:
        """Called periodically: give up what an idle session can rebuild (a parser).
        Returns True when it gave something up."""
        return False

    def take_over(self, old: ClientSession) -> None:
        """XEP-0198 resumption: this freshly authenticated session continues ``old`` (bound,
        possibly still on a connection that has not noticed it is dead). Here the resource
        moves (presence, the features' state, stream management); a subclass moves the rest and
        ends ``old`` with :meth:`superseded`: without a trace, no unavailable presence."""
        self.jid = old.jid
        self.available = old.available
        self.priority = old.priority
        self.presence = old.presence
        self.interested = old.interested
        self.data = old.data
        self.sm = old.sm
        if old.sm is not None:  # the other filters were drained by whoever resumes
            self.add_filter(old.sm)
        self.state = BOUND
        old.sm = None
        old.filters = ()
        old.jid = None
        old.data = None
        old.state = CLOSED
        old._out = None

    def superseded(self) -> None:
        """Drop the connection of a session another one took over (see :meth:`take_over`)."""


#: what handles a nonza (a top-level element that is not a stanza: XEP-0198's, XEP-0352's)
NonzaHandler = Callable[[ClientSession, Element], "Awaitable[object] | None"]
