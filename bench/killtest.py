"""bench/killtest.py - ``kill -9`` under load: no message the server acknowledged may be lost.

Issue 25 item 10. One run: the real server starts as a subprocess (``hongyan serve``, SQLite
or PostgreSQL, ``--workers``); ``--recipients`` accounts, half of them online (stream
management enabled, presence sent, answering every ``<r/>``), the other half offline; then
``--senders`` clients with XEP-0198 enabled send numbered chat messages round-robin to the
recipients (at most ``--window`` unacknowledged), asking for an ack (``<r/>``) every
``--every`` messages, and note the highest ``<a h/>`` each got. At a random moment between
``--kill-after`` and twice that, every process of the server (supervisor, workers, database
writers) gets SIGKILL. The server starts again; every recipient logs in, sends its initial
presence (offline messages arrive), and pages through its whole archive (XEP-0313). A message
is *acknowledged* when its sequence number is at most its sender's last ``h`` less one (after
``<enable/>`` each sender sends one acknowledged warm-up message to itself, which starts the
archive's writer process, then nothing but the numbered messages). It is
*lost* when it was acknowledged and its recipient saw it nowhere: not live before the kill,
not from offline storage, not in the archive. A *duplicate* is a message delivered (live or
from offline storage) more than once: allowed (delivery is at least once), counted.

    .venv/bin/python -m bench.killtest --runs 10 --storage sqlite
    .venv/bin/python -m bench.killtest --runs 10 --storage postgresql --workers 2

PostgreSQL: each run gets a fresh database on ``--pg-admin`` (default the tests' one,
``postgresql://postgres@127.0.0.1:5432/postgres``), dropped afterwards. Prints one JSON
line per run and a total; exits 1 when anything acknowledged was lost. Every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from bench.accounts import create as create_accounts
from bench.idle import tree

SM = "urn:xmpp:sm:3"
MAM = "urn:xmpp:mam:2"
STREAM = "http://etherx.jabber.org/streams"
CLIENT = "jabber:client"
PASSWORD = "pass"
HEADER = ("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
          "xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Conn:
    """One client stream: raw XML over TCP, parsed by ElementTree's pull parser. After
    :meth:`login` a reader task answers ``<r/>`` (counting every stanza received), notes
    ``<a h/>`` and hands messages and IQ results to the callbacks."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.parser: ET.XMLPullParser[ET.Element] = ET.XMLPullParser(("start", "end"))
        self.depth = 0
        self.ready: collections.deque[ET.Element] = collections.deque()
        self.h_in = 0  # stanzas received since <enable/>
        self.sm = False
        self.acked = 0  # the server's last <a h/>
        self.base = 0  # stanzas sent before the counted ones
        self.acked_event = asyncio.Event()
        self.requests: collections.deque[tuple[int, float]] = collections.deque()  # <r/> sent
        self.latencies: list[float] = []  # seconds from an <r/> to the <a/> that covers it
        self.messages: list[ET.Element] = []
        self.iq: dict[str, asyncio.Future[ET.Element]] = {}
        self.task: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()

    @classmethod
    async def open(cls, port: int) -> Conn:
        r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
        return cls(r, w)

    def send(self, data: str) -> None:
        self.writer.write(data.encode())

    def _restart(self) -> None:
        self.parser = ET.XMLPullParser(("start", "end"))
        self.depth = 0
        self.send(HEADER)

    async def _next(self, timeout: float = 10.0) -> ET.Element:
        """The next top-level element (for negotiation, before the reader task)."""
        deadline = time.monotonic() + timeout
        while not self.ready:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no element")
            data = await asyncio.wait_for(self.reader.read(65536), left)
            if not data:
                raise ConnectionError("closed during negotiation")
            self._feed(data)
        return self.ready.popleft()

    def _feed(self, data: bytes) -> None:
        self.parser.feed(data)
        for event in self.parser.read_events():
            ev, el = cast("tuple[str, ET.Element]", event)  # ("start" | "end", element)
            if ev == "start":
                self.depth += 1
            else:
                self.depth -= 1
                if self.depth == 1:
                    self.ready.append(el)

    async def login(self, user: str, resource: str, sm: bool) -> None:
        self._restart()
        await self._next()  # features
        token = base64.b64encode(f"\0{user}\0{PASSWORD}".encode()).decode()
        self.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}"
                  "</auth>")
        el = await self._next()
        if not el.tag.endswith("success"):
            raise ConnectionError(f"auth failed for {user}: {el.tag}")
        self._restart()
        await self._next()
        self.send(f"<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                  f"<resource>{resource}</resource></bind></iq>")
        el = await self._next()
        if el.get("type") != "result":
            raise ConnectionError(f"bind failed for {user}")
        if sm:
            self.send(f"<enable xmlns='{SM}'/>")
            el = await self._next()
            if el.tag != f"{{{SM}}}enabled":
                raise ConnectionError(f"sm refused for {user}: {el.tag}")
            self.sm = True
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            while True:
                while self.ready:
                    self._dispatch(self.ready.popleft())
                data = await self.reader.read(65536)
                if not data:
                    break
                try:
                    self._feed(data)
                except ET.ParseError:
                    break
        except (ConnectionError, OSError):
            pass
        finally:
            while self.ready:
                self._dispatch(self.ready.popleft())
            self.closed.set()
            self.acked_event.set()
            for fut in self.iq.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("closed"))

    def _dispatch(self, el: ET.Element) -> None:
        tag = el.tag
        if tag.startswith("{" + CLIENT + "}"):
            self.h_in += 1
            name = tag[len(CLIENT) + 2:]
            if name == "message":
                self.messages.append(el)
            elif name == "iq":
                fut = self.iq.pop(el.get("id", ""), None)
                if fut is not None and not fut.done():
                    fut.set_result(el)
        elif tag == f"{{{SM}}}r":
            with contextlib.suppress(Exception):
                self.send(f"<a xmlns='{SM}' h='{self.h_in}'/>")
        elif tag == f"{{{SM}}}a":
            self.acked = max(self.acked, int(el.get("h", "0")))
            now = time.perf_counter()
            while self.requests and self.requests[0][0] <= self.acked - self.base:
                self.latencies.append(now - self.requests.popleft()[1])
            self.acked_event.set()

    async def request(self, xml: str, iq_id: str, timeout: float = 30.0) -> ET.Element:
        fut: asyncio.Future[ET.Element] = asyncio.get_running_loop().create_future()
        self.iq[iq_id] = fut
        self.send(xml)
        return await asyncio.wait_for(fut, timeout)

    def abort(self) -> None:
        self.writer.transport.abort()


