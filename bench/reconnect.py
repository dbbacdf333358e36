"""bench/reconnect.py - what a phone's reconnection costs: round trips and server CPU.

Issue 21, Performance: a reconnect as a mobile client does it, over direct TLS (XEP-0368, the
TLS handshake is the same for both), measured two ways against one ``hongyan serve`` started
here (SQLite, one worker, a fresh data directory):

* ``classic``: stream header, SCRAM-SHA-256-PLUS (RFC 6120 SASL, tls-exporter), stream
  restart, resource bind, XEP-0198 ``<enable resume/>``;
* ``baseline``: TLS and the stream header only (what both pay before authenticating);
* ``fast``: stream header, one SASL2 ``<authenticate/>`` with a FAST token
  (HT-SHA-256-EXPR, XEP-0484) and Bind2 with SM enabled inline (XEP-0386).

A round trip is one wait of the client for the server's answer after it wrote (the TLS
handshake is counted apart). Server CPU is the server process's user+system time
(``/proc/PID/stat``) over ``--n`` reconnects, divided by ``--n``. Each login ends with
``</stream:stream>``. Prints one JSON object.

    python -m bench.reconnect --n 300
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from hongyan.transport.exporter import tls_exporter

USER, PASSWORD = "phone", "bench-password"
HEADER = (b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
          b"xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>")
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
SASL2 = "urn:xmpp:sasl:2"


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


class Conn:
    """A client connection that counts its round trips."""

    def __init__(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.r, self.w = r, w
        self.buf = b""
        self.round_trips = 0

    @classmethod
    async def open(cls, port: int) -> Conn:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        r, w = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
        return cls(r, w)

    def exporter(self) -> bytes:
        data = tls_exporter(self.w.get_extra_info("ssl_object"))
        assert data is not None
        return data

    async def ask(self, data: bytes | str, until: bytes) -> bytes:
        """Write, then wait for ``until``: one round trip."""
        self.w.write(data.encode() if isinstance(data, str) else data)
        self.round_trips += 1
        while until not in self.buf:
            chunk = await asyncio.wait_for(self.r.read(65536), 10)
            if not chunk:
                raise ConnectionError(f"closed while waiting for {until!r}: {self.buf[-300:]!r}")
            self.buf += chunk
        i = self.buf.index(until) + len(until)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    async def close(self) -> None:
        self.w.write(b"</stream:stream>")
        self.w.close()
        with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
            await asyncio.wait_for(self.w.wait_closed(), 5)


def scram_client(password: str, first_bare: str, gs2: str, cb: bytes, server_first: str
                 ) -> tuple[str, bytes]:
    attrs = dict(p.split("=", 1) for p in server_first.split(","))
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(attrs["s"]),
                                 int(attrs["i"]))
    ck = hmac.new(salted, b"Client Key", "sha256").digest()
    without = f"c={b64(gs2.encode() + cb)},r={attrs['r']}"
    msg = f"{first_bare},{server_first},{without}".encode()
    sig = hmac.new(hashlib.sha256(ck).digest(), msg, "sha256").digest()
    proof = bytes(a ^ b for a, b in zip(ck, sig, strict=True))
    return without + ",p=" + b64(proof), salted


async def baseline(port: int) -> int:
    """TLS handshake and stream header only: what both flows pay before authenticating."""
    c = await Conn.open(port)
    await c.ask(HEADER, b"</stream:features>")
    await c.close()
    return c.round_trips


async def classic(port: int) -> int:
    c = await Conn.open(port)
    await c.ask(HEADER, b"</stream:features>")
    gs2, first = "p=tls-exporter,,", f"n={USER},r={b64(os.urandom(18))}"
    ch = await c.ask(f"<auth xmlns='{SASL}' mechanism='SCRAM-SHA-256-PLUS'>{b64(gs2 + first)}"
                     "</auth>", b"</challenge>")
    m = re.search(rb">([^<]+)</challenge>", ch)
    assert m is not None, ch
    final, _ = scram_client(PASSWORD, first, gs2, c.exporter(),
                            base64.b64decode(m.group(1)).decode())
    ok = await c.ask(f"<response xmlns='{SASL}'>{b64(final)}</response>", b"</success>")
    assert b"<success" in ok, ok
    await c.ask(HEADER, b"</stream:features>")
    await c.ask("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                "<resource>phone</resource></bind></iq>", b"</iq>")
    en = await c.ask("<enable xmlns='urn:xmpp:sm:3' resume='true'/>", b"/>")
    assert b"<enabled" in en, en
    await c.close()
    return c.round_trips


async def get_token(port: int, agent: str) -> str:
    c = await Conn.open(port)
    await c.ask(HEADER, b"</stream:features>")
    gs2, first = "p=tls-exporter,,", f"n={USER},r={b64(os.urandom(18))}"
    ch = await c.ask(f"<authenticate xmlns='{SASL2}' mechanism='SCRAM-SHA-256-PLUS'>"
                     f"<initial-response>{b64(gs2 + first)}</initial-response>"
                     f"<user-agent id='{agent}'/><request-token xmlns='urn:xmpp:fast:0' "
                     "mechanism='HT-SHA-256-EXPR'/></authenticate>", b"</challenge>")
    m = re.search(rb">([^<]+)</challenge>", ch)
    assert m is not None, ch
    final, _ = scram_client(PASSWORD, first, gs2, c.exporter(),
                            base64.b64decode(m.group(1)).decode())
    ok = await c.ask(f"<response xmlns='{SASL2}'>{b64(final)}</response>", b"</success>")
    t = re.search(rb"token='([^']+)'", ok)
    assert t is not None, ok
    await c.close()
    return t.group(1).decode()


async def fast(port: int, agent: str, token: str) -> int:
    c = await Conn.open(port)
    await c.ask(HEADER, b"</stream:features>")
    proof = hmac.new(token.encode(), b"Initiator" + c.exporter(), "sha256").digest()
    initial = b64(USER.encode() + b"\0" + proof)
    ok = await c.ask(
        f"<authenticate xmlns='{SASL2}' mechanism='HT-SHA-256-EXPR'><initial-response>"
        f"{initial}</initial-response><user-agent id='{agent}'/>"
        "<fast xmlns='urn:xmpp:fast:0'/><bind xmlns='urn:xmpp:bind:0'><tag>Phone</tag>"
        "<enable xmlns='urn:xmpp:sm:3' resume='true'/></bind></authenticate>",
        b"</stream:features>")
    assert b"<enabled xmlns='urn:xmpp:sm:3'" in ok, ok
    await c.close()
    return c.round_trips


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def measure(name: str, n: int, pid: int, once: Any) -> dict[str, Any]:
    for _ in range(10):  # warm up
        await once()
    cpu0, t0 = cpu_seconds(pid), time.perf_counter()
    lat: list[float] = []
    rts = set()
    for _ in range(n):
        s = time.perf_counter()
        rts.add(await once())
        lat.append((time.perf_counter() - s) * 1000)
    wall = time.perf_counter() - t0
    cpu = cpu_seconds(pid) - cpu0
    return {"flow": name, "round_trips": sorted(rts), "server_cpu_ms_per_reconnect":
            round(cpu * 1000 / n, 3), "median_ms": round(statistics.median(lat), 2),
            "reconnects_per_s": round(n / wall, 1)}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="hongyan-reconnect-"))
    cfg = tmp / "hongyan.toml"
    tls_port = free_port()
    cfg.write_text(f"""
