"""bench/wsload.py - XMPP over WebSocket (RFC 7395) against any server, the WebSocket twin of
xmppload.py's rows: the server's RSS per idle WebSocket session ("mem10000") and 1:1 message
throughput ("throughput --pairs 50 --window 10").

    python -m bench.wsload --url ws://127.0.0.1:5280/xmpp-websocket --pid PID --clients 2000
    python -m bench.wsload --url ... --pid PID throughput --pairs 50 --window 10 --duration 20

Throughput: each of ``--pairs`` senders keeps ``--window`` chat messages in flight to its
receiver (one more sent per one received), in ``--procs`` processes; messages received during
``--duration`` seconds after ``--warmup`` are counted. Its client speaks WebSocket itself
(frames masked with a zero key, which RFC 6455 allows; no per-byte work), so that the generator
is cheap next to the servers; the idle row uses aiohttp's client.

Accounts user1..userN / pass must exist. Clients log in the way ``xmppload.py login`` does
(open, SASL PLAIN, restart, bind, initial presence, roster get) in ``--procs`` child processes,
then stay silent; the server's RSS is read from /proc before the first login and ``--settle``
seconds after the last; then ``--probes`` more logins, one after another, are timed (the
latency of a login among the idle sessions). Prints one JSON object (and appends it to
``--json FILE``). Every phase is bounded by ``--deadline`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (a server's worker processes count, as in xmppload.py)."""
    kids: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            kids.setdefault(int(stat[stat.rfind(")") + 2:].split()[1]), []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def rss_kb(pid: int) -> int:
    """The resident memory of ``pid`` and its descendants."""
    total = 0
    for p in _tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    break
        except OSError:
            continue
    return total


async def _until(ws: aiohttp.ClientWebSocketResponse, pattern: str) -> str:
    rx = re.compile(pattern)
    while True:
        msg = await ws.receive()
        if msg.type != aiohttp.WSMsgType.TEXT:
            raise ConnectionError(f"WebSocket ended during login: {msg.type!r} {msg.data!r}")
        if rx.search(msg.data):
            return str(msg.data)


async def login(session: aiohttp.ClientSession, url: str, domain: str, user: str
                ) -> aiohttp.ClientWebSocketResponse:
    ws = await session.ws_connect(url, protocols=("xmpp",), heartbeat=None, autoping=True)
    opening = f"<open xmlns='{FRAMING}' to='{domain}' version='1.0'/>"
    await ws.send_str(opening)
    await _until(ws, r"<(stream:)?features")
    cred = base64.b64encode(f"\0{user}\0pass".encode()).decode()
    await ws.send_str(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
                      f"{cred}</auth>")
    await _until(ws, r"<success")
    await ws.send_str(opening)
    await _until(ws, r"<(stream:)?features")
    await ws.send_str("<iq xmlns='jabber:client' type='set' id='b'><bind "
                      "xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r</resource>"
                      "</bind></iq>")
    await _until(ws, r"id=['\"]b['\"]")
    await ws.send_str("<presence xmlns='jabber:client'/>")
    await ws.send_str("<iq xmlns='jabber:client' type='get' id='r'>"
                      "<query xmlns='jabber:iq:roster'/></iq>")
    await _until(ws, r"id=['\"]r['\"]")
    return ws


async def hold(url: str, domain: str, first: int, count: int, concurrency: int) -> None:
    """A child: log users first..first+count-1 in, say "ready", stay until stdin closes."""
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn) as session:
        sem = asyncio.Semaphore(concurrency)
        sockets: list[aiohttp.ClientWebSocketResponse] = []
        failed = 0

        async def one(i: int) -> None:
            nonlocal failed
            async with sem:
                try:
                    sockets.append(await asyncio.wait_for(
                        login(session, url, domain, f"user{i}"), 60))
                except Exception as exc:  # counted and reported, never hidden
                    failed += 1
                    if failed <= 3:
                        print(f"login user{i} failed: {exc!r}", file=sys.stderr)

        await asyncio.gather(*(one(i) for i in range(first, first + count)))
        print(f"ready {len(sockets)} {failed}", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        for ws in sockets:
            await ws.close()


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
            sys.executable, "-m", "bench.wsload", "--hold", "--url", args.url,
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
        probes = await _probe_logins(args.url, args.domain, args.clients + 1, args.probes)
    finally:
        for child in children:
            assert child.stdin is not None
            child.stdin.close()
        for child in children:
            await asyncio.wait_for(child.wait(), args.deadline)
    return {"test": "ws_idle", "label": args.label, "target": urlsplit(args.url).netloc,
            "url": args.url, "clients": args.clients,
            "ok": ok, "failed": failed, "login_s": round(elapsed, 2),
            "server_rss_base_kb": base, "server_rss_idle_kb": idle,
            "rss_per_conn_kb": round((idle - base) / max(ok, 1), 2),
            "probes": len(probes),
            "probe_login_ms_p50": round(sorted(probes)[len(probes) // 2], 2) if probes else None,
            "probe_login_ms_max": round(max(probes), 2) if probes else None}


async def _probe_logins(url: str, domain: str, first: int, n: int) -> list[float]:
    """``n`` whole logins one after another (users first..), each timed from its TCP connect
    to its roster, while the idle sessions stay: the latency of a login under that load."""
    times: list[float] = []
    async with aiohttp.ClientSession() as session:
        for i in range(first, first + n):
            t = time.perf_counter()
            ws = await asyncio.wait_for(login(session, url, domain, f"user{i}"), 30)
            times.append(1000 * (time.perf_counter() - t))
            await ws.close()
    return times


class RawWS(asyncio.Protocol):
    """A minimal WebSocket client (RFC 6455) for load: text frames out, whole text messages in."""

    def __init__(self, on_message: Callable[[bytes], None] | None = None) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.upgraded = asyncio.get_running_loop().create_future()
        self.inbox: asyncio.Queue[bytes] = asyncio.Queue()
        self.on_message = on_message
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.upgraded.done():
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end])
            del self.buf[:end + 4]
            if not head.startswith(b"HTTP/1.1 101"):
                self.upgraded.set_exception(ConnectionError(head[:200].decode("latin-1")))
                return
            self.upgraded.set_result(None)
        buf = self.buf
        while len(buf) >= 2:
            opcode, n, at = buf[0] & 0x0F, buf[1] & 0x7F, 2
            if n == 126:
                if len(buf) < 4:
                    return
                n, at = int.from_bytes(buf[2:4], "big"), 4
            elif n == 127:
                if len(buf) < 10:
                    return
                n, at = int.from_bytes(buf[2:10], "big"), 10
            if len(buf) < at + n:
                return
            payload = bytes(buf[at:at + n])
            del buf[:at + n]
            if opcode == 0x9:
                self._frame(0xA, payload)
            elif opcode == 0x8:
                self.closed = True
            elif opcode in (0x1, 0x0):
                if self.on_message is not None:
                    self.on_message(payload)
                else:
                    self.inbox.put_nowait(payload)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.upgraded.done():
            self.upgraded.set_exception(ConnectionError("closed before the upgrade"))

    def _frame(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        if n < 126:
            head = bytes((0x80 | opcode, 0x80 | n))
        elif n < 65536:
            head = bytes((0x80 | opcode, 0xFE)) + n.to_bytes(2, "big")
        else:
            head = bytes((0x80 | opcode, 0xFF)) + n.to_bytes(8, "big")
        assert self.transport is not None
        self.transport.write(head + b"\0\0\0\0" + payload)  # a zero masking key

    def send(self, text: bytes) -> None:
        self._frame(0x1, text)

    async def until(self, pattern: bytes) -> bytes:
        rx = re.compile(pattern)
        while True:
            msg = await asyncio.wait_for(self.inbox.get(), 30)
            if rx.search(msg):
                return msg


async def raw_login(url: str, domain: str, user: str) -> RawWS:
    parsed = urlsplit(url)
    loop = asyncio.get_running_loop()
    _, ws = await loop.create_connection(RawWS, parsed.hostname or "127.0.0.1",
                                         parsed.port or 80)
    key = base64.b64encode(os.urandom(16)).decode()
    assert ws.transport is not None
    ws.transport.write(f"GET {parsed.path} HTTP/1.1\r\nHost: {parsed.netloc}\r\n"
                       f"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                       f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                       f"Sec-WebSocket-Protocol: xmpp\r\n\r\n".encode())
    await asyncio.wait_for(ws.upgraded, 30)
    opening = f"<open xmlns='{FRAMING}' to='{domain}' version='1.0'/>".encode()
    ws.send(opening)
    await ws.until(rb"<(stream:)?features")
    cred = base64.b64encode(f"\0{user}\0pass".encode())
    ws.send(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" + cred
            + b"</auth>")
    await ws.until(rb"<success")
    ws.send(opening)
    await ws.until(rb"<(stream:)?features")
    ws.send(b"<iq xmlns='jabber:client' type='set' id='b'><bind "
            b"xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r</resource></bind></iq>")
    await ws.until(rb"id=['\"]b['\"]")
    ws.send(b"<presence xmlns='jabber:client'/>")
    ws.send(b"<iq xmlns='jabber:client' type='get' id='r'><query xmlns='jabber:iq:roster'/>"
            b"</iq>")
    await ws.until(rb"id=['\"]r['\"]")
    return ws


async def pairs(url: str, domain: str, first: int, n: int, window: int, warmup: float,
                duration: float) -> None:
    """A child: ``n`` pairs (users first.. as senders, the next ones as receivers); prints
    the messages received during the measured window."""
    senders = [await raw_login(url, domain, f"user{first + i}") for i in range(n)]
    counted = [0]
    measuring = [False]
    running = [True]

    def receiver_for(sender: RawWS, to: str) -> Callable[[bytes], None]:
        body = (f"<message xmlns='jabber:client' to='{to}' type='chat'><body>"
                + "x" * 64 + "</body></message>").encode()

        def got(msg: bytes) -> None:
            if msg.startswith(b"<message"):
                if measuring[0]:
                    counted[0] += 1
                if running[0]:
                    sender.send(body)
        got.body = body  # type: ignore[attr-defined]
        return got

    receivers = []
    for i, sender in enumerate(senders):
        to = f"user{first + n + i}@{domain}"
        ws = await raw_login(url, domain, f"user{first + n + i}")
        ws.on_message = receiver_for(sender, to)
        receivers.append(ws)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for sender, ws in zip(senders, receivers, strict=True):
        assert ws.on_message is not None
        for _ in range(window):
            sender.send(ws.on_message.body)  # type: ignore[attr-defined]
    await asyncio.sleep(warmup)
    measuring[0] = True
    await asyncio.sleep(duration)
    measuring[0] = False
    running[0] = False
    print(counted[0], flush=True)
    await asyncio.sleep(0.5)


async def drive_pairs(module: str, args: argparse.Namespace) -> tuple[int, float]:
    """The throughput run's parent side, for ``python -m <module> ... pairs`` children (this
    module's and bench.boshload's): ``args.pairs`` pairs spread over ``args.procs`` children,
    started together once every child logged in; the messages delivered and the server's
    CPU seconds over warm-up and duration."""
    per = -(-args.pairs // args.procs)
    children = []
    for k in range(args.procs):
        n = min(per, args.pairs - k * per)
        if n <= 0:
            break
        children.append(await asyncio.create_subprocess_exec(
            sys.executable, "-m", module, "--url", args.url, "--domain", args.domain,
            "--pid", str(args.pid), "pairs", "--first", str(1 + 2 * k * per), "--n", str(n),
            "--window", str(args.window), "--warmup", str(args.warmup),
            "--duration", str(args.duration),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE))
    for child in children:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), args.deadline)
        if line.strip() != b"ready":
            raise RuntimeError(f"a client process did not log in: {line!r}")
    cpu0 = _cpu_s(args.pid)
    for child in children:
        assert child.stdin is not None
        child.stdin.write(b"go\n")
    total = 0
    for child in children:
        assert child.stdout is not None
        total += int(await asyncio.wait_for(child.stdout.readline(),
                                            args.warmup + args.duration + 60))
    cpu = _cpu_s(args.pid) - cpu0
    for child in children:
        await asyncio.wait_for(child.wait(), 60)
    return total, cpu


async def throughput(args: argparse.Namespace) -> dict[str, object]:
    total, cpu = await drive_pairs("bench.wsload", args)
    return {"test": "ws_throughput", "label": args.label, "target": urlsplit(args.url).netloc,
            "url": args.url,
            "pairs": args.pairs, "window": args.window, "duration_s": args.duration,
            "delivered": total, "msgs_per_s": round(total / args.duration, 1),
            "server_cpu_pct": round(100 * cpu / (args.warmup + args.duration), 1)}


def _cpu_s(pid: int) -> float:
    total = 0
    for p in _tree(pid):
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--domain", default="localhost")
    ap.add_argument("--clients", type=int, default=2000)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=100)
    ap.add_argument("--pid", type=int, default=0, help="the server's process id")
    ap.add_argument("--settle", type=float, default=5.0)
    ap.add_argument("--probes", type=int, default=20,
                    help="timed logins once the idle sessions are in (the idle row)")
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
    if args.mode == "throughput":
        try:
            import uvloop
            uvloop.install()
        except ImportError:
            pass
        result = asyncio.run(throughput(args))
    else:
        result = asyncio.run(run(args))
    print(json.dumps(result))
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
