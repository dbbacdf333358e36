"""bench/boshload.py - XMPP over BOSH (XEP-0206) against any server, the BOSH twin of
wsload.py's rows: the server's RSS per idle BOSH session and 1:1 message throughput.

    python -m bench.boshload --url http://127.0.0.1:5280/http-bind --pid PID --clients 2000
    python -m bench.boshload --url ... --pid PID throughput --pairs 50 --window 10 --duration 20

An idle BOSH client is what a browser tab that says nothing is: it logged in (session creation
with wait 60 and hold 1, SASL PLAIN, restart, bind, initial presence, roster get) and keeps one
request held by the server, renewed when it is answered; its server-side cost is the session
and that held HTTP request. Throughput: each of ``--pairs`` senders keeps ``--window`` chat
messages in flight to its receiver (one more sent per one received); a sender puts what it has
to send in one request, which releases its previous one (hold 1), and a receiver keeps one
request held and sends the next as soon as it is answered. Messages received during
``--duration`` seconds after ``--warmup`` are counted. Clients run in ``--procs`` child
processes on a minimal HTTP/1.1 client of their own (keep-alive connections, one per request
under way), cheap next to the servers. Accounts user1..userN / pass must
exist. Prints one JSON object (and appends it to ``--json FILE``); every phase is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import re
import secrets
import sys
import time
from urllib.parse import urlsplit

from bench.wsload import drive_pairs, rss_kb

HTTPBIND = "http://jabber.org/protocol/httpbind"
XBOSH = "urn:xmpp:xbosh"


class Conn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: a POST out, its response (Content-Length) back.
    Cheap on purpose, as wsload.py's raw WebSocket: the generator must cost less than the
    servers it loads."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[bytes] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        m = _LENGTH.search(bytes(self.buf[:end]))
        n = int(m.group(1)) if m else 0
        if len(self.buf) < end + 4 + n:
            return
        body = bytes(self.buf[end + 4:end + 4 + n])
        del self.buf[:end + 4 + n]
        waiter.set_result(body)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("the server closed the connection"))

    async def post(self, head: bytes, data: bytes) -> bytes:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(head + b"%d\r\n\r\n" % len(data) + data)
        return await self.waiter


_LENGTH = re.compile(rb"(?i)\r\ncontent-length:\s*(\d+)")


class Bosh:
    """One BOSH session's client side (only what the load needs), on at most as many
    connections as it has requests under way."""

    def __init__(self, url: str, domain: str) -> None:
        u = urlsplit(url)
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 80
        self._head = (f"POST {u.path} HTTP/1.1\r\nHost: {u.netloc}\r\n"
                      "Content-Type: text/xml; charset=utf-8\r\nContent-Length: ").encode()
        self.domain = domain
        self.rid = secrets.randbelow(1 << 40) + 1_000_000
        self.sid = ""
        self._idle: list[Conn] = []
        self._all: list[Conn] = []

    async def _conn(self) -> Conn:
        while self._idle:
            c = self._idle.pop()
            if not c.closed:
                return c
        _, c = await asyncio.get_running_loop().create_connection(Conn, self.host, self.port)
        self._all.append(c)
        return c

    def close(self) -> None:
        for c in self._all:
            if c.transport is not None:
                c.transport.close()

    def body(self, payload: str = "", **attrs: str) -> bytes:
        self.rid += 1
        extra = "".join(f" {k.replace('__', ':')}='{v}'" for k, v in attrs.items())
        sid = f" sid='{self.sid}'" if self.sid else ""
        head = (f"<body xmlns='{HTTPBIND}' xmlns:xmpp='{XBOSH}' rid='{self.rid}'{sid}"
                f"{extra}")
        return (f"{head}>{payload}</body>" if payload else f"{head}/>").encode()

    async def post(self, data: bytes) -> str:
        c = await self._conn()
        text = (await c.post(self._head, data)).decode()
        self._idle.append(c)
        if "type='terminate'" in text or 'type="terminate"' in text:
            raise ConnectionError(f"BOSH session terminated: {text[:600]}")
        return text

    async def ask(self, payload: str, pattern: str, **attrs: str) -> str:
        """A request, then empty ones until a response matches ``pattern``."""
        rx = re.compile(pattern)
        got = await self.post(self.body(payload, **attrs))
        for _ in range(20):
            if rx.search(got):
                return got
            got = await self.post(self.body())
        raise ConnectionError(f"no {pattern!r} in {got[:200]!r}")

    async def login(self, user: str) -> None:
        created = await self.post(self.body(to=self.domain, wait="60", hold="1", ver="1.6",
                                            xmpp__version="1.0",
                                            content="text/xml; charset=utf-8"))
        m = re.search(r"sid=['\"]([^'\"]+)['\"]", created)
        if not m:
            raise ConnectionError(f"no sid: {created[:200]!r}")
        self.sid = m.group(1)
        if "<mechanism" not in created:
            await self.ask("", r"<mechanism")
        cred = base64.b64encode(f"\0{user}\0pass".encode()).decode()
        await self.ask(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
                       f"{cred}</auth>", r"<success")
        await self.ask("", r"<bind", to=self.domain, xmpp__restart="true")
        await self.ask("<iq xmlns='jabber:client' type='set' id='b'><bind "
                       "xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r</resource>"
                       "</bind></iq>", r"id=['\"]b['\"]")
        await self.ask("<presence xmlns='jabber:client'/><iq xmlns='jabber:client' "
                       "type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>",
                       r"id=['\"]r['\"]")


async def keep_polling(b: Bosh) -> None:
    """An idle client: one request held by the server, renewed when answered."""
    while True:
        await b.post(b.body())


async def hold(url: str, domain: str, first: int, count: int, concurrency: int) -> None:
    """A child: log users first..first+count-1 in, say "ready", stay until stdin closes."""
    sem = asyncio.Semaphore(concurrency)
    pollers: list[asyncio.Task[None]] = []
    failed = 0

    async def one(i: int) -> None:
        nonlocal failed
        async with sem:
            b = Bosh(url, domain)
            try:
                await asyncio.wait_for(b.login(f"user{i}"), 60)
            except Exception as exc:  # counted and reported, never hidden
                failed += 1
                if failed <= 3:
                    print(f"login user{i} failed: {exc!r}", file=sys.stderr)
                return
            pollers.append(asyncio.ensure_future(keep_polling(b)))

    await asyncio.gather(*(one(i) for i in range(first, first + count)))
    await asyncio.sleep(0.5)  # (the last polls on their way)
    alive = sum(1 for t in pollers if not t.done())
    print(f"ready {alive} {failed + len(pollers) - alive}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for t in pollers:
        t.cancel()


async def run(args: argparse.Namespace) -> dict[str, object]:
    base = rss_kb(args.pid)
    per = -(-args.clients // args.procs)
    children = []
    t0 = time.monotonic()
    for k in range(args.procs):
        first = 1 + k * per
        count = min(per, args.clients - k * per)
        if count <= 0:
            break
        children.append(await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.boshload", "--hold", "--url", args.url,
            "--domain", args.domain, "--first", str(first), "--clients", str(count),
            "--concurrency", str(args.concurrency),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE))
    ok = failed = 0
    try:
        for child in children:
            assert child.stdout is not None
            line = (await asyncio.wait_for(child.stdout.readline(), args.deadline)).split()
            if not line or line[0] != b"ready":
                raise RuntimeError(f"a client process did not log in: {line!r}")
            ok += int(line[1])
            failed += int(line[2])
        elapsed = time.monotonic() - t0
        await asyncio.sleep(args.settle)
        idle = rss_kb(args.pid)
    finally:
        for child in children:
            assert child.stdin is not None
            child.stdin.close()
        for child in children:
            await asyncio.wait_for(child.wait(), args.deadline)
    return {"test": "bosh_idle", "label": args.label, "target": urlsplit(args.url).netloc,
            "url": args.url, "clients": args.clients, "ok": ok, "failed": failed,
            "login_s": round(elapsed, 2), "server_rss_base_kb": base,
            "server_rss_idle_kb": idle, "rss_per_conn_kb": round((idle - base) / max(ok, 1), 2)}


async def pairs(url: str, domain: str, first: int, n: int, window: int, warmup: float,
                duration: float) -> None:
    """A child: ``n`` pairs (users first.. as senders, the next ones as receivers); prints
    the messages received during the measured window."""
    counted = [0]
    measuring = [False]
    running = [True]
    senders = []
    receivers = []
    for i in range(n):
        s = Bosh(url, domain)
        await s.login(f"user{first + i}")
        r = Bosh(url, domain)
        await r.login(f"user{first + n + i}")
        senders.append(s)
        receivers.append(r)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

    async def send_loop(b: Bosh, to: str, credit: list[int], wake: asyncio.Event) -> None:
        msg = (f"<message xmlns='jabber:client' to='{to}' type='chat'><body>"
               + "x" * 64 + "</body></message>")
        prev: asyncio.Task[str] | None = None
        while running[0]:
            await wake.wait()
            wake.clear()
            k, credit[0] = credit[0], 0
            if not k:
                continue
            t = asyncio.ensure_future(b.post(b.body(msg * k)))
            if prev is not None:
                await prev  # (answered once this one arrives: hold 1)
            prev = t

    async def receive_loop(b: Bosh, credit: list[int], wake: asyncio.Event) -> None:
        while running[0]:
            got = await b.post(b.body())
            k = got.count("<message")
            if k:
                if measuring[0]:
                    counted[0] += k
                credit[0] += k
                wake.set()

    tasks = []
    for i, (s, r) in enumerate(zip(senders, receivers, strict=True)):
        credit = [window]
        wake = asyncio.Event()
        wake.set()
        tasks.append(asyncio.ensure_future(receive_loop(r, credit, wake)))
        tasks.append(asyncio.ensure_future(send_loop(s, f"user{first + n + i}@{domain}",
                                                     credit, wake)))
    await asyncio.sleep(warmup)
    measuring[0] = True
    await asyncio.sleep(duration)
    measuring[0] = False
    running[0] = False
    print(counted[0], flush=True)
    for t in tasks:
        t.cancel()
    for b in (*senders, *receivers):
        b.close()


async def throughput(args: argparse.Namespace) -> dict[str, object]:
    total, cpu = await drive_pairs("bench.boshload", args)
    return {"test": "bosh_throughput", "label": args.label,
            "target": urlsplit(args.url).netloc, "url": args.url, "pairs": args.pairs,
            "window": args.window, "duration_s": args.duration, "delivered": total,
            "msgs_per_s": round(total / args.duration, 1),
            "server_cpu_pct": round(100 * cpu / (args.warmup + args.duration), 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--domain", default="localhost")
    ap.add_argument("--clients", type=int, default=2000)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=100)
    ap.add_argument("--pid", type=int, default=0, help="the server's process id")
    ap.add_argument("--settle", type=float, default=5.0)
    ap.add_argument("--deadline", type=float, default=600.0)
    ap.add_argument("--label", default="")
    ap.add_argument("--json", default="")
    ap.add_argument("--hold", action="store_true", help="(a child process)")
    ap.add_argument("--first", type=int, default=1, help="(a child process)")
    sub = ap.add_subparsers(dest="mode")
    tp = sub.add_parser("throughput", help="1:1 messages between pairs")
    tp.add_argument("--pairs", type=int, default=50)
    tp.add_argument("--window", type=int, default=10)
    tp.add_argument("--duration", type=float, default=20.0)
    tp.add_argument("--warmup", type=float, default=3.0)
    pp = sub.add_parser("pairs", help="(a child process of throughput)")
    pp.add_argument("--first", type=int, dest="pfirst", required=True)
    pp.add_argument("--n", type=int, required=True)
    pp.add_argument("--window", type=int, required=True)
    pp.add_argument("--duration", type=float, required=True)
    pp.add_argument("--warmup", type=float, required=True)
    args = ap.parse_args()
    if args.mode == "pairs":
        asyncio.run(pairs(args.url, args.domain, args.pfirst, args.n, args.window,
                          args.warmup, args.duration))
        return
    if args.hold:
        asyncio.run(hold(args.url, args.domain, args.first, args.clients, args.concurrency))
        return
    if not args.pid:
        ap.error("--pid is required")
    result = asyncio.run(throughput(args) if args.mode == "throughput" else run(args))
    print(json.dumps(result))
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
