"""The event stream (issue 24, item 3) end to end: the real server with ``[eventstream]`` on,
slixmpp users who chat, join a room, change presence and log out, and consumers that read the
events back from the real Redis (127.0.0.1:6379, ``XRANGE``) and NATS JetStream
(127.0.0.1:4222, a stream created here under a unique name). Then a broker that is not
there: events are dropped and counted in /metrics, and messages are still delivered."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import nats
import pytest
import redis.asyncio as aioredis
from nats.js import JetStreamContext

from tests.integration.conftest import Harness
from tests.integration.test_metrics import v, values
from tests.integration.test_muc import DATA, MUC_OWNER, ROOM, is_message, is_presence, witch
from tests.integration.waiting import until

REDIS = "redis://127.0.0.1:6379/0"
NATS = "nats://127.0.0.1:4222"
Event = dict[str, str]


class Brokers:
    """A unique Redis stream key and a unique JetStream stream for one test."""

    def __init__(self, redis: aioredis.Redis, nc: Any, js: JetStreamContext) -> None:
        tag = uuid.uuid4().hex[:12]
        self.redis = redis
        self.nc = nc
        self.js = js
        self.key = f"hytest:{tag}"
        self.stream = f"HYTEST_{tag}"
        self.prefix = f"hytest{tag}"

    def config(self, extra: str = "") -> str:
        return (f'[eventstream]\nenabled = true\nredis_url = "{REDIS}"\n'
                f'redis_stream = "{self.key}"\nnats_url = "{NATS}"\n'
                f'nats_subject = "{self.prefix}"\n{extra}')

    async def from_redis(self) -> list[Event]:
        rows = await self.redis.xrange(self.key)
        return [{k.decode(): val.decode() for k, val in fields.items()} for _, fields in rows]

    async def from_nats(self) -> list[tuple[str, Event]]:
        info = await self.js.stream_info(self.stream)
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await self.js.get_msg(self.stream, seq)
            assert msg.data is not None
            out.append((msg.subject, json.loads(msg.data)))
        return out


@pytest.fixture
async def brokers() -> AsyncIterator[Brokers]:
    redis = aioredis.Redis.from_url(REDIS, socket_connect_timeout=5)
    nc = await nats.connect(NATS, connect_timeout=5, allow_reconnect=False)
    js = nc.jetstream(timeout=5)
    b = Brokers(redis, nc, js)
    await js.add_stream(name=b.stream, subjects=[f"{b.prefix}.>"])
    try:
        yield b
    finally:
        await redis.delete(b.key)
        await redis.aclose()
        await js.delete_stream(b.stream)
        await nc.close()


def find(events: list[Event], **want: str) -> Event:
    for ev in events:
        if all(ev.get(k) == val for k, val in want.items()):
            return ev
    raise AssertionError(f"no event {want} among {events}")


async def until_event(read: Callable[[], Any], **want: str) -> None:
    """Wait (bounded) until the broker holds an event with the fields ``want``."""
    got: list[Event] = []
    loop = asyncio.get_running_loop()
    end = loop.time() + 10
    while loop.time() < end:
        got = [e if isinstance(e, dict) else e[1] for e in await read()]
        if any(all(ev.get(k) == val for k, val in want.items()) for ev in got):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no event {want} within 10 s among {got}")


async def test_chat_room_presence_and_logins_reach_redis_and_nats(
        harness: Harness, brokers: Brokers) -> None:
    await harness.stop_node()
    t0 = harness.clock.time()
    await harness.start(extra=brokers.config("include_body = true"))
    alice = await witch(harness, "alice")
    bob = await witch(harness, "bob")
    # a 1:1 message, delivered
    alice.c.send_message(mto="bob@localhost/broom", mbody="hello bob", mtype="chat")
    await bob.expect(is_message("alice@localhost/broom", "hello bob"))
    # a room: alice creates it (instant), bob joins, alice speaks, bob is kicked
    await alice.join(ROOM, "al")
    res = await alice.iq(ROOM, f"<query xmlns='{MUC_OWNER}'><x xmlns='{DATA}' "
                               "type='submit'/></query>", "set")
    assert res.get("type") == "result"
    await bob.join(ROOM, "bo")
    alice.c.send_message(mto=ROOM, mbody="hi room", mtype="groupchat")
    await bob.expect(is_message(f"{ROOM}/al", "hi room"))
    # a presence change, then bob logs out
    alice.c.send_presence(pshow="away")
    await until_event(brokers.from_redis, type="presence", show="away")
    await bob.c.close()
    await alice.expect(is_presence(f"{ROOM}/bo", "unavailable"))

    await until_event(brokers.from_redis, type="logout", jid="bob@localhost/broom")
    await until_event(brokers.from_nats, type="logout", jid="bob@localhost/broom")
    redis_events = await brokers.from_redis()
    nats_events = await brokers.from_nats()
    assert [ev for _, ev in nats_events] == redis_events  # the same events, in the same order
    for subject, ev in nats_events:
        assert subject == f"{brokers.prefix}.{ev['type']}"
    events = redis_events
    for ev in events:
        assert t0 <= float(ev["time"]) <= harness.clock.time()

    msg = find(events, type="message", mtype="chat", body="hello bob")
    assert msg["from"] == "alice@localhost/broom" and msg["to"] == "bob@localhost/broom"
    # the size is the stanza's as delivered: at least the body and both addresses
    assert int(msg["size"]) > len("hello bob" + msg["from"] + msg["to"])
    find(events, type="login", jid="alice@localhost/broom")
    find(events, type="login", jid="bob@localhost/broom")
    find(events, type="presence", jid="alice@localhost/broom", available="1", show="away")
    find(events, type="room", action="join", room=ROOM, nick="al", jid="alice@localhost")
    find(events, type="room", action="join", room=ROOM, nick="bo", jid="bob@localhost")
    said = find(events, type="room", action="message", room=ROOM, nick="al", body="hi room")
    assert int(said["size"]) > len("hi room")
    find(events, type="room", action="leave", room=ROOM, nick="bo", jid="bob@localhost")
    find(events, type="logout", jid="bob@localhost/broom", was_available="1")
    # login before the messages it allowed, the message before the logout
    order = [(e["type"], e.get("jid", "")) for e in events]
    assert order.index(("login", "bob@localhost/broom")) < events.index(msg) < \
        order.index(("logout", "bob@localhost/broom"))

    vals = await values(harness)
    assert v(vals, "hongyan_eventstream_sent_total", backend="redis") == len(events)
    assert v(vals, "hongyan_eventstream_sent_total", backend="nats") == len(events)
    assert v(vals, "hongyan_eventstream_dropped_total", backend="redis") == 0
    assert v(vals, "hongyan_eventstream_connected", backend="nats") == 1


async def test_no_body_unless_configured(harness: Harness, brokers: Brokers) -> None:
    await harness.stop_node()
    await harness.start(extra=brokers.config('events = ["message"]'))
    alice = await harness.logged_in("alice")
    bob = await harness.logged_in("bob", resource='te"st\\')  # JSON must escape these
    alice.send_message(mto='bob@localhost/te"st\\', mbody="secret words", mtype="chat")
    assert (await bob.next_message())["body"] == "secret words"
    await until_event(brokers.from_redis, type="message", to='bob@localhost/te"st\\')
    await until_event(brokers.from_nats, type="message", to='bob@localhost/te"st\\')
    events = await brokers.from_redis()
    assert [e for _, e in await brokers.from_nats()] == events
    assert {e["type"] for e in events} == {"message"}  # no login, presence events
    assert all("body" not in e for e in events)
    assert "secret words" not in json.dumps(events)
    (msg,) = events
    assert list(msg) == ["type", "time", "from", "to", "mtype", "size"]
    assert msg["from"] == "alice@localhost/test" and msg["mtype"] == "chat"
    assert int(msg["size"]) > len("secret words")


async def test_broker_down_drops_and_counts_routing_unaffected(harness: Harness) -> None:
    # nothing listens on port 1: both brokers are down from the start
    await harness.stop_node()
    await harness.start(extra='[eventstream]\nenabled = true\n'
                        'redis_url = "redis://127.0.0.1:1/0"\nnats_url = "nats://127.0.0.1:1"\n'
                        "queue_size = 5\ntimeout = 0.5\nbackoff_max = 0.5\n")
    alice = await harness.logged_in("alice")
    bob = await harness.logged_in("bob")
    for i in range(40):
        alice.send_message(mto="bob@localhost/test", mbody=f"m{i}", mtype="chat")
    for i in range(40):
        assert (await bob.next_message())["body"] == f"m{i}"
    # the sender, a child process, reports its numbers every 20 ms: they settle
    want = {"queue_depth": 5, "dropped_total": 39}
    for _ in range(100):
        vals = await values(harness)
        if all(v(vals, f"hongyan_eventstream_{k}", backend=b) == n
               for k, n in want.items() for b in ("redis", "nats")):
            break
        await asyncio.sleep(0.05)
    for backend in ("redis", "nats"):
        # 2 logins, 2 presences, 40 messages: 5 wait, the rest was dropped
        assert v(vals, "hongyan_eventstream_queue_depth", backend=backend) == 5
        assert v(vals, "hongyan_eventstream_dropped_total", backend=backend) == 44 - 5
        assert v(vals, "hongyan_eventstream_connected", backend=backend) == 0
        assert v(vals, "hongyan_eventstream_sent_total", backend=backend) == 0


async def test_reconnects_when_the_broker_comes_back(harness: Harness,
                                                     brokers: Brokers) -> None:
    """A relay in front of Redis that the test closes and reopens: events queued while it is
    away are sent once it is back."""
    server: asyncio.Server | None = None
    links: list[asyncio.StreamWriter] = []

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ur, uw = await asyncio.open_connection("127.0.0.1", 6379)
        links.extend((writer, uw))

        async def pump(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                while data := await r.read(65536):
                    w.write(data)
            except (ConnectionError, OSError):
                pass
            finally:
                w.close()
        await asyncio.gather(pump(reader, uw), pump(ur, writer))

    server = await asyncio.start_server(relay, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    await harness.stop_node()
    await harness.start(extra=f'[eventstream]\nenabled = true\n'
                        f'redis_url = "redis://127.0.0.1:{port}/0"\n'
                        f'redis_stream = "{brokers.key}"\nevents = ["message"]\n'
                        "timeout = 1\nbackoff_max = 0.2\n")
    alice = await harness.logged_in("alice")
    bob = await harness.logged_in("bob")
    alice.send_message(mto="bob@localhost/test", mbody="before", mtype="chat")
    assert (await bob.next_message())["body"] == "before"
    await until(lambda: len(links) >= 2)
    await until_event(brokers.from_redis, type="message")
    # the broker goes away: the relay stops listening and cuts the connection
    server.close()
    for w in links:
        w.close()
    links.clear()
    await server.wait_closed()
    alice.send_message(mto="bob@localhost/test", mbody="while away", mtype="chat")
    assert (await bob.next_message())["body"] == "while away"
    # back, on the same port
    server = await asyncio.start_server(relay, "127.0.0.1", port)
    try:
        alice.send_message(mto="bob@localhost/test", mbody="after", mtype="chat")
        assert (await bob.next_message())["body"] == "after"
        for _ in range(200):
            if len(await brokers.from_redis()) >= 2:
                break
            await asyncio.sleep(0.05)
        events = await brokers.from_redis()
        assert len(events) >= 2, events
        for _ in range(100):  # the sender's numbers settle (it reports every 20 ms)
            vals = await values(harness)
            if v(vals, "hongyan_eventstream_sent_total", backend="redis") == len(events):
                break
            await asyncio.sleep(0.05)
        assert v(vals, "hongyan_eventstream_connected", backend="redis") == 1
        sent = v(vals, "hongyan_eventstream_sent_total", backend="redis")
        dropped = v(vals, "hongyan_eventstream_dropped_total", backend="redis")
        # every message is either in the stream or counted as dropped (a batch that failed
        # with the connection), none lost silently
        assert sent == len(events) and sent + dropped == 3
    finally:
        server.close()
        for w in links:
            w.close()


async def test_child_sender_overflow_counted_and_the_rest_published(
        harness: Harness, brokers: Brokers) -> None:
    """The sender is a child process: a burst larger than its queues fills them; what is not
    in Redis and JetStream is counted as dropped, per broker, and the child exits with the
    server."""
    await harness.stop_node()
    await harness.start(extra=brokers.config('events = ["message"]\nqueue_size = 20\n'
                                             "batch_size = 5\n"))
    assert harness.node is not None
    es: Any = harness.node.modules["eventstream"]
    proc = es._proc
    assert proc is not None and proc.pid != os.getpid() and proc.returncode is None
    alice = await harness.logged_in("alice")
    bob = await harness.logged_in("bob")
    n = 300
    for i in range(n):
        alice.send_message(mto="bob@localhost/test", mbody=f"m{i}", mtype="chat")
    for i in range(n):
        assert (await bob.next_message())["body"] == f"m{i}"
    settled = False
    for _ in range(200):  # bounded: the child sends, then reports within 20 ms
        vals = await values(harness)
        total = [v(vals, "hongyan_eventstream_sent_total", backend=b)
                 + v(vals, "hongyan_eventstream_dropped_total", backend=b)
                 for b in ("redis", "nats")]
        if total == [n, n] and all(v(vals, "hongyan_eventstream_queue_depth", backend=b) == 0
                                   for b in ("redis", "nats")):
            settled = True
            break
        await asyncio.sleep(0.05)
    assert settled, vals
    in_redis = [e for e in await brokers.from_redis() if e["type"] == "message"]
    in_nats = [e for s, e in await brokers.from_nats() if e["type"] == "message"]
    assert len(in_redis) == v(vals, "hongyan_eventstream_sent_total", backend="redis") > 0
    assert len(in_nats) == v(vals, "hongyan_eventstream_sent_total", backend="nats") > 0
    for e in in_redis[:1] + in_nats[:1]:
        assert e["from"] == "alice@localhost/test" and e["to"] == "bob@localhost/test"
        assert e["mtype"] == "chat" and int(e["size"]) > 0 and "body" not in e
    # the sender goes with the server
    await harness.stop_node()
    assert proc.returncode is not None
