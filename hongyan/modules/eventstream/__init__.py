"""The event stream: selected events published to Redis Streams and NATS JetStream, for other
systems (analytics, audit, bridges). Off by default (``[eventstream] enabled``).

Off the routing path: a hook only appends a small tuple to each broker's bounded queue (a
full queue drops the event and counts it) and wakes that broker's sender when the queue was
empty; the sender, a background task per broker, turns up to ``batch_size`` tuples into
events and sends them in one round trip. A broker that is down, refuses a batch or takes
longer than ``timeout`` is closed, the batch counted as dropped, and reconnected after a
backoff doubling from 0.1 s to ``backoff_max``: routing never waits for a broker.

What each event holds (every value text): ``type``, ``time`` (seconds since the epoch, from
the node's clock) and

* ``message`` (a 1:1 message routed to a local user): ``from``, ``to``, ``mtype``, ``size``
  (characters of the stanza as delivered: the router's one serialization, so the size costs
  nothing more), ``body`` only with ``include_body``;
* ``presence`` (a broadcast presence change): ``jid``, ``available`` (``1``/``0``),
  ``show``;
* ``login`` / ``logout`` (a resource bound; a session ended): ``jid`` (and for a logout
  ``was_available``);
* ``room``: ``action`` (join, leave, message, subject), ``room``, ``nick``, ``jid`` (the
  occupant's real bare JID), ``codes`` (a leave's status codes: 307 kicked, 301 banned),
  ``size`` and ``body`` for a message (the body with ``include_body`` only).

With several workers each process publishes what it saw, over its own connections.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING

from hongyan.modules.events import RoomActivity
from hongyan.modules.eventstream.backends import Backend, Item, NatsJetStream, RedisStreams
from hongyan.modules.eventstream.options import EventStreamOptions
from hongyan.server.hooks import (
    PresenceOutbound,
    SessionBound,
    SessionClosed,
    StanzaInbound,
    anywhere,
)
from hongyan.server.module import Module

if TYPE_CHECKING:
    from collections.abc import Callable

    from hongyan.server.metrics import Reading
    from hongyan.server.module import ModuleAPI

BACKOFF_MIN = 0.1


class Outlet:
    """One broker: its queue, its sender's state and its numbers."""

    __slots__ = ("backend", "connected", "dropped", "inflight", "queue", "sent", "size", "wake")

    def __init__(self, backend: Backend, size: int) -> None:
        self.backend = backend
        self.queue: deque[Item] = deque()
        self.size = size
        self.wake = asyncio.Event()
        self.dropped = 0
        self.sent = 0
        self.connected = False
        #: events of the batch being sent
        self.inflight = 0

    @property
    def idle(self) -> bool:
        """Nothing queued, nothing being sent (or the broker is down: nothing to wait for)."""
        return not self.connected or (not self.queue and not self.inflight)


