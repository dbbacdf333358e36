"""bench/session_mem.py - Python heap per idle session, counted by tracemalloc.

The RSS row of ``bench/compare.sh`` ("mem10000") is the headline figure, but it moves by
0.3-0.6 KB between two runs of the same commit (allocator fragmentation, OpenSSL buffers, the
load of the machine). This counts only what the server's own Python objects hold per session,
which is repeatable to a few bytes, so that two commits can be told apart: a node in this
process (SQLite, no TLS, as the comparison rows run); a child process opens ``--clients`` real
TCP connections that log in the way ``xmppload.py login`` does (stream, SASL PLAIN, bind,
initial presence, roster get) and then stay silent; the node's heap is measured before the
first and after the last login (after a collection), and the difference divided by the number
of sessions.

    .venv/bin/python -m bench.session_mem --clients 2000 [--transport ws|ws-aiohttp]

``--transport ws``: the same over WebSocket (the HTTP listener, the logins of
``bench/wsload.py``), through the lean front door; ``ws-aiohttp``: through aiohttp's
WebSocketResponse (``http.websocket_lean = false``); ``tls``: direct TLS (the self-signed
certificate). ``--top N`` lists the N allocation sites (file:line) that grew most. ``--rss``
counts the growth of the process's RSS instead (tracemalloc off): what glibc, OpenSSL and
uvloop hold in C is in it, and what the traced heap is not.

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import ctypes
import gc
import json
import ssl
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import aiohttp

from hongyan.config.loader import load_config
from hongyan.server.node import Node

CONFIG = """
[server]
domain = "localhost"
data_dir = "{data}"
log_level = "warning"
[c2s]
bind = ["127.0.0.1"]
port = 0
direct_tls = {tls}
direct_tls_port = 0
require_encryption = false
allow_plaintext_auth = true
[http]
enabled = {http}
bind = ["127.0.0.1"]
port = 0
tls = false
websocket_lean = {lean}
[storage]
url = "sqlite:///{data}/hongyan.db"
[auth]
failure_delay = 0.0
[modules]
disabled = ["mam"]
"""


def _rss() -> int:
    """This process's resident set, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def _malloc_in_use() -> tuple[int, int]:
    """glibc's bytes in use from its heaps, and in mmap()ed chunks (``mallinfo2``); (0, 0)
    without glibc. OpenSSL and uvloop allocate with malloc, pymalloc's arenas do not."""
    try:
        libc = ctypes.CDLL(None)
        fn = libc.mallinfo2
    except (OSError, AttributeError):
        return 0, 0
    fn.restype = _MallInfo2
    info = fn()
    return int(info.uordblks), int(info.hblkhd)


async def _read_until(reader: asyncio.StreamReader, marker: bytes, buf: bytearray) -> None:
    while marker not in buf:
        chunk = await asyncio.wait_for(reader.read(65536), 10)
        if not chunk:
            raise ConnectionError("closed during login")
        buf += chunk
    del buf[:buf.index(marker) + len(marker)]


