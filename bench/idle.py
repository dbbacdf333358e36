"""bench/idle.py - hold many idle logged-in sessions; measure server RSS and a new login's latency.

The row "100,000 idle sessions" of the performance issue: one loopback source address gives at
most ~28,000 connections to one server port (the kernel's ephemeral range), so clients are spread
over several 127.0.0.x source addresses. Each client logs in the way ``xmppload.py login`` does
(stream, SASL PLAIN, bind, initial presence, roster get) and then stays silent. When all are in,
the server's RSS is sampled after a settle time, and then ``--probes`` new logins are timed one
after another (connect to roster result) while the others stay connected.

    python -m bench.idle --port 35222 --clients 100000 --pidfile /path/hongyan.pid

Accounts user1..userN / pass must exist (``xmppload.py register --users N``).
Prints one JSON object; with --json FILE also appends it there. Every phase is bounded by
--deadline seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import resource
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any, cast

PER_SOURCE = 25_000  # below the 28,232 ports of the default ephemeral range
PER_PROCESS = 18_000  # below a 20,000-file limit per process


def fd_limit(pid: int) -> int | None:
    """The process's soft limit on open files (each session holds one)."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    return None


def rss_kb(pid: int) -> int:
    """RSS of ``pid`` and all its descendants (a multi-worker server is a process tree: the
    supervisor, its workers and their database writers)."""
    total = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return total
    return total + sum(rss_kb(int(c)) for c in children)


def tree(pid: int) -> list[int]:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return [pid]
    return [pid, *(p for c in children for p in tree(int(c)))]


class Login(asyncio.Protocol):
    """A byte-level login (no XML parser: the generator must stay cheap)."""

    __slots__ = ("buf", "domain", "done", "password", "step", "tr", "user")

    def __init__(self, user: str, password: str, domain: str) -> None:
        self.user = user
        self.password = password
        self.domain = domain
        self.buf = b""
        self.step = "feat1"
        self.tr: asyncio.Transport | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def _header(self) -> None:
        assert self.tr is not None
        self.tr.write(b"<?xml version='1.0'?><stream:stream to='%s' version='1.0' "
                      b"xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
                      % self.domain.encode())

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.tr = cast(asyncio.Transport, transport)  # uvloop's are not asyncio.Transport
        sock = self.tr.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._header()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(ConnectionError(f"closed during {self.step}: {exc}"))

    def _fail(self, why: str) -> None:
        if not self.done.done():
            self.done.set_exception(RuntimeError(f"{self.user}: {why}"))
        if self.tr is not None:
            self.tr.abort()

    def data_received(self, data: bytes) -> None:
        if self.step == "idle":
            return  # nothing is expected; whatever comes (a ping, say) is ignored
        assert self.tr is not None
        b = self.buf = self.buf + data
        if b"<stream:error" in b:
            return self._fail(f"stream error {b[b.find(b'<stream:error'):][:200]!r}")
        if self.step in ("feat1", "feat2"):
            if b"</stream:features>" not in b:
                return
            self.buf = b""
            if self.step == "feat1":
                token = base64.b64encode(f"\0{self.user}\0{self.password}".encode())
                self.tr.write(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' "
                              b"mechanism='PLAIN'>%s</auth>" % token)
                self.step = "auth"
            else:
                self.tr.write(b"<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:"
                              b"xmpp-bind'><resource>idle</resource></bind></iq>")
                self.step = "bind"
        elif self.step == "auth":
            if b"<failure" in b:
                return self._fail(f"auth failure {b[:200]!r}")
            if b"<success" in b:
                self.buf = b""
                self.step = "feat2"
                self._header()
        elif self.step == "bind":
            if b"id='b1'" in b or b'id="b1"' in b:
                if b"type='error'" in b or b'type="error"' in b:
                    return self._fail(f"bind error {b[:200]!r}")
                self.buf = b""
                self.tr.write(b"<presence/><iq type='get' id='r1'>"
                              b"<query xmlns='jabber:iq:roster'/></iq>")
                self.step = "roster"
        elif self.step == "roster" and (b"id='r1'" in b or b'id="r1"' in b):
            self.buf = b""
            self.step = "idle"
            self.done.set_result(None)