def body_of(el: ET.Element) -> str | None:
    body = el.find(f"{{{CLIENT}}}body")
    return None if body is None else body.text


@dataclass
class RunResult:
    sent: int = 0
    acked: int = 0
    lost: int = 0
    duplicates: int = 0
    live: int = 0
    offline: int = 0
    archive_only: int = 0
    unacked_arrived: int = 0
    killed_after_s: float = 0.0
    ack_ms_median: float = 0.0
    ack_ms_p99: float = 0.0
    msgs_per_s: float = 0.0
    lost_ids: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["lost_ids"] = self.lost_ids[:20]
        return d


class Server:
    def __init__(self, config: Path, port: int, log: Path) -> None:
        self.config = config
        self.port = port
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None

    def _served(self) -> int:
        try:
            return self.log.read_bytes().count(b"hongyan: serving")
        except OSError:
            return 0

    async def start(self, timeout: float = 60.0) -> None:
        before = self._served()
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "hongyan", "serve", "--config", str(self.config),
                stdout=out, stderr=out, start_new_session=True)
        deadline = time.monotonic() + timeout
        # listening (with workers the sockets exist before the workers accept on them) ...
        while self._served() <= before:
            if self.proc.returncode is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}: see {self.log}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not serving in {timeout} s: see {self.log}")
            await asyncio.sleep(0.05)
        while True:  # ... and a login goes through (with workers: to the home worker)
            if self.proc.returncode is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}: see {self.log}")
            try:
                c = await Conn.open(self.port)
                try:
                    await c.login("probe0", "probe", sm=False)
                finally:
                    c.abort()
                return
            except (OSError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server not ready in {timeout} s: see {self.log}"
                                       ) from None
                await asyncio.sleep(0.2)

    async def kill(self) -> int:
        """SIGKILL to every process of the server: the supervisor, its workers, and the
        database writers (in sessions of their own, so only the process tree finds them)."""
        assert self.proc is not None
        pids = tree(self.proc.pid)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        await asyncio.wait_for(self.proc.wait(), 10)
        for pid in pids[1:]:  # not our children: wait until they are gone
            for _ in range(100):
                if not Path(f"/proc/{pid}").exists():
                    break
                try:
                    if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
                        break
                except OSError:
                    break
                await asyncio.sleep(0.05)
        return len(pids)

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), 30)
        except TimeoutError:
            await self.kill()


