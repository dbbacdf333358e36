"""``kill -9`` under load with stream management (issue 25 item 10), small and bounded:
``bench/killtest.py``'s run, through the real server process and raw XMPP clients. Senders
with XEP-0198 send numbered messages to recipients half online, half offline (archive on);
every process of the server gets SIGKILL at a random moment; after a restart each recipient
collects its offline messages and its archive. No message the server had acknowledged
(``<a h/>``) may be missing. With two workers, before acks waited for the other worker, a run
lost hundreds of them (docs/hardening.md)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bench.killtest import one_run


@pytest.mark.parametrize("workers", [1, 2])
async def test_no_acknowledged_message_lost(tmp_path: Path, storage_url: str,
                                            workers: int) -> None:
    runs = 2 if workers > 1 else 1
    for run in range(runs):
        r = await asyncio.wait_for(one_run(
            storage_url, tmp_path / f"run{run}", run=run, senders=6, recipients=6, window=20,
            every=5, kill_after=0.8, workers=workers, archive=True, seed=run), 150)
        assert r.acked >= 20, r.as_dict()  # the load ran and was acknowledged
        assert r.live > 0 and r.offline > 0, r.as_dict()  # both kinds of recipient got some
        assert r.lost == 0, r.as_dict()
