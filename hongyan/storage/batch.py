"""Writes that the message path never waits for: rows queued in memory and written together.

:class:`BatchWriter` keeps rows in a list and hands them to its ``write`` coroutine in one call
(one ``executemany``, one transaction) ``interval`` seconds after the first row was queued, or at
once when ``max_rows`` are queued; :meth:`BatchWriter.flush` writes whatever is queued and
returns when it is committed (before a query, a deletion, shutdown). One write runs at a time,
in order. With ``max_queued``, a full queue makes :meth:`BatchWriter.add` return an awaitable
that the adder's sender waits for (as the user archive's ``mam.max_queued`` does).
:class:`IdClock` makes ids that are also times (microseconds since the epoch, strictly
increasing), as archives use them.

Used by room archives; it is the same rule user archives (``hongyan.modules.mam``) follow.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, Protocol, TypeVar

T = TypeVar("T")


class IdClock:
    """Integer ids: microseconds since the epoch, made strictly increasing
    (``max(now_us, last + 1)``), so that an id also says when."""

    __slots__ = ("_now", "last")

    def __init__(self, now: Callable[[], float], last: int = 0) -> None:
        self._now = now
        self.last = last

    def next(self) -> int:
        nid = int(self._now() * 1_000_000)
        if nid <= self.last:
            nid = self.last + 1
        self.last = nid
        return nid


class HandOver:
    """Whoever waits for a queue to be handed to its writer (senders slowed down while writes
    fall behind): one future for all of them, made when the queue is full and resolved when
    the queue is taken. Used by :class:`BatchWriter` and by the user archive's own queue."""

    __slots__ = ("_fut",)

    def __init__(self) -> None:
        self._fut: asyncio.Future[None] | None = None

    def wait(self) -> asyncio.Future[None]:
        fut = self._fut
        if fut is None:
            fut = self._fut = asyncio.get_running_loop().create_future()
        return fut

    def release(self) -> None:
        fut, self._fut = self._fut, None
        if fut is not None and not fut.done():
            fut.set_result(None)


class Cancellable(Protocol):
    """A pending timer: asyncio's handle or the module API's :class:`Timer`."""

    def cancel(self) -> None: ...


class BatchWriter(Generic[T]):
    def __init__(self, write: Callable[[list[T]], Awaitable[None]], interval: float,
                 max_rows: int, call_later: Callable[[float, Callable[[], None]], Cancellable],
                 spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[Any]],
                 max_queued: int | None = None) -> None:
        self._write = write
        self._interval = interval
        self._max_rows = max_rows
        self._max_queued = max_queued
        self._call_later = call_later
        self._spawn = spawn
        self._queue: list[T] = []
        self._timer: Cancellable | None = None
        self._lock = asyncio.Lock()
        self._flushing: asyncio.Task[Any] | None = None
        self._handover = HandOver()

    def __len__(self) -> int:
        """Rows queued and not yet handed to the database."""
        return len(self._queue)

    def add(self, row: T) -> Awaitable[None] | None:
        """Queue a row (no I/O, no task unless a write is due). With ``max_queued`` rows
        queued (writes fall behind), it returns what the caller should wait for before adding
        more: the queue being handed to ``write``, so memory stays bounded. Never raises."""
        queue = self._queue
        queue.append(row)
        if len(queue) >= self._max_rows:
            self._start()
            if self._max_queued is not None and len(queue) >= self._max_queued:
                return self._handover.wait()
        elif self._timer is None:
            self._timer = self._call_later(self._interval, self._start)
        return None

    def _start(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:  # (the size limit came first: the timer has nothing to do)
            timer.cancel()
        if self._flushing is None or self._flushing.done():
            self._flushing = self._spawn(self.flush())

    async def flush(self) -> None:
        """Write every queued row; returns when they are committed."""
        async with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            while self._queue:
                rows, self._queue = self._queue, []
                self._handover.release()
                await self._write(rows)
