"""The event stream's sender: a child process of each server process that encodes the events
and sends them to the brokers, so that the routing process pays only for queueing them and
writing them to a pipe in batches.

``python -m hongyan.modules.eventstream.sender``: on stdin, frames of a 4-byte big-endian
length and a :mod:`marshal` payload; the first is the settings (a dict), each next one a
list of items (see :data:`~hongyan.modules.eventstream.backends.Item`). On stdout, frames of
the same shape, each a dict ``backend name -> [sent, dropped, connected, queue depth]``,
written when those numbers changed (at most every :data:`STATUS_EVERY` seconds, and once
more before it exits). End of stdin: what is queued for a broker that is up goes out
(bounded: at most 2 s), then it exits.

Per broker: a bounded queue (a full queue drops the event and counts it) and a sender task
that sends up to ``batch_size`` events in one round trip. A broker that is down, refuses a
batch or takes longer than ``timeout`` is closed, the batch counted as dropped, and
reconnected after a backoff doubling from 0.1 s to ``backoff_max``.
"""

from __future__ import annotations

import asyncio
import logging
import marshal
import sys
from collections import deque
from typing import Any

from hongyan.modules.eventstream.backends import (
    HEADER,
    Backend,
    Item,
    NatsJetStream,
    RedisStreams,
    frame,
)

BACKOFF_MIN = 0.1
STATUS_EVERY = 0.02
log = logging.getLogger("hongyan.modules.eventstream")


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

    def put(self, items: list[Item]) -> None:
        q = self.queue
        room = self.size - len(q)
        if room <= 0:
            self.dropped += len(items)
            return
        if len(items) > room:
            self.dropped += len(items) - room
            items = items[:room]
        was_empty = not q
        q.extend(items)
        if was_empty:
            self.wake.set()


class Sender:
    def __init__(self, settings: dict[str, Any]) -> None:
        self.s = settings
        backends: list[Backend] = []
        if settings["redis_url"]:
            backends.append(RedisStreams(settings["redis_url"], settings["redis_stream"],
                                         settings["redis_maxlen"], settings["timeout"]))
        if settings["nats_url"]:
            backends.append(NatsJetStream(settings["nats_url"], settings["nats_subject"],
                                          settings["timeout"]))
        self.outlets = [Outlet(b, settings["queue_size"]) for b in backends]

    def status(self) -> dict[str, list[int]]:
        return {o.backend.name: [o.sent, o.dropped, 1 if o.connected else 0,
                                 len(o.queue) + o.inflight] for o in self.outlets}

    async def send_loop(self, outlet: Outlet) -> None:
        backend, q, s = outlet.backend, outlet.queue, self.s
        delay = BACKOFF_MIN
        while True:
            if not outlet.connected:
                try:
                    # asyncio.timeout, not wait_for: Python 3.11's wait_for can lose a
                    # cancellation that arrives as the connect fails
                    async with asyncio.timeout(s["timeout"]):
                        await backend.connect()
                except Exception as exc:
                    log.warning("%s: cannot connect (%s); again in %.1f s",
                                backend.name, exc or type(exc).__name__, delay)
                    await backend.close()
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, s["backoff_max"])
                    continue
                log.info("%s: connected", backend.name)
                outlet.connected = True
                delay = BACKOFF_MIN
            if not q:
                outlet.wake.clear()
                await outlet.wake.wait()
                continue
            n = min(len(q), s["batch_size"])
            encode = backend.encode
            batch = [encode(q.popleft()) for _ in range(n)]
            outlet.inflight = n
            try:
                async with asyncio.timeout(s["timeout"]):
                    await backend.send(batch)
            except Exception as exc:
                outlet.inflight = 0
                outlet.dropped += n
                outlet.connected = False
                log.warning("%s: a batch of %d events failed (%s): reconnecting",
                            backend.name, n, exc or type(exc).__name__)
                await backend.close()
                continue
            outlet.inflight = 0
            outlet.sent += n

    async def report(self, out: asyncio.StreamWriter) -> None:
        last: dict[str, list[int]] = {}
        while True:
            now = self.status()
            if now != last:
                out.write(frame(now))
                last = now
            await asyncio.sleep(STATUS_EVERY)


async def main() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    wt, wp = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, sys.stdout)
    out = asyncio.StreamWriter(wt, wp, None, loop)
    head = await reader.readexactly(HEADER.size)
    settings = marshal.loads(await reader.readexactly(HEADER.unpack(head)[0]))
    logging.basicConfig(level=settings.get("log_level", "WARNING"), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s (sender): %(message)s")
    sender = Sender(settings)
    # the client libraries now, not at the first connect: importing them holds this loop
    if settings["redis_url"]:
        import redis.asyncio.connection  # noqa: F401
    if settings["nats_url"]:
        import nats  # noqa: F401
    out.write(frame(sender.status()))  # ready
    tasks = [loop.create_task(sender.send_loop(o)) for o in sender.outlets]
    tasks.append(loop.create_task(sender.report(out)))
    outlets = sender.outlets
    try:
        while True:
            try:
                head = await reader.readexactly(HEADER.size)
                items = marshal.loads(await reader.readexactly(HEADER.unpack(head)[0]))
            except asyncio.IncompleteReadError:
                break
            for o in outlets:
                o.put(items)
        end = loop.time() + min(2.0, settings["timeout"])
        while not all(o.idle for o in outlets) and loop.time() < end:
            await asyncio.sleep(0.01)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for o in outlets:
            await o.backend.close()
        out.write(frame(sender.status()))
        try:
            await out.drain()
            out.close()
        except (ConnectionError, OSError):
            pass


if __name__ == "__main__":
    asyncio.run(main())