class EventStream(Module):
    name = "eventstream"

    def __init__(self, api: ModuleAPI) -> None:
        super().__init__(api)
        self.options = api.options(EventStreamOptions)
        self.outlets: tuple[Outlet, ...] = ()
        self._time = api.clock
        #: the message event the router's serialization is for (see :meth:`_sized`)
        self._last: Item | None = None

    async def start(self) -> None:
        o = self.options
        if not o.enabled:
            return
        backends: list[Backend] = []
        if o.redis_url:
            backends.append(RedisStreams(o.redis_url, o.redis_stream, o.redis_maxlen,
                                         o.timeout))
        if o.nats_url:
            backends.append(NatsJetStream(o.nats_url, o.nats_subject, o.timeout))
        if not backends:
            self.log.warning("eventstream is enabled but names no broker "
                             "(redis_url, nats_url): nothing is published")
            return
        self.outlets = tuple(Outlet(b, o.queue_size) for b in backends)
        kinds = set(o.events)
        api = self.api
        if "message" in kinds:
            api.on(StanzaInbound, self.on_message, -95)  # after the archive, before carbons
        if "presence" in kinds:
            api.on(PresenceOutbound, self.on_presence, 1000)
        if "login" in kinds:
            api.on(SessionBound, self.on_login, 1000)
        if "logout" in kinds:
            api.on(SessionClosed, self.on_logout, 1000)
        if "room" in kinds:
            api.on(RoomActivity, self.on_room)
        for outlet in self.outlets:
            api.spawn(self._send_loop(outlet))
        api.metric("counter", "eventstream_dropped", "events dropped: the broker's queue "
                   "was full, or a batch failed", self._per(lambda x: x.dropped), ("backend",))
        api.metric("counter", "eventstream_sent", "events the broker took",
                   self._per(lambda x: x.sent), ("backend",))
        api.metric("gauge", "eventstream_queue_depth", "events waiting for the broker",
                   self._per(lambda x: len(x.queue)), ("backend",))
        api.metric("gauge", "eventstream_connected", "1 while connected to the broker",
                   self._per(lambda x: 1 if x.connected else 0), ("backend",))

    def _per(self, read: Callable[[Outlet], float]) -> Callable[[], Reading]:
        """A metric's reading: one value per broker."""
        return lambda: {(x.backend.name,): float(read(x)) for x in self.outlets}

    # -- the hooks: append, nothing else ------------------------------------------------------
    def _put(self, item: Item) -> bool:
        queued = False
        for outlet in self.outlets:
            q = outlet.queue
            n = len(q)
            if n >= outlet.size:
                outlet.dropped += 1
                continue
            q.append(item)
            queued = True
            if not n:
                outlet.wake.set()
        return queued

    @anywhere  # it reads nothing of the recipient's: the sender's worker may run it
    def on_message(self, ev: StanzaInbound) -> None:
        el = ev.stanza
        if el.name != "message":
            return
        item: Item = ["message", self._time(), ev.sender, ev.to, el.attrs.get("type", "normal"),
                      0, el.find_text("body") if self.options.include_body else None]
        if not self._put(item):
            return
        self._last = item
        prev = ev.serialized
        if prev is None:
            ev.serialized = self._sized
        else:
            sized = self._sized

            def both(xml: str) -> None:
                prev(xml)
                sized(xml)
            ev.serialized = both

    def _sized(self, xml: str) -> None:
        """The message just queued, as delivered: the router calls this right after the
        hooks ran, before it routes anything else."""
        last = self._last
        if last is not None:
            last[5] = len(xml)
            self._last = None

    def on_presence(self, ev: PresenceOutbound) -> None:
        if ev.to is not None:
            return
        ptype = ev.stanza.attrs.get("type")
        if ptype is None or ptype == "unavailable":
            self._put(["presence", self._time(), ev.session.jid, ptype is None,
                       ev.stanza.find_text("show") or ""])

    def on_login(self, ev: SessionBound) -> None:
        self._put(["login", self._time(), ev.session.jid])

    def on_logout(self, ev: SessionClosed) -> None:
        if ev.session.jid is not None:
            self._put(["logout", self._time(), ev.session.jid, ev.was_available])

    def on_room(self, ev: RoomActivity) -> None:
        body = ev.body if self.options.include_body or ev.kind == "subject" else None
        self._put(["room", self._time(), ev.kind, ev.room, ev.nick, ev.jid, ev.size, body,
                   ev.codes])

    # -- the senders --------------------------------------------------------------------------
    async def _send_loop(self, outlet: Outlet) -> None:
        backend, q = outlet.backend, outlet.queue
        o = self.options
        delay = BACKOFF_MIN
        while True:
            if not outlet.connected:
                try:
                    # asyncio.timeout, not wait_for: Python 3.11's wait_for can lose a
                    # cancellation that arrives as the connect fails, and this loop would
                    # then run on and hold the module's stop forever
                    async with asyncio.timeout(o.timeout):
                        await backend.connect()
                except Exception as exc:
                    self.log.warning("%s: cannot connect (%s); again in %.1f s",
                                     backend.name, exc or type(exc).__name__, delay)
                    await backend.close()
                    await self.api.sleep(delay)
                    delay = min(delay * 2, o.backoff_max)
                    continue
                self.log.info("%s: connected", backend.name)
                outlet.connected = True
                delay = BACKOFF_MIN
            if not q:
                outlet.wake.clear()
                await outlet.wake.wait()
                continue
            n = min(len(q), o.batch_size)
            encode = backend.encode
            batch = [encode(q.popleft()) for _ in range(n)]
            outlet.inflight = n
            try:
                async with asyncio.timeout(o.timeout):
                    await backend.send(batch)
            except Exception as exc:
                outlet.inflight = 0
                outlet.dropped += n
                outlet.connected = False
                self.log.warning("%s: a batch of %d events failed (%s): reconnecting",
                                 backend.name, n, exc or type(exc).__name__)
                await backend.close()
                continue
            outlet.inflight = 0
            outlet.sent += n

    async def stop(self) -> None:
        # what is queued for a broker that is up goes out first (bounded: at most 2 s)
        loop = asyncio.get_running_loop()
        end = loop.time() + min(2.0, self.options.timeout)
        while not all(o.idle for o in self.outlets) and loop.time() < end:
            await asyncio.sleep(0.01)
        for outlet in self.outlets:
            await outlet.backend.close()


MODULE = EventStream
