"""Time as the node sees it: wall time, monotonic time and timers, from one object.

Everything in the server that waits (a negotiation deadline, XEP-0198's resumption timeout,
a module's timers, a periodic clean-up) asks the node's :class:`Clock`, never the running loop
or :mod:`time` directly, so that a test can move time forward instead of sleeping through it
(``tests/clock.py``). The default is the system's clocks and the running loop's timers, at no
cost on the hot path: :attr:`Clock.time` *is* :func:`time.time`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Protocol


class Handle(Protocol):
    """What :meth:`Clock.call_later` returns (an :class:`asyncio.TimerHandle` by default)."""

    def cancel(self) -> None: ...
    def cancelled(self) -> bool: ...


class Clock:
    """The system's clocks and the running loop's timers."""

    __slots__ = ("monotonic", "time")

    def __init__(self) -> None:
        #: seconds since the epoch (timestamps, archive ids)
        self.time: Callable[[], float] = time.time
        #: seconds for intervals (deadlines, counters that forget)
        self.monotonic: Callable[[], float] = time.monotonic

    def call_later(self, delay: float, fn: Callable[..., object], *args: Any) -> Handle:
        return asyncio.get_running_loop().call_later(delay, fn, *args)

    async def sleep(self, delay: float) -> None:
        await asyncio.sleep(delay)