def write_config(path: Path, data_dir: Path, url: str, port: int, workers: int,
                 archive: bool) -> None:
    disabled = "" if archive else '[modules]\ndisabled = ["mam"]\n'
    path.write_text(f"""
[server]
domain = "localhost"
data_dir = "{data_dir}"
log_level = "warning"
workers = {workers}

[c2s]
bind = ["127.0.0.1"]
port = {port}
direct_tls = false
require_encryption = false
allow_plaintext_auth = true
rate_bytes = 100000000
rate_burst = 100000000
rate_stanzas = 100000000
rate_stanzas_burst = 100000000
rate_bytes_per_ip = 100000000
rate_burst_per_ip = 100000000
rate_stanzas_per_ip = 100000000
rate_stanzas_burst_per_ip = 100000000

[http]
enabled = false

[storage]
url = "{url}"

[auth]
failure_delay = 0.05
failure_delay_max = 0.2

[offline]
quota = 1000000
{disabled}""")


async def collect(port: int, user: str, archive: bool) -> tuple[list[str], list[str]]:
    """Log ``user`` in after the restart: the bodies that came from offline storage, and
    those in its archive."""
    c = await Conn.open(port)
    try:
        await c.login(user, "after", sm=False)
        c.send("<presence/>")
        # offline messages are sent from the initial presence's handling; an IQ after it is
        # answered once that ran (one client's stanzas are handled in order)
        await c.request("<iq type='get' id='ping1'><ping xmlns='urn:xmpp:ping'/></iq>", "ping1")
        await asyncio.sleep(0.3)
        await c.request("<iq type='get' id='ping2'><ping xmlns='urn:xmpp:ping'/></iq>", "ping2")
        offline = [b for m in c.messages if (b := body_of(m)) is not None]
        archived: list[str] = []
        if archive:
            after = ""
            for page in range(10_000):
                rsm = f"<max>500</max>{f'<after>{after}</after>' if after else ''}"
                iq_id = f"mam{page}"
                c.messages.clear()
                res = await c.request(
                    f"<iq type='set' id='{iq_id}'><query xmlns='{MAM}' queryid='q'>"
                    f"<set xmlns='http://jabber.org/protocol/rsm'>{rsm}</set></query></iq>",
                    iq_id)
                for m in c.messages:
                    fwd = m.find(f"{{{MAM}}}result/{{urn:xmpp:forward:0}}forwarded/"
                                 f"{{{CLIENT}}}message")
                    if fwd is not None and (b := body_of(fwd)) is not None:
                        archived.append(b)
                fin = res.find(f"{{{MAM}}}fin")
                if fin is None or res.get("type") != "result":
                    raise RuntimeError(f"MAM query failed for {user}: {ET.tostring(res)!r}")
                last = fin.find("{http://jabber.org/protocol/rsm}set/"
                                "{http://jabber.org/protocol/rsm}last")
                if fin.get("complete") == "true" or last is None or not last.text:
                    break
                after = last.text
        return offline, archived
    finally:
        c.abort()


