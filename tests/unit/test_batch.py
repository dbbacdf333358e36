"""The batched writer behind room archives: rows written together, in order, once."""

from __future__ import annotations

import asyncio
from typing import Any

from hongyan.storage.batch import BatchWriter, IdClock


def test_ids_increase_strictly_and_say_when() -> None:
    t = [10.0]
    clock = IdClock(lambda: t[0])
    a, b = clock.next(), clock.next()
    assert a == 10_000_000 and b == a + 1
    t[0] = 5.0  # the clock stepping back does not make ids go back
    assert clock.next() == b + 1
    t[0] = 20.0
    assert clock.next() == 20_000_000


async def test_rows_are_written_by_the_timer_the_size_limit_or_a_flush() -> None:
    written: list[list[int]] = []
    tasks: list[asyncio.Task[Any]] = []

    async def write(rows: list[int]) -> None:
        await asyncio.sleep(0)
        written.append(rows)

    def spawn(coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        tasks.append(task)
        return task

    w: BatchWriter[int] = BatchWriter(write, 0.01, 3, asyncio.get_running_loop().call_later,
                                      spawn)
    w.add(1)
    w.add(2)
    assert written == []  # nothing on the caller's path
    await asyncio.sleep(0.05)
    assert written == [[1, 2]]  # the timer
    w.add(3)
    w.add(4)
    w.add(5)  # the size limit starts a write at once
    await asyncio.gather(*tasks)
    assert written == [[1, 2], [3, 4, 5]]
    w.add(6)
    await w.flush()  # a flush writes what is queued and waits for it
    assert written == [[1, 2], [3, 4, 5], [6]]
    await w.flush()
    assert written[-1] == [6]


async def test_the_size_limit_disarms_the_timer() -> None:
    """A write started by the size limit leaves no timer armed (it would start a needless
    write later, and a module would hold it until then)."""
    loop = asyncio.get_running_loop()
    written: list[list[int]] = []
    tasks: list[asyncio.Task[Any]] = []
    handles: list[asyncio.TimerHandle] = []

    async def write(rows: list[int]) -> None:
        written.append(rows)

    def call_later(delay: float, fn: Any) -> asyncio.TimerHandle:
        handles.append(loop.call_later(delay, fn))
        return handles[-1]

    def spawn(coro: Any) -> asyncio.Task[Any]:
        tasks.append(loop.create_task(coro))
        return tasks[-1]

    w: BatchWriter[int] = BatchWriter(write, 3600.0, 2, call_later, spawn)
    w.add(1)  # arms the timer
    w.add(2)  # the size limit: written at once
    await asyncio.gather(*tasks)
    assert written == [[1, 2]]
    assert len(handles) == 1 and handles[0].cancelled()
