"""Micro-benchmarks of Hongyan's hot paths: parse, serialize, route+deliver, store.

Each benchmark runs a fixed amount of work and reports operations per second and microseconds
per operation. ``--smoke`` runs a tiny amount of each, only to prove they run (CI does this; no
timing is asserted anywhere). Typical use:

    .venv/bin/python -m bench.micro            # full run, a few seconds each
    .venv/bin/python -m bench.micro --smoke    # what CI runs
    .venv/bin/python -m bench.micro --only parse,route --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from hongyan.cli.main import tune_gc
from hongyan.config.loader import load_config
from hongyan.server.c2s import C2SSession
from hongyan.server.node import Node
from hongyan.xmpp.element import Element
from hongyan.xmpp.jid import JID
from hongyan.xmpp.parser import StreamParser

HEADER = (b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
          b"xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>")
BODY = "x" * 64


def message_bytes(i: int, to: str = "user2@localhost/r") -> bytes:
    return (f"<message to='{to}' type='chat' id='m{i}'><body>{BODY}</body></message>").encode()


def bench_parse(n: int) -> float:
    """Parse n 64-byte-body chat messages fed in chunks of 10 (as the load generator sends)."""
    p = StreamParser()
    p.feed(HEADER)
    chunk = b"".join(message_bytes(i) for i in range(10))
    t0 = time.perf_counter()
    for _ in range(n // 10):
        p.feed(chunk)
    return time.perf_counter() - t0


def bench_serialize(n: int) -> float:
    el = Element("message", attrs={"to": "user2@localhost/r", "type": "chat", "id": "m1",
                                   "from": "user1@localhost/r"})
    el.add("body", text=BODY)
    t0 = time.perf_counter()
    for _ in range(n):
        el.to_bytes()
    return time.perf_counter() - t0


def bench_jid(n: int) -> float:
    texts = [f"user{i % 100}@localhost/r" for i in range(n)]
    t0 = time.perf_counter()
    for t in texts:
        JID.parse(t)
    return time.perf_counter() - t0


class SinkTransport:
    """A transport that counts bytes instead of writing them to a socket."""

    secure = True
    peer_host = "127.0.0.1"
    can_start_tls = False

    def __init__(self) -> None:
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    async def start_tls(self) -> None:
        pass

    def channel_binding(self) -> tuple[str, bytes] | None:
        return None


async def _node(tmp: Path, extra: str = "") -> Node:
    """A started node on an SQLite file in ``tmp``; ``extra`` is appended to its config."""
    cfg_path = tmp / "bench.toml"
    cfg_path.write_text(f"[server]\ndata_dir = '{tmp}'\nlog_level = 'error'\n"
                        f"[storage]\nurl = 'sqlite:///{tmp}/bench.db'\n" + extra)
    node = Node(load_config(cfg_path))
    await node.start(listen_c2s=False)
    tune_gc()  # the collector settings `hongyan serve` runs with
    return node


async def _accounts(node: Node, *users: str) -> None:
    """Real accounts, so that per-account work on the path (the archive's rows) is measured."""
    for user in users:
        await node.accounts.create(user, "bench", node.clock.time())


def _bound_session(node: Node, user: str) -> tuple[C2SSession, SinkTransport]:
    t = SinkTransport()
    s = C2SSession(node, t)
    s.jid = JID(user, node.domain, "r")
    s.username = user
    s.state = 3  # BOUND
    s.available = True
    s.stream.receive(HEADER)
    s.stream.established()  # what a bind does
    node.sessions.add(s)
    return s, t


async def bench_route(n: int) -> float:
    """Bytes in → parse → stamp → route → serialize → bytes out, for a 1:1 chat message."""
    with tempfile.TemporaryDirectory() as d:
        node = await _node(Path(d))
        try:
            await _accounts(node, "user1", "user2")
            sender, _ = _bound_session(node, "user1")
            _, sink = _bound_session(node, "user2")
            chunk = b"".join(message_bytes(i) for i in range(10))
            t0 = time.perf_counter()
            for _ in range(n // 10):
                sender.data_received(chunk)
                # One pass of the event loop per read, as a server gets between socket reads:
                # batched work (the archive's writes) runs as it would in production.
                await asyncio.sleep(0)
            elapsed = time.perf_counter() - t0
            assert sink.written > 0
            return elapsed
        finally:
            await node.stop()


async def _route_with(n: int, extra: str) -> float:
    """``route`` on a node whose config ends with ``extra``; the time includes draining the
    event stream's queue (bounded) until its sender, a child process (not counted by
    callgrind, which does not follow an exec), reports every event sent or dropped, so that
    what the routing process does per message is counted."""
    with tempfile.TemporaryDirectory() as d:
        node = await _node(Path(d), extra)
        try:
            await _accounts(node, "user1", "user2")
            sender, _ = _bound_session(node, "user1")
            _, sink = _bound_session(node, "user2")
            chunk = b"".join(message_bytes(i) for i in range(10))
            es: Any = node.modules.get("eventstream")
            outlets = es.outlets if es is not None else ()
            for _ in range(200):  # connected before the clock starts
                if all(o.connected for o in outlets):
                    break
                await asyncio.sleep(0.01)
            t0 = time.perf_counter()
            for _ in range(n // 10):
                sender.data_received(chunk)
                await asyncio.sleep(0)
            for _ in range(10000):
                if all(o.sent + o.dropped + es._dropped >= n for o in outlets):
                    break
                await asyncio.sleep(0.001)
            elapsed = time.perf_counter() - t0
            assert sink.written > 0
            for o in outlets:
                print(f"{o.name}: sent {o.sent}, dropped {o.dropped + es._dropped}",
                      file=sys.stderr)
            return elapsed
        finally:
            await node.stop()


def bench_route_redis(n: int) -> Awaitable[float]:
    """``route`` with the event stream publishing message events to Redis."""
    url = os.environ.get("HY_EVENTS_REDIS", "redis://127.0.0.1:6379/15")
    return _route_with(n, f"[eventstream]\nenabled = true\nredis_url = '{url}'\n"
                          "redis_stream = 'hongyan:bench'\nredis_maxlen = 10000\n")


def bench_route_nats(n: int) -> Awaitable[float]:
    """``route`` with the event stream publishing message events to NATS JetStream (the
    stream HONGYAN_BENCH binding hongyanbench.>, which bench/compare.sh events makes)."""
    url = os.environ.get("HY_EVENTS_NATS", "nats://127.0.0.1:4222")
    return _route_with(n, f"[eventstream]\nenabled = true\nnats_url = '{url}'\n"
                          "nats_subject = 'hongyanbench'\n")


async def bench_route_sm(n: int) -> float:
    """``route`` with XEP-0198 enabled on both sessions: the receiver's queue, <r/> every 5
    stanzas, and an ack from the receiver for every chunk of 10 (as a client would send)."""
    from hongyan.modules.sm import StreamManagement
    from hongyan.modules.sm.state import SMState
    from hongyan.xmpp import ns as NS

    with tempfile.TemporaryDirectory() as d:
        node = await _node(Path(d))
        try:
            await _accounts(node, "user1", "user2")
            sender, _ = _bound_session(node, "user1")
            receiver, sink = _bound_session(node, "user2")
            sm = node.modules["sm"]
            assert isinstance(sm, StreamManagement)
            for s in (sender, receiver):
                sm.on_enable(s, Element("enable", NS.SM, {"resume": "true"}))
            state = receiver.sm
            assert isinstance(state, SMState)
            chunk = b"".join(message_bytes(i) for i in range(10))
            t0 = time.perf_counter()
            for _ in range(n // 10):
                sender.data_received(chunk)
                state.ack(state.send_count)
            elapsed = time.perf_counter() - t0
            assert sink.written > 0
            return elapsed
        finally:
            await node.stop()


async def bench_offline_store(n: int) -> float:
    """Store n messages for an offline user (the MessageUndeliverable path)."""
    with tempfile.TemporaryDirectory() as d:
        node = await _node(Path(d))
        try:
            await node.accounts.create("user2", "pass", time.time())
            sender, _ = _bound_session(node, "user1")
            t0 = time.perf_counter()
            for i in range(n):
                pending = node.router.route_from_session(
                    _msg(i, "user2@localhost"), sender, JID("user2", "localhost"))
                if pending is not None:
                    await pending
            return time.perf_counter() - t0
        finally:
            await node.stop()


MUC_OCCUPANTS = 100


async def bench_muc(n: int) -> float:
    """Bytes in → parse → route to the room → fan-out to 100 occupants → bytes out, for one
    groupchat message (divide by 100 for the cost of one delivery)."""
    with tempfile.TemporaryDirectory() as d:
        node = await _node(Path(d))
        try:
            room = "bench@conference.localhost"
            sessions = [_bound_session(node, f"user{i}") for i in range(MUC_OCCUPANTS)]
            owner = sessions[0][0]
            owner.data_received(f"<presence to='{room}/n0'><x xmlns='{MUC_NS}'/></presence>"
                                .encode())
            await _settle(node, 1)
            owner.data_received(f"<iq type='set' to='{room}' id='c'><query xmlns='{MUC_NS}#owner'>"
                                "<x xmlns='jabber:x:data' type='submit'/></query></iq>".encode())
            for i, (s, _) in enumerate(sessions[1:], 1):
                s.data_received(f"<presence to='{room}/n{i}'><x xmlns='{MUC_NS}'>"
                                "<history maxstanzas='0'/></x></presence>".encode())
            await _settle(node, MUC_OCCUPANTS)
            sinks = [t for _, t in sessions]
            before = sum(t.written for t in sinks)
            chunk = b"".join(f"<message to='{room}' type='groupchat' id='g{i}'><body>{BODY}"
                             "</body></message>".encode() for i in range(10))
            t0 = time.perf_counter()
            for _ in range(n // 10):
                owner.data_received(chunk)
            elapsed = time.perf_counter() - t0
            assert sum(t.written for t in sinks) > before
            return elapsed
        finally:
            await node.stop()


MUC_NS = "http://jabber.org/protocol/muc"


async def _settle(node: Node, occupants: int) -> None:
    """Let the joins (handled in the sessions' tasks) finish."""
    from hongyan.modules.muc import Muc

    muc = node.modules["muc"]
    assert isinstance(muc, Muc)
    for _ in range(1000):
        room = muc.rooms.get("bench")
        if room is not None and len(room.occupants) >= occupants:
            return
        await asyncio.sleep(0.001)
    raise RuntimeError("the occupants did not join")


def _msg(i: int, to: str) -> Element:
    el = Element("message", attrs={"to": to, "type": "chat", "id": f"m{i}",
                                   "from": "user1@localhost/r"})
    el.add("body", text=BODY)
    return el


BENCHES: dict[str, tuple[Callable[[int], float | Awaitable[float]], int, str]] = {
    "parse": (bench_parse, 200_000, "stanza parsed"),
    "serialize": (bench_serialize, 200_000, "stanza serialized"),
    "jid": (bench_jid, 200_000, "JID parsed (cached)"),
    "route": (bench_route, 100_000, "message parsed, routed and delivered"),
    "route_sm": (bench_route_sm, 100_000, "the same with stream management on both ends"),
    "route_redis": (bench_route_redis, 100_000, "route with message events to Redis"),
    "route_nats": (bench_route_nats, 100_000, "route with message events to NATS JetStream"),
    "offline": (bench_offline_store, 2_000, "offline message stored (SQLite)"),
    "muc": (bench_muc, 20_000, f"groupchat message fanned out to {MUC_OCCUPANTS} occupants"),
}


def run(names: list[str], smoke: bool, count: int = 0) -> list[dict[str, Any]]:
    results = []
    for name in names:
        fn, n, what = BENCHES[name]
        if count:
            n = count
        elif smoke:
            n = max(10, n // 1000)
        out = fn(n)
        elapsed = asyncio.run(out) if asyncio.iscoroutine(out) else out
        assert isinstance(elapsed, float)
        results.append({"bench": name, "n": n, "seconds": round(elapsed, 4),
                        "ops_per_s": round(n / elapsed), "us_per_op": round(elapsed / n * 1e6, 2),
                        "what": what})
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--smoke", action="store_true", help="tiny runs, only to prove they work")
    ap.add_argument("--only", default="", help="comma-separated subset: " + ",".join(BENCHES))
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--n", type=int, default=0, help="operations per benchmark (default: its own)")
    args = ap.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        ap.error(f"unknown benchmark(s): {', '.join(unknown)}")
    results = run(names, args.smoke, args.n)
    for r in results:
        print(f"{r['bench']:10s} {r['ops_per_s']:>10,d} /s  {r['us_per_op']:>8.2f} µs  "
              f"({r['what']}, n={r['n']})")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
