"""A node clock that a test moves forward instead of sleeping through a timeout.

:class:`SteppedClock` is the server's :class:`~hongyan.server.clock.Clock` plus an offset:
``await clock.advance(s)`` adds ``s`` to what the node reads as the time and fires at once
every timer and sleep that became due, in deadline order, on the running loop (as the loop
would have). Real time still runs too, so sockets and everything else behave as usual.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Any

from hongyan.server.clock import Clock


class _Timer:
    __slots__ = ("_args", "_cancelled", "_done", "_fn", "_handle", "due")

    def __init__(self, due: float, fn: Callable[..., object], args: tuple[Any, ...],
                 handle: asyncio.TimerHandle) -> None:
        self.due = due
        self._fn = fn
        self._args = args
        self._handle = handle
        self._done = False
        self._cancelled = False

    @property
    def done(self) -> bool:
        return self._done

    def fire(self) -> None:
        if not self._done:
            self._done = True
            self._handle.cancel()
            self._fn(*self._args)

    def cancel(self) -> None:
        if not self._done:
            self._done = self._cancelled = True
            self._handle.cancel()

    def cancelled(self) -> bool:
        return self._cancelled


class SteppedClock(Clock):
    __slots__ = ("_heap", "_limit", "_seq", "offset")

    def __init__(self) -> None:
        super().__init__()
        self.offset = 0.0
        self._heap: list[tuple[float, int, _Timer]] = []
        self._seq = itertools.count()
        self._limit = 1024  # the heap is pruned of fired and cancelled timers past this
        self.time = lambda: time.time() + self.offset
        self.monotonic = lambda: time.monotonic() + self.offset

    def call_later(self, delay: float, fn: Callable[..., object], *args: Any) -> _Timer:
        loop = asyncio.get_running_loop()
        timer: _Timer

        def fire() -> None:
            timer.fire()

        timer = _Timer(loop.time() + self.offset + delay, fn, args,
                       loop.call_later(delay, fire))
        heap = self._heap
        if len(heap) >= self._limit:
            heap[:] = [e for e in heap if not e[2].done]
            heapq.heapify(heap)
            self._limit = max(1024, 2 * len(heap))
        heapq.heappush(heap, (timer.due, next(self._seq), timer))
        return timer

    async def sleep(self, delay: float) -> None:
        fut = asyncio.get_running_loop().create_future()
        self.call_later(delay, lambda: fut.done() or fut.set_result(None))
        await fut

    async def advance(self, seconds: float) -> None:
        """Move the node's time forward by ``seconds`` and let what became due run."""
        loop = asyncio.get_running_loop()
        self.offset += seconds
        now = loop.time() + self.offset
        while self._heap and self._heap[0][0] <= now:
            _, _, timer = heapq.heappop(self._heap)
            timer.fire()
            await asyncio.sleep(0)  # what it started (a task, a write) runs before the next
        for _ in range(3):
            await asyncio.sleep(0)
