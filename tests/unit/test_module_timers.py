"""Registrations through the module API. Timers: held while pending, let go when they fire or are
cancelled, cancelled when the module stops (MAM and room archives arm one per flush).
Hook sets and other workers' notices: released when the module stops, with no code in it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import cast

from hongyan.cluster.workers import Workers
from hongyan.server.clock import Clock
from hongyan.server.hooks import HookBus, SessionClosed
from hongyan.server.module import ModuleAPI
from hongyan.server.node import Node


async def test_a_hundred_thousand_timers_leave_nothing_behind() -> None:
    # call_later touches only the node's clock
    api = ModuleAPI(cast(Node, SimpleNamespace(clock=Clock())), "timers")
    fired = 0

    def fire() -> None:
        nonlocal fired
        fired += 1

    undo_before = len(api._undo)
    for i in range(100_000):
        timer = api.call_later(0, fire)
        if i % 2:
            timer.cancel()  # what a flush by size does to the timer it armed
            assert timer.cancelled()
        if i % 1000 == 999:
            await asyncio.sleep(0)  # steady traffic: the pending ones fire as it goes
        assert api.pending_timers <= 1000
    await asyncio.sleep(0)
    assert fired == 50_000
    assert api.pending_timers == 0
    assert len(api._undo) == undo_before  # nothing accumulates for release to undo


async def test_stopping_the_module_cancels_what_is_still_pending() -> None:
    api = ModuleAPI(cast(Node, SimpleNamespace(clock=Clock())), "timers")
    fired: list[int] = []
    for i in range(10):
        api.call_later(0.01, lambda i=i: fired.append(i))
    assert api.pending_timers == 10
    await api.release()
    assert api.pending_timers == 0
    await asyncio.sleep(0.03)
    assert fired == []


async def test_stopping_the_module_removes_its_hook_sets_and_notice_handlers(
        tmp_path: Path) -> None:
    hooks = HookBus()
    workers = Workers(cast(Node, None), 0, 2, str(tmp_path))
    node = SimpleNamespace(hooks=hooks, cluster=workers, clock=Clock())
    api = ModuleAPI(cast(Node, node), "seams")
    seen: list[bytes] = []
    enforcement = api.hook_set((SessionClosed, lambda ev: None, 0))
    enforcement.set(True)
    api.on_notice("seams-topic", lambda body: seen.append(body))
    assert hooks.has(SessionClosed)
    workers.notice("seams-topic", b"one")
    assert seen == [b"one"]
    await api.release()
    assert not hooks.has(SessionClosed) and not enforcement.active
    assert workers.notice("seams-topic", b"two") is None  # no handler left
    assert seen == [b"one"]


async def test_notice_handlers_asked_for_before_the_cluster_register_when_it_comes(
        tmp_path: Path) -> None:
    node = SimpleNamespace(hooks=HookBus(), cluster=None, clock=Clock())
    api = ModuleAPI(cast(Node, node), "seams")
    seen: list[bytes] = []
    api.on_notice("early", lambda body: seen.append(body))  # in start(): no cluster yet
    assert api.is_home("anyone") and api.home("anyone") is None
    workers = Workers(cast(Node, None), 0, 2, str(tmp_path))
    node.cluster = workers
    api.cluster_ready(workers)
    workers.notice("early", b"x")
    assert seen == [b"x"]
    assert api.home(next(u for u in ("a", "b", "c", "d") if workers.home(u) == 1)) == 1
    await api.release()
    assert workers.notice("early", b"y") is None and seen == [b"x"]
