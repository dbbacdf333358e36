"""bench/upload.py - many concurrent XEP-0363 uploads; the server's peak RSS while they run.

The row "upload of 100 x 10 MB files concurrently with bounded server memory" of issue 18: by
default it starts its own server (``hongyan serve`` in a temporary folder, plain HTTP on
loopback, ``--workers`` processes), makes ``--users`` accounts, asks the upload service for
``--files`` slots over XMPP (a byte-level client: stream, SASL PLAIN, bind, then the slot
requests), and PUTs every file at once with aiohttp's client, each body streamed from one
reused 64 KiB chunk (the generator holds no file in memory either). The RSS of the server's
whole process tree is sampled every 20 ms before, during and after; one file is downloaded
again and compared. Prints one JSON object (with --json FILE, appended there too).

    .venv/bin/python -m bench.upload --files 100 --size 10485760

Everything runs on 127.0.0.1 and is bounded by --deadline seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import re
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import aiohttp

from bench.idle import rss_kb

UP = "urn:xmpp:http:upload:0"
PASSWORD = "bench-pass"
CHUNK = 64 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Sampler:
    """The server's RSS every ``every`` seconds, in a task, while it runs."""

    def __init__(self, pid: int, every: float = 0.02) -> None:
        self.pid = pid
        self.every = every
        self.peak = 0
        self.samples = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, rss_kb(self.pid))
            self.samples += 1
            await asyncio.sleep(self.every)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.peak = max(self.peak, rss_kb(self.pid))


class Xmpp:
    """Just enough XMPP: a plaintext login and IQs whose answers are matched by id."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.buf = b""

    @classmethod
    async def login(cls, port: int, user: str, domain: str) -> Xmpp:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        x = cls(r, w)
        header = (f"<stream:stream xmlns='jabber:client' xmlns:stream="
                  f"'http://etherx.jabber.org/streams' to='{domain}' version='1.0'>").encode()
        w.write(header)
        await x.until(b"</stream:features>")
        auth = base64.b64encode(f"\0{user}\0{PASSWORD}".encode()).decode()
        w.write(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{auth}"
                "</auth>".encode())
        got = await x.until(b"success", b"failure")
        if b"success" not in got:
            raise RuntimeError(f"login of {user} failed")
        x.buf = b""
        w.write(header)
        await x.until(b"</stream:features>")
        w.write(b"<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"
                b"</iq>")
        await x.until(b"</iq>")
        x.buf = b""
        return x

    async def until(self, *markers: bytes) -> bytes:
        while not any(m in self.buf for m in markers):
            data = await self.reader.read(65536)
            if not data:
                raise RuntimeError("the server closed the stream")
            self.buf += data
        return self.buf

    async def slots(self, host: str, names: list[str], size: int) -> list[tuple[str, str]]:
        """(PUT URL, GET URL) of one slot per name, asked for all at once."""
        for i, name in enumerate(names):
            self.writer.write(f"<iq type='get' id='s{i}' to='{host}'><request xmlns='{UP}' "
                              f"filename='{name}' size='{size}' content-type="
                              "'application/octet-stream'/></iq>".encode())
        found: dict[int, tuple[str, str]] = {}
        while len(found) < len(names):
            await self.until(b"</iq>")
            for m in re.finditer(rb"<iq[^>]*>.*?</iq>", self.buf, re.S):
                iq = ET.fromstring(m.group(0))
                i = int(iq.attrib["id"][1:])
                put, get = iq.find(f"{{{UP}}}slot/{{{UP}}}put"), iq.find(
                    f"{{{UP}}}slot/{{{UP}}}get")
                if put is None or get is None:
                    raise RuntimeError(f"no slot: {m.group(0)[:300]!r}")
                found[i] = (put.attrib["url"], get.attrib["url"])
            self.buf = self.buf[self.buf.rfind(b"</iq>") + 5:]
        return [found[i] for i in range(len(names))]

    def close(self) -> None:
        self.writer.close()


def body(size: int, seed: int) -> AsyncIterator[bytes]:
    """``size`` bytes from one reused chunk, its first 8 bytes the file's number."""
    chunk = seed.to_bytes(8, "big") + os.urandom(CHUNK - 8)

    async def gen() -> AsyncIterator[bytes]:
        left = size
        while left > 0:
            yield chunk[:left]
            left -= min(left, CHUNK)
    return gen()