async def login(host: str, port: int, source: str, user: str, password: str, domain: str,
                timeout: float) -> Login:
    loop = asyncio.get_running_loop()
    _, proto = await asyncio.wait_for(loop.create_connection(
        lambda: Login(user, password, domain), host, port, local_addr=(source, 0)), timeout)
    try:
        await asyncio.wait_for(asyncio.shield(proto.done), timeout)
    except BaseException:
        if proto.tr is not None:
            proto.tr.abort()
        raise
    return proto


def sources_for(n: int) -> list[str]:
    return [f"127.0.0.{i + 2}" for i in range((n + PER_SOURCE - 1) // PER_SOURCE)]


async def hold(args: argparse.Namespace, first: int, count: int, sources: list[str]
               ) -> tuple[list[Login], dict[str, int], float]:
    """Log ``count`` clients in (user{first}..), ``args.concurrency`` at a time."""
    held: list[Login] = []
    errors: dict[str, int] = {}
    next_idx = iter(range(first, first + count))
    t0 = time.monotonic()
    deadline = t0 + args.deadline

    async def runner() -> None:
        for idx in next_idx:
            if time.monotonic() > deadline:
                errors["deadline"] = errors.get("deadline", 0) + 1
                continue
            source = sources[(idx - first) // PER_SOURCE]
            try:
                held.append(await login(args.host, args.port, source, f"{args.prefix}{idx}",
                                        args.password, args.domain, args.timeout))
            except Exception as e:
                key = f"{type(e).__name__}: {e}"[:80]
                errors[key] = errors.get(key, 0) + 1

    await asyncio.gather(*(runner() for _ in range(args.concurrency)))
    return held, errors, time.monotonic() - t0


async def hold_child(args: argparse.Namespace) -> int:
    """``--hold-part``: one of several generator processes (each process may open only so
    many files): log its share in, report, keep them until stdin closes."""
    part = args.hold_part
    held, errors, login_s = await hold(args, args.first, args.clients, [f"127.0.0.{2 + part}"])
    print(json.dumps({"ok": len(held), "errors": errors, "login_s": login_s}), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    for p in held:
        if p.tr is not None:
            p.tr.abort()
    return 0


async def run(args: argparse.Namespace) -> dict[str, Any]:
    procs = args.procs or -(-args.clients // PER_PROCESS)
    pid = int(Path(args.pidfile).read_text()) if args.pidfile else 0
    base = rss_kb(pid) if pid else 0
    t0 = time.monotonic()
    errors: dict[str, int] = {}
    held: list[Login] = []
    children: list[asyncio.subprocess.Process] = []
    if procs <= 1:
        sources = sources_for(args.clients + args.probes)
        held, errors, login_s = await hold(args, args.first, args.clients, sources)
        ok = len(held)
        probe_source = sources[-1]
    else:
        share = -(-args.clients // procs)
        common = ["--host", args.host, "--port", str(args.port), "--domain", args.domain,
                  "--prefix", args.prefix, "--password", args.password, "--timeout",
                  str(args.timeout), "--deadline", str(args.deadline), "--concurrency",
                  str(max(1, args.concurrency // procs))]
        for k in range(procs):
            n = min(share, args.clients - k * share)
            children.append(await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.idle", *common, "--first",
                str(args.first + k * share), "--clients", str(n), "--hold-part", str(k),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE))
        ok = 0
        for child in children:
            assert child.stdout is not None
            line = await asyncio.wait_for(child.stdout.readline(), args.deadline + 60)
            report: dict[str, Any] = (json.loads(line) if line
                                      else {"ok": 0, "errors": {"no report": 1}})
            ok += int(report["ok"])
            for key, n in report["errors"].items():
                errors[key] = errors.get(key, 0) + n
        login_s = time.monotonic() - t0
        probe_source = f"127.0.0.{2 + procs}"
    await asyncio.sleep(args.settle)
    idle = rss_kb(pid) if pid else 0
    # new logins while everything else stays connected: one at a time, each timed
    probe_ms: list[float] = []
    for i in range(args.probes):
        idx = args.first + args.clients + i
        t = time.perf_counter()
        try:
            p = await login(args.host, args.port, probe_source, f"{args.prefix}{idx}",
                            args.password, args.domain, args.timeout)
        except Exception as e:
            key = f"probe {type(e).__name__}: {e}"[:80]
            errors[key] = errors.get(key, 0) + 1
            continue
        probe_ms.append((time.perf_counter() - t) * 1000)
        held.append(p)
        await asyncio.sleep(0.2)
    out: dict[str, Any] = {
        "test": "idle", "label": args.label, "target": f"{args.host}:{args.port}",
        "clients": args.clients, "ok": ok, "generator_processes": max(procs, 1),
        "server_processes": len(tree(pid)) if pid else None,
        "server_fd_limit": fd_limit(pid) if pid else None,
        "failed": args.clients - ok, "errors": errors,
        "login_s": round(login_s, 1), "logins_per_s": round(ok / login_s, 1) if login_s else None,
        "server_rss_base_kb": base, "server_rss_idle_kb": idle,
        "server_rss_idle_mb": round(idle / 1024, 1),
        "rss_per_conn_kb": round((idle - base) / ok, 2) if ok and pid else None,
        "probe_login_ms_p50": round(statistics.median(probe_ms), 2) if probe_ms else None,
        "probe_login_ms_max": round(max(probe_ms), 2) if probe_ms else None,
        "probes": len(probe_ms),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    for p in held:
        if p.tr is not None:
            p.tr.abort()
    for child in children:
        assert child.stdin is not None
        child.stdin.close()
    for child in children:
        await asyncio.wait_for(child.wait(), 120)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=5222)
    ap.add_argument("--domain", default="localhost")
    ap.add_argument("--prefix", default="user")
    ap.add_argument("--password", default="pass")
    ap.add_argument("--first", type=int, default=1)
    ap.add_argument("--clients", type=int, default=100_000)
    ap.add_argument("--probes", type=int, default=20, help="new logins timed at the end")
    ap.add_argument("--concurrency", type=int, default=100)
    ap.add_argument("--settle", type=float, default=10.0)
    ap.add_argument("--timeout", type=float, default=60.0, help="per login, seconds")
    ap.add_argument("--deadline", type=float, default=1800.0, help="for all logins, seconds")
    ap.add_argument("--pidfile", default="", help="server pid file, for its RSS")
    ap.add_argument("--label", default="idle")
    ap.add_argument("--json", default="", help="append the result to this file")
    ap.add_argument("--procs", type=int, default=0,
                    help="generator processes (default: one per 18,000 clients)")
    ap.add_argument("--hold-part", type=int, default=-1, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    procs = args.procs or -(-args.clients // PER_PROCESS)
    want = (args.clients if args.hold_part >= 0 or procs <= 1 else 0) + args.probes + 1000
    if soft < want:
        try:  # as root, the hard limit may be raised too
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want, hard)))
        except (ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft < want:
        print(f"bench.idle: {args.clients} clients need {want} open files, but this process may "
              f"open only {soft} (hard limit; raising it needs CAP_SYS_RESOURCE)",
              file=sys.stderr)
        return 2
    try:
        import uvloop
    except ImportError:
        pass
    else:
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    if args.hold_part >= 0:
        return asyncio.run(hold_child(args))
    out = asyncio.run(run(args))
    line = json.dumps(out, sort_keys=True)
    print(line)
    if args.json:
        with open(args.json, "a") as f:
            f.write(line + "\n")
    return 0 if out["failed"] == 0 and out["probes"] == args.probes else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
