"""Bounded waits, the two kinds a test over real sockets needs: for a server-side condition
no client can see (:func:`until`), and for an absence (:func:`quiet`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

TIMEOUT = 10.0


async def until(pred: Callable[[], bool], timeout: float = TIMEOUT, step: float = 0.01) -> None:
    """Wait until ``pred()`` holds; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() >= end:
            raise AssertionError(f"condition not reached within {timeout} s")
        await asyncio.sleep(step)


async def quiet(arrival: Awaitable[object], wait: float = 0.3, what: str = "arrival") -> None:
    """Nothing arrives within ``wait`` seconds. Only meaningful after an event that would
    have come first, so that a short wait is enough."""
    try:
        got = await asyncio.wait_for(arrival, wait)
    except TimeoutError:
        return
    raise AssertionError(f"unexpected {what}: {got!r}")