def expected_digest(size: int, first: bytes) -> str:
    h = hashlib.sha256()
    left = size
    while left > 0:
        h.update(first[:left])
        left -= min(left, CHUNK)
    return h.hexdigest()


async def start_server(tmp: Path, workers: int, users: int, max_size: int
                       ) -> tuple[asyncio.subprocess.Process, int, int]:
    c2s, http = free_port(), free_port()
    cfg = tmp / "hongyan.toml"
    cfg.write_text(f"""
[server]
data_dir = "{tmp / 'data'}"
workers = {workers}
log_level = "warning"
[c2s]
bind = ["127.0.0.1"]
port = {c2s}
direct_tls = false
require_encryption = false
allow_plaintext_auth = true
[http]
bind = ["127.0.0.1"]
port = {http}
tls = false
[storage]
url = "sqlite:///{tmp / 'hongyan.db'}"
[upload]
max_file_size = {max_size}
quota_per_user = 0
quota_total = 0
""")
    for i in range(users):
        p = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hongyan", "adduser", f"up{i}@localhost", "--config",
            str(cfg), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL)
        await p.communicate(PASSWORD.encode() + b"\n")
        if p.returncode != 0:
            raise RuntimeError("adduser failed")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hongyan", "serve", "--config", str(cfg),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    assert proc.stdout is not None
    while b"serving" not in await asyncio.wait_for(proc.stdout.readline(), 60):
        if proc.returncode is not None:
            raise RuntimeError("the server did not start")
    return proc, c2s, http


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hy-upload-") as d:
        proc, c2s, _ = await start_server(Path(d), args.workers, args.users, args.size)
        try:
            return await asyncio.wait_for(measure(args, proc.pid, c2s), args.deadline)
        finally:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 30)


async def measure(args: argparse.Namespace, pid: int, c2s: int) -> dict[str, Any]:
    per_user = -(-args.files // args.users)
    clients = [await Xmpp.login(c2s, f"up{i}", "localhost") for i in range(args.users)]
    urls: list[tuple[str, str]] = []
    for i, c in enumerate(clients):
        names = [f"f{i}-{j}.bin" for j in range(per_user)][:args.files - len(urls)]
        urls += await c.slots("upload.localhost", names, args.size)
    await asyncio.sleep(1.0)  # settle, then the base line
    base = rss_kb(pid)
    sampler = Sampler(pid)
    sampler.start()
    conn = aiohttp.TCPConnector(limit=0)
    t0 = time.perf_counter()
    async with aiohttp.ClientSession(connector=conn) as http:
        async def put(n: int, url: str) -> int:
            async with http.put(url, data=body(args.size, n), headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(args.size)}) as r:
                return r.status
        statuses = await asyncio.gather(*(put(n, u) for n, (u, _) in enumerate(urls)))
        elapsed = time.perf_counter() - t0
        await sampler.stop()
        async with http.get(urls[0][1]) as r:
            got, head = hashlib.sha256(), b""
            async for chunk in r.content.iter_chunked(CHUNK):
                got.update(chunk)
                if len(head) < CHUNK:
                    head += chunk[:CHUNK - len(head)]
        ok_download = got.hexdigest() == expected_digest(args.size, head)
    for c in clients:
        c.close()
    created = sum(1 for s in statuses if s == 201)
    return {
        "bench": "upload", "files": args.files, "size": args.size, "workers": args.workers,
        "created": created, "statuses": sorted(set(statuses)), "seconds": round(elapsed, 2),
        "mb_per_s": round(created * args.size / elapsed / 1e6, 1),
        "server_rss_base_mb": round(base / 1024, 1),
        "server_rss_peak_mb": round(sampler.peak / 1024, 1),
        "server_rss_growth_mb": round((sampler.peak - base) / 1024, 1),
        "rss_samples": sampler.samples, "download_matches": ok_download,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=100)
    ap.add_argument("--size", type=int, default=10 * 1024 * 1024, help="bytes per file")
    ap.add_argument("--users", type=int, default=10)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--deadline", type=float, default=600.0)
    ap.add_argument("--json", default="", help="append the result to this file")
    args = ap.parse_args(argv)
    result = asyncio.run(run(args))
    line = json.dumps(result)
    print(line)
    if args.json:
        with open(args.json, "a") as f:
            f.write(line + "\n")
    ok = result["created"] == args.files and result["download_matches"]
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
