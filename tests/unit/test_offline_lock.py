"""The offline module's per-user lock: never two holders, even when a lock is released to a
waiter and a third task arrives before the waiter runs."""

from __future__ import annotations

import asyncio

from hongyan.modules.offline import Offline


async def test_user_lock_is_not_dropped_while_promised_to_a_waiter() -> None:
    off = Offline.__new__(Offline)
    off._locks = {}
    holders = 0
    most = 0

    async def task(release: asyncio.Event) -> None:
        nonlocal holders, most
        lock = off._enter("juliet")
        try:
            async with lock:
                holders += 1
                most = max(most, holders)
                await release.wait()
                holders -= 1
        finally:
            off._leave("juliet")

    ea, eb, ec = asyncio.Event(), asyncio.Event(), asyncio.Event()
    ta = asyncio.create_task(task(ea))
    await asyncio.sleep(0)  # a holds the lock
    tb = asyncio.create_task(task(eb))
    await asyncio.sleep(0)  # b waits for it
    ea.set()
    for _ in range(3):  # a releases: the lock is promised to b, which has not run yet
        await asyncio.sleep(0)
    tc = asyncio.create_task(task(ec))
    await asyncio.sleep(0)
    eb.set()
    ec.set()
    await asyncio.gather(ta, tb, tc)
    assert most == 1
    assert off._locks == {}