async def one_run(url: str, workdir: Path, *, run: int, senders: int, recipients: int,
                  window: int, every: int, kill_after: float, workers: int, archive: bool,
                  seed: int, rate: float = 0.0, max_messages: int = 1_000_000) -> RunResult:
    rng = random.Random(seed)
    port = free_port()
    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    config = workdir / "hongyan.toml"
    write_config(config, data, url, port, workers, archive)
    sprefix, rprefix = f"r{run}s", f"r{run}c"
    await create_accounts(str(config), 0, senders, sprefix, PASSWORD, 4)
    await create_accounts(str(config), 0, recipients, rprefix, PASSWORD, 4)
    await create_accounts(str(config), 0, 1, "probe", PASSWORD, 1)
    server = Server(config, port, workdir / "server.log")
    result = RunResult()
    online_n = (recipients + 1) // 2  # recipients 0..online_n-1 are online
    rcpt: list[Conn] = []
    send: list[Conn] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        await server.start()
        for j in range(online_n):
            c = await Conn.open(port)
            await c.login(f"{rprefix}{j}", "live", sm=True)
            c.send("<presence/>")
            rcpt.append(c)
        for i in range(senders):
            c = await Conn.open(port)
            await c.login(f"{sprefix}{i}", "load", sm=True)
            send.append(c)
        # One message each to themselves first, acknowledged: that starts what starts on the
        # first use (the archive's writer process, the links between workers), not counted.
        for i, c in enumerate(send):
            c.send(f"<message to='{sprefix}{i}@localhost' type='chat'><body>warm-up</body>"
                   f"</message><r xmlns='{SM}'/>")
        for c in send:
            while c.acked < 1 and not c.closed.is_set():
                c.acked_event.clear()
                await asyncio.wait_for(c.acked_event.wait(), 60)
            c.base = c.acked
        sent = [0] * senders
        stop = asyncio.Event()

        async def sender(i: int, c: Conn) -> None:
            seq = 0
            t0 = time.monotonic() + rng.random() / max(rate, 1.0)
            while not stop.is_set() and not c.closed.is_set() and seq < max_messages:
                if rate > 0 and (ahead := t0 + seq / rate - time.monotonic()) > 0:
                    await asyncio.sleep(ahead)
                    continue
                if seq - (c.acked - c.base) >= window:
                    c.acked_event.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(c.acked_event.wait(), 5)
                    continue
                seq += 1
                j = (i + seq) % recipients
                to = f"{rprefix}{j}@localhost" + ("/live" if seq % 3 == 0 and j < online_n
                                                  else "")
                try:
                    c.send(f"<message to='{to}' type='chat' id='{i}-{seq}'>"
                           f"<body>{i}:{seq}</body></message>"
                           + (f"<r xmlns='{SM}'/>" if seq % every == 0 else ""))
                except (ConnectionError, OSError):
                    break
                sent[i] = seq
                if seq % every == 0:
                    c.requests.append((seq, time.perf_counter()))
                    with contextlib.suppress(ConnectionError, OSError):
                        await c.writer.drain()
                    await asyncio.sleep(0)

        tasks = [asyncio.create_task(sender(i, c)) for i, c in enumerate(send)]
        delay = kill_after * (1 + rng.random())
        await asyncio.sleep(delay)
        result.killed_after_s = round(delay, 3)
        await server.kill()
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
        for c in [*send, *rcpt]:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(c.closed.wait(), 10)
        acked = [c.acked - c.base for c in send]
        lat = sorted(x for c in send for x in c.latencies)
        if lat:
            result.ack_ms_median = round(lat[len(lat) // 2] * 1000, 2)
            result.ack_ms_p99 = round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, 2)
        result.msgs_per_s = round(sum(sent) / delay)
        live: collections.Counter[str] = collections.Counter()
        for c in rcpt:
            for m in c.messages:
                b = body_of(m)
                if b is not None:
                    live[b] += 1
        for c in [*send, *rcpt]:
            c.abort()
        send, rcpt = [], []
        phase("killed")
        await server.start()
        phase("restarted")
        offline: collections.Counter[str] = collections.Counter()
        archived: set[str] = set()
        for j in range(recipients):
            off, arch = await collect(port, f"{rprefix}{j}", archive)
            offline.update(off)
            archived.update(arch)
        phase("collected")
        result.sent = sum(sent)
        result.acked = sum(acked)
        result.live = sum(live.values())
        result.offline = sum(offline.values())
        delivered = live + offline
        result.duplicates = sum(n - 1 for n in delivered.values() if n > 1)
        for i in range(senders):
            for seq in range(1, sent[i] + 1):
                key = f"{i}:{seq}"
                seen = key in delivered or key in archived
                if seq <= acked[i]:
                    if not seen:
                        result.lost += 1
                        result.lost_ids.append(key)
                    elif key not in delivered:
                        result.archive_only += 1
                elif seen:
                    result.unacked_arrived += 1
        return result
    finally:
        for t in tasks:
            t.cancel()
        for c in [*send, *rcpt]:
            c.abort()
        await server.stop()
        phase("stopped")


def phase(what: str) -> None:
    if os.environ.get("KILLTEST_DEBUG"):
        print(f"{time.monotonic():.2f} {what}", file=sys.stderr, flush=True)


async def pg_database(admin: str) -> str:
    import asyncpg

    name = "hongyan_kill_" + secrets.token_hex(4)
    conn = await asyncpg.connect(admin, timeout=10)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return admin.rsplit("/", 1)[0] + "/" + name


async def pg_drop(admin: str, url: str) -> None:
    import asyncpg

    name = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(admin, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def main_async(args: argparse.Namespace) -> int:
    totals = RunResult()
    for run in range(args.runs):
        workdir = Path(tempfile.mkdtemp(prefix="hongyan-kill-"))
        url = (f"sqlite:///{workdir / 'hongyan.db'}" if args.storage == "sqlite"
               else await pg_database(args.pg_admin))
        t0 = time.monotonic()
        try:
            r = await one_run(url, workdir, run=run, senders=args.senders,
                              recipients=args.recipients, window=args.window,
                              every=args.every, kill_after=args.kill_after,
                              workers=args.workers, archive=not args.no_archive,
                              seed=args.seed + run, rate=args.rate)
        finally:
            if args.storage == "postgresql":
                await pg_drop(args.pg_admin, url)
        line = {"run": run + 1, "storage": args.storage, "workers": args.workers,
                "archive": not args.no_archive, **r.as_dict(),
                "seconds": round(time.monotonic() - t0, 1)}
        print(json.dumps(line), flush=True)
        if r.lost and args.keep:
            print(f"kept {workdir}", flush=True)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        for k in ("sent", "acked", "lost", "duplicates", "live", "offline", "archive_only",
                  "unacked_arrived"):
            setattr(totals, k, getattr(totals, k) + getattr(r, k))
    total = {"runs": args.runs, "storage": args.storage, "workers": args.workers,
             **{k: v for k, v in totals.as_dict().items()
                if k not in ("killed_after_s", "lost_ids")}}
    print(json.dumps({"total": total}), flush=True)
    return 1 if totals.lost else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--storage", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--pg-admin", default=os.environ.get(
        "HONGYAN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"))
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--senders", type=int, default=20)
    ap.add_argument("--recipients", type=int, default=20)
    ap.add_argument("--window", type=int, default=50, help="unacknowledged messages a "
                    "sender may have in flight")
    ap.add_argument("--every", type=int, default=10, help="an <r/> after this many messages")
    ap.add_argument("--kill-after", type=float, default=2.0,
                    help="SIGKILL at a random moment between this and twice this (seconds)")
    ap.add_argument("--rate", type=float, default=0.0, help="messages per second per "
                    "sender (0: as fast as the window lets it)")
    ap.add_argument("--no-archive", action="store_true", help="[modules] disabled = ['mam']")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep a lossy run's directory")
    args = ap.parse_args(argv)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