[server]
domain = "localhost"
data_dir = "{tmp / 'data'}"
log_level = "warning"
[c2s]
bind = ["127.0.0.1"]
port = {free_port()}
direct_tls_port = {tls_port}
[http]
enabled = false
[storage]
url = "sqlite:///{tmp / 'data' / 'hongyan.db'}"
""")
    py = [sys.executable, "-m", "hongyan"]
    subprocess.run([*py, "adduser", f"{USER}@localhost", "--config", str(cfg)],
                   input=PASSWORD + "\n", text=True, check=True, capture_output=True)
    proc = await asyncio.create_subprocess_exec(*py, "serve", "--config", str(cfg),
                                                stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    try:
        assert proc.stdout is not None
        while b"serving" not in await asyncio.wait_for(proc.stdout.readline(), 30):
            pass
        agent = str(uuid.uuid4())
        token = await get_token(tls_port, agent)
        out = []
        for _ in range(args.rounds):  # alternate, so that load from elsewhere hits both
            out.append(await measure("baseline", args.n, proc.pid, lambda: baseline(tls_port)))
            out.append(await measure("classic", args.n, proc.pid, lambda: classic(tls_port)))
            out.append(await measure("fast", args.n, proc.pid,
                                     lambda: fast(tls_port, agent, token)))
        by: dict[str, list[dict[str, Any]]] = {}
        for r in out:
            by.setdefault(r["flow"], []).append(r)
        summary = {k: {"round_trips": v[0]["round_trips"],
                       "server_cpu_ms_per_reconnect": statistics.median(
                           x["server_cpu_ms_per_reconnect"] for x in v),
                       "median_ms": statistics.median(x["median_ms"] for x in v),
                       "reconnects_per_s": statistics.median(x["reconnects_per_s"] for x in v)}
                   for k, v in by.items()}
        c, f, b = summary["classic"], summary["fast"], summary["baseline"]
        return {"n": args.n, "rounds": args.rounds, "runs": out, "summary": summary,
                "ratio_cpu_fast_over_classic": round(
                    f["server_cpu_ms_per_reconnect"] / c["server_cpu_ms_per_reconnect"], 3),
                "ratio_cpu_beyond_baseline": round(
                    (f["server_cpu_ms_per_reconnect"] - b["server_cpu_ms_per_reconnect"])
                    / (c["server_cpu_ms_per_reconnect"] - b["server_cpu_ms_per_reconnect"]), 3),
                "ratio_latency_fast_over_classic": round(f["median_ms"] / c["median_ms"], 3)}
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=300, help="reconnects per flow and round")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of both flows")
    print(json.dumps(asyncio.run(run(ap.parse_args())), indent=1))


if __name__ == "__main__":
    main()