def _client_tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def login(port: int, user: str, tls: ssl.SSLContext | None = None
                ) -> asyncio.StreamWriter:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls)
    buf = bytearray()
    header = (b"<?xml version='1.0'?><stream:stream to='localhost' version='1.0' "
              b"xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>")
    writer.write(header)
    await _read_until(reader, b"</stream:features>", buf)
    cred = base64.b64encode(f"\0{user}\0pass".encode())
    writer.write(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" + cred
                 + b"</auth>")
    await _read_until(reader, b"<success", buf)
    writer.write(header)
    await _read_until(reader, b"</stream:features>", buf)
    writer.write(b"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                 b"<resource>r</resource></bind></iq>")
    await _read_until(reader, b"</iq>", buf)
    writer.write(b"<presence/><iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>")
    await _read_until(reader, b"id='r'", buf)
    return writer


async def hold(port: int, clients: int, websocket: bool, tls: bool = False) -> None:
    """The child: log ``clients`` sessions in (user1..), say so, stay until stdin closes
    (``websocket``: ``port`` is the HTTP port; the logins of ``bench/wsload.py``)."""
    if websocket:
        from bench.wsload import login as ws_login
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            url = f"ws://127.0.0.1:{port}/xmpp-websocket"
            sockets = [await ws_login(http, url, "localhost", f"user{i}")
                       for i in range(1, clients + 1)]
            print("ready", flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
            for ws in sockets:
                await ws.close()
        return
    ctx = _client_tls() if tls else None
    writers = [await login(port, f"user{i}", ctx) for i in range(1, clients + 1)]
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for w in writers:
        w.close()


async def run(clients: int, settle: float, transport: str = "tcp",
              top: int = 0, rss: bool = False) -> dict[str, object]:
    websocket = transport.startswith("ws")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        cfg_path = data / "hongyan.toml"
        cfg_path.write_text(CONFIG.format(data=data, http=str(websocket).lower(),
                                          lean=str(transport != "ws-aiohttp").lower(),
                                          tls=str(transport == "tls").lower()))
        node = Node(load_config(cfg_path))
        await node.start()
        port = (node.http_port if websocket
                else node.direct_tls_port if transport == "tls" else node.c2s_port)
        try:
            for i in range(clients + 1):
                await node.accounts.create(f"user{i}", "pass", time.time())
            # one login first, so that caches and lazily built tables are not counted
            first = (await login(port, "user0", _client_tls()) if transport == "tls"
                     else await login(node.c2s_port, "user0"))
            await asyncio.sleep(0.2)
            gc.collect()
            rss0 = _rss()
            heap0, mapped0 = _malloc_in_use()
            if rss:
                pass  # no tracing: its own bookkeeping would be in the RSS
            elif top:
                tracemalloc.start(1)
                snap0 = tracemalloc.take_snapshot()
            else:
                tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
            child = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.session_mem", "--hold", str(port),
                "--clients", str(clients), "--transport", transport,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE)
            assert child.stdout is not None and child.stdin is not None
            line = await asyncio.wait_for(child.stdout.readline(), 600)
            if line.strip() != b"ready":
                raise RuntimeError(f"the clients did not log in: {line!r}")
            await asyncio.sleep(settle)  # idle parsers rest (c2s.idle_parser_release)
            gc.collect()
            after = tracemalloc.get_traced_memory()[0]
            rss1 = _rss()
            heap1, mapped1 = _malloc_in_use()
            sessions = node.sessions.count() - 1
            sites: list[dict[str, object]] = []
            if top:
                diff = tracemalloc.take_snapshot().compare_to(snap0, "lineno")
                for stat in diff[:top]:
                    frame = stat.traceback[0]
                    sites.append({"site": f"{frame.filename.split('site-packages/')[-1]}"
                                          f":{frame.lineno}",
                                  "bytes_per_session": round(stat.size_diff / clients, 1),
                                  "blocks_per_session": round(stat.count_diff / clients, 2)})
            tracemalloc.stop()
            child.stdin.close()
            await asyncio.wait_for(child.wait(), 60)
            first.close()
        finally:
            await node.stop()
    out: dict[str, object] = {"transport": transport, "clients": clients, "sessions": sessions,
                              "heap_bytes_per_session": round((after - before) / clients)}
    if rss:
        del out["heap_bytes_per_session"]
        out["rss_bytes_per_session"] = round((rss1 - rss0) / clients)
        out["malloc_heap_bytes_per_session"] = round((heap1 - heap0) / clients)
        out["malloc_mmap_bytes_per_session"] = round((mapped1 - mapped0) / clients)
    if top:
        out["top_sites"] = sites
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=2000)
    ap.add_argument("--settle", type=float, default=3.0)
    ap.add_argument("--transport", choices=("tcp", "tls", "ws", "ws-aiohttp"), default="tcp",
                    help="how the clients connect: TCP, direct TLS (XEP-0368, the "
                    "self-signed certificate), WebSocket through the lean front door "
                    "(http.websocket_lean), or WebSocket through aiohttp")
    ap.add_argument("--top", type=int, default=0,
                    help="also list the N allocation sites (file:line) that grew most, "
                    "with bytes and blocks per session")
    ap.add_argument("--rss", action="store_true",
                    help="instead of the traced heap, the growth of this process's RSS per "
                    "session (tracemalloc off); glibc's and OpenSSL's memory are in it")
    ap.add_argument("--hold", type=int, default=0, help="(the child process: the port)")
    args = ap.parse_args()
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    if args.hold:
        asyncio.run(hold(args.hold, args.clients, args.transport.startswith("ws"),
                         args.transport == "tls"))
    else:
        print(json.dumps(asyncio.run(run(args.clients, args.settle, args.transport,
                                            args.top, args.rss))))


if __name__ == "__main__":
    main()
