"""bench/preauth_load.py - a real login's latency while the server holds hostile pre-auth load.

Issue 25 item 8: ``--probes`` logins (stream, SASL PLAIN, bind, presence, roster: the login of
``bench/idle.py``) are timed one after another on the idle server; then ``--idle`` sockets
connect, send a stream header and stay silent (unauthenticated), and a slowloris client sends
a stream header one byte every ``--drip`` seconds; the same logins are timed again. Prints
one JSON object with the medians and the ratios (with load / without).

    python -m bench.preauth_load --port 35222 --user user1 --password pass --idle 5000

The server must let the load in for the figure to mean anything: raise ``c2s.preauth_per_ip``
and ``c2s.preauth_total`` above ``--idle`` (all sockets come from 127.0.0.1), allow plaintext
auth on loopback, and an ``auth_timeout`` longer than the run (docs/performance.md). With the
default caps, most of the load is refused: ``--probe-source 127.0.0.2`` times a client from
another address (from 127.0.0.1 it is refused too, as it should be).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import time
from typing import Any, cast

from bench.idle import login

HEADER = (b"<?xml version='1.0'?><stream:stream to='localhost' version='1.0' "
          b"xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>")


class Idle(asyncio.Protocol):
    """A socket that sends a stream header and then nothing; notes a stream error."""

    def __init__(self) -> None:
        self.tr: asyncio.BaseTransport | None = None
        self.refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.tr = transport
        cast(asyncio.Transport, transport).write(HEADER)

    def data_received(self, data: bytes) -> None:
        self.refused = self.refused or b"policy-violation" in data


async def probes(args: argparse.Namespace) -> list[float]:
    out = []
    for _ in range(args.probes):
        t0 = time.perf_counter()
        p = await login(args.host, args.port, args.probe_source, args.user, args.password,
                        "localhost", 10.0)
        out.append(time.perf_counter() - t0)
        if p.tr is not None:
            p.tr.close()
    return out


async def slowloris(args: argparse.Namespace, stop: asyncio.Event) -> None:
    _, w = await asyncio.open_connection(args.host, args.port)
    i = 0
    while not stop.is_set() and i < len(HEADER):
        w.write(HEADER[i:i + 1])
        i += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), args.drip)
    w.close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    await probes(args)  # warm up (the PLAIN cache, the database)
    idle_ms = [t * 1000 for t in await probes(args)]
    loop = asyncio.get_running_loop()
    idle = [(await loop.create_connection(Idle, args.host, args.port))[1]
            for _ in range(args.idle)]
    await asyncio.sleep(1.0)  # let the server answer every header
    stop = asyncio.Event()
    loris = asyncio.create_task(slowloris(args, stop))
    await asyncio.sleep(args.drip * 2)
    refused = sum(1 for p in idle if p.refused)
    loaded_ms = [t * 1000 for t in await probes(args)]
    stop.set()
    await loris
    for p in idle:
        if p.tr is not None:
            p.tr.close()
    mi, ml = statistics.median(idle_ms), statistics.median(loaded_ms)
    return {"probes": args.probes, "idle_sockets": args.idle, "refused": refused,
            "login_ms_median_idle": round(mi, 2), "login_ms_median_loaded": round(ml, 2),
            "login_ms_max_idle": round(max(idle_ms), 2),
            "login_ms_max_loaded": round(max(loaded_ms), 2),
            "ratio_median": round(ml / mi, 2), "ratio_max": round(max(loaded_ms) /
                                                                  max(idle_ms), 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", default="user1")
    ap.add_argument("--password", default="pass")
    ap.add_argument("--idle", type=int, default=5000)
    ap.add_argument("--probes", type=int, default=20)
    ap.add_argument("--probe-source", default="127.0.0.1",
                    help="the real client's address (the load comes from 127.0.0.1)")
    ap.add_argument("--drip", type=float, default=3.0, help="seconds between slowloris bytes")
    args = ap.parse_args(argv)
    print(json.dumps(asyncio.run(run(args))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
