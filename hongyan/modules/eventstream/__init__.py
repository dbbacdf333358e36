"""The event stream: selected events published to Redis Streams and NATS JetStream, for other
systems (analytics, audit, bridges). Off by default (``[eventstream] enabled``).

Off the routing path, and out of the routing process: a hook only appends a small list of
texts to a bounded queue (a full queue drops the event and counts it for every broker); once
per pass of the event loop the queue is written, as one :mod:`marshal` frame, to a child
process (:mod:`hongyan.modules.eventstream.sender`) that keeps a bounded queue per broker,
encodes the events and sends them in batches (a broker that is down, refuses a batch or takes
longer than ``timeout`` is closed, the batch counted as dropped, and reconnected after a
backoff doubling from 0.1 s to ``backoff_max``). The child reports its numbers back on its
stdout for /metrics. Routing never waits for a broker, nor for the child: while the pipe
holds more than :data:`PIPE_MAX` bytes, events stay in the queue.

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
import marshal
import sys
from typing import TYPE_CHECKING

from hongyan.modules.events import RoomActivity
from hongyan.modules.eventstream.backends import HEADER, Item, frame
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

#: bytes the pipe to the sender may hold before events wait in the queue instead
PIPE_MAX = 1 << 22


class Outlet:
    """One broker's numbers, as the sender last reported them, plus the events this process
    dropped (the queue was full) and those it holds for the sender."""

    __slots__ = ("connected", "depth", "dropped", "name", "sent")

    def __init__(self, name: str) -> None:
        self.name = name
        self.sent = 0
        self.dropped = 0
        self.connected = False
        self.depth = 0


class EventStream(Module):
    name = "eventstream"

    def __init__(self, api: ModuleAPI) -> None:
        super().__init__(api)
        self.options = api.options(EventStreamOptions)
        self.outlets: tuple[Outlet, ...] = ()
        self._time = api.clock
        #: the message event the router's serialization is for (see :meth:`_sized`)
        self._last: Item | None = None
        #: events for the sender, and those this process dropped (a full queue)
        self._queue: list[Item] = []
        self._dropped = 0
        self._scheduled = False
        self._proc: asyncio.subprocess.Process | None = None
        self._stdin: asyncio.StreamWriter | None = None
        self._reports: asyncio.Task[None] | None = None

    async def start(self) -> None:
        o = self.options
        if not o.enabled:
            return
        names = [n for n, url in (("redis", o.redis_url), ("nats", o.nats_url)) if url]
        if not names:
            self.log.warning("eventstream is enabled but names no broker "
                             "(redis_url, nats_url): nothing is published")
            return
        self.outlets = tuple(Outlet(n) for n in names)
        self._body = o.include_body
        self._size = o.queue_size
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hongyan.modules.eventstream.sender",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        assert proc.stdin is not None and proc.stdout is not None
        self._proc, self._stdin = proc, proc.stdin
        level = self.log.getEffectiveLevel()
        proc.stdin.write(frame({
            "redis_url": o.redis_url, "redis_stream": o.redis_stream,
            "redis_maxlen": o.redis_maxlen, "nats_url": o.nats_url,
            "nats_subject": o.nats_subject, "timeout": o.timeout,
            "queue_size": o.queue_size, "batch_size": o.batch_size,
            "backoff_max": o.backoff_max, "log_level": max(level, 10)}))
        # the sender's first report says it is ready (bounded: it only imports its clients)
        async with asyncio.timeout(30):
            await self._read_report(proc.stdout)
        self._reports = asyncio.get_running_loop().create_task(self._read_reports(proc.stdout))
        self._loop = asyncio.get_running_loop()
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
        api.metric("counter", "eventstream_dropped", "events dropped: the broker's queue "
                   "was full, or a batch failed",
                   self._per(lambda x: x.dropped + self._dropped), ("backend",))
        api.metric("counter", "eventstream_sent", "events the broker took",
                   self._per(lambda x: x.sent), ("backend",))
        api.metric("gauge", "eventstream_queue_depth", "events waiting for the broker",
                   self._per(lambda x: x.depth + len(self._queue)), ("backend",))
        api.metric("gauge", "eventstream_connected", "1 while connected to the broker",
                   self._per(lambda x: 1 if x.connected else 0), ("backend",))

    def _per(self, read: Callable[[Outlet], float]) -> Callable[[], Reading]:
        """A metric's reading: one value per broker."""
        return lambda: {(x.name,): float(read(x)) for x in self.outlets}

    async def _read_reports(self, out: asyncio.StreamReader) -> None:
        """The sender's numbers, as it writes them."""
        try:
            while True:
                await self._read_report(out)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        # the sender is gone (stopped, or died): nothing is connected any more; events now
        # stay queued here until the queue is full, then they are counted as dropped
        for x in self.outlets:
            x.connected = False
        if self._stdin is not None:
            self.log.error("eventstream: the sender process exited: events are not published")

    async def _read_report(self, out: asyncio.StreamReader) -> None:
        head = await out.readexactly(HEADER.size)
        status: dict[str, list[int]] = marshal.loads(
            await out.readexactly(HEADER.unpack(head)[0]))
        for x in self.outlets:
            got = status.get(x.name)
            if got is not None:
                x.sent, x.dropped, x.depth = got[0], got[1], got[3]
                x.connected = bool(got[2])

    # -- the hooks: append, nothing else ------------------------------------------------------
    def _put(self, item: Item) -> bool:
        q = self._queue
        if len(q) >= self._size:
            self._dropped += 1
            return False
        q.append(item)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._flush)
        return True

    def _flush(self) -> None:
        """Once per pass of the event loop: the queue to the sender, in one frame."""
        self._scheduled = False
        w = self._stdin
        if w is None or w.is_closing():
            return
        if w.transport.get_write_buffer_size() > PIPE_MAX:
            # the sender is behind: the events wait here (bounded by queue_size)
            self._scheduled = True
            self._loop.call_later(0.01, self._flush)
            return
        q, self._queue = self._queue, []
        if q:
            w.write(frame(q))

    @anywhere  # it reads nothing of the recipient's: the sender's worker may run it
    def on_message(self, ev: StanzaInbound) -> None:
        el = ev.stanza
        if el.name != "message":
            return
        item: Item = ["message", self._time(), ev.sender.text, ev.to.text,
                      el.attrs.get("type", "normal"), 0,
                      el.find_text("body") if self._body else None]
        # _put, inlined: this runs for every routed message
        q = self._queue
        if len(q) >= self._size:
            self._dropped += 1
            return
        q.append(item)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._flush)
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
            self._put(["presence", self._time(), str(ev.session.jid), ptype is None,
                       ev.stanza.find_text("show") or ""])

    def on_login(self, ev: SessionBound) -> None:
        self._put(["login", self._time(), str(ev.session.jid)])

    def on_logout(self, ev: SessionClosed) -> None:
        if ev.session.jid is not None:
            self._put(["logout", self._time(), str(ev.session.jid), ev.was_available])

    def on_room(self, ev: RoomActivity) -> None:
        body = ev.body if self.options.include_body or ev.kind == "subject" else None
        self._put(["room", self._time(), ev.kind, str(ev.room), ev.nick, str(ev.jid), ev.size,
                   body, list(ev.codes) if ev.codes else None])

    async def stop(self) -> None:
        # what is queued goes to the sender, which sends what it can (at most 2 s) and exits
        proc, w = self._proc, self._stdin
        if proc is None or w is None:
            return
        self._stdin = None
        q, self._queue = self._queue, []
        try:
            if q:
                w.write(frame(q))
            w.close()
            async with asyncio.timeout(min(2.0, self.options.timeout) + 5.0):
                await proc.wait()
                if self._reports is not None:
                    await self._reports
        except (TimeoutError, ConnectionError, OSError):
            self.log.warning("eventstream: the sender did not exit in time: killed")
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        if self._reports is not None:
            self._reports.cancel()


MODULE = EventStream
