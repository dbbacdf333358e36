"""Issue 18 on the HTTP listener, at the byte level over raw sockets: the bounds of a request
head (a request line too long 414, a header field too large or too many of them 431, a head
too slow 408 and closed after ``[http] header_timeout``), the keep-alive idle timeout apart
from it, and other clients unaffected meanwhile (200 slowloris connections hanging while
``/health`` answers at once, an oversized head never swallowed whole). The node's clock is
stepped (``harness.clock``) for the head timeout; the keep-alive timeout is aiohttp's own
(the loop's time)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import aiohttp
import pytest

from tests.integration.clients import TIMEOUT
from tests.integration.conftest import Harness
from tests.integration.test_process import Server, http_port, process_config

HTTP = "tls = false\nheader_timeout = 10\n"


async def start(harness: Harness, extra: str = "") -> int:
    await harness.stop_node()
    node = await harness.start(http_extra=HTTP + extra)
    return node.http_port


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """The status of the server's answer and all it sent until it closed."""
    got = b""
    while True:
        data = await asyncio.wait_for(reader.read(65536), TIMEOUT)
        if not data:
            break
        got += data
    assert got.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")), got
    return int(got.split(b" ", 2)[1]), got


async def send_head(port: int, head: bytes) -> tuple[int, bytes]:
    reader, writer = await connect(port)
    writer.write(head)
    with contextlib.suppress(ConnectionError):
        await writer.drain()
    try:
        return await answer(reader)
    finally:
        writer.close()


async def health(port: int) -> int:
    async with aiohttp.ClientSession() as http, http.get(
            f"http://127.0.0.1:{port}/health") as r:
        return r.status


@pytest.mark.parametrize("path", ["/health", "/xmpp-websocket", "/upload/x"])
async def test_a_request_line_too_long_gets_414(harness: Harness, path: str) -> None:
    port = await start(harness, "max_request_line = 1024")
    status, _ = await send_head(
        port, f"GET {path}?q={'a' * 2000} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    assert status == 414
    if path == "/xmpp-websocket":  # an upgrade, and a line past the front door's 16 KiB head
        for head in (f"GET {path}?q={'a' * 2000} HTTP/1.1\r\nHost: localhost\r\n"
                     "Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
                     f"GET {path}?q={'a' * 20000}"):
            assert (await send_head(port, head.encode()))[0] == 414
    # just under the limit is fine
    status, _ = await send_head(
        port, f"GET /health?q={'a' * 900} HTTP/1.1\r\nHost: localhost\r\n"
              "Connection: close\r\n\r\n".encode())
    assert status == 200


async def test_header_fields_too_large_or_too_many_get_431(harness: Harness) -> None:
    port = await start(harness, "max_header_size = 1024\nmax_headers = 20")
    big = f"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Big: {'b' * 2000}\r\n\r\n"
    assert (await send_head(port, big.encode()))[0] == 431
    many = "GET /health HTTP/1.1\r\nHost: localhost\r\n" + "".join(
        f"X-H{i}: v\r\n" for i in range(40)) + "\r\n"
    assert (await send_head(port, many.encode()))[0] == 431
    # a head well past the limit, sent whole before the client reads: still a clean 431
    # (the rest is drained, not met with a reset)
    huge = f"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Big: {'b' * 200_000}\r\n\r\n"
    for _ in range(5):
        assert (await send_head(port, huge.encode()))[0] == 431
    fine = "GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n" + "".join(
        f"X-H{i}: {'v' * 900}\r\n" for i in range(15)) + "\r\n"
    assert (await send_head(port, fine.encode()))[0] == 200


async def test_an_endless_header_is_not_swallowed(harness: Harness) -> None:
    """A header line that never ends (64 MiB offered): 431 and the connection closed after
    the limit, long before the client could have sent it all (the server kept no more than
    its limit: the rest is refused by the closed socket)."""
    port = await start(harness)
    reader, writer = await connect(port)
    writer.write(b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Endless: ")
    sent, refused = 0, False
    chunk = b"e" * 65536
    try:
        while sent < 64 * 1024 * 1024:
            writer.write(chunk)
            await asyncio.wait_for(writer.drain(), TIMEOUT)
            sent += len(chunk)
    except (ConnectionError, RuntimeError):  # (uvloop: "the handler is closed")
        refused = True
    assert refused and sent < 16 * 1024 * 1024, sent
    with contextlib.suppress(ConnectionError):
        status, _ = await answer(reader)
        assert status == 431
    writer.close()
    assert await health(port) == 200


async def test_a_slow_head_gets_408_and_is_closed(harness: Harness) -> None:
    """A head trickled a line at a time (each within any idle limit) is cut off
    header_timeout after its connection opened; a connection that sends nothing too."""
    port = await start(harness)
    reader, writer = await connect(port)
    silent_reader, silent_writer = await connect(port)
    writer.write(b"GET /health HTTP/1.1\r\n")
    for i in range(4):  # 8 s of a line every 2 s: still open
        await harness.clock.advance(2)
        writer.write(f"X-Slow-{i}: yes\r\n".encode())
        await writer.drain()
        await asyncio.sleep(0.02)
    assert not reader.at_eof()
    await harness.clock.advance(2.5)
    status, got = await answer(reader)
    assert status == 408 and b"request head too slow" in got
    assert (await answer(silent_reader))[0] == 408
    writer.close()
    silent_writer.close()


async def test_a_silent_https_connection_is_closed(harness: Harness) -> None:
    """On the HTTPS port a client that never starts its TLS handshake is dropped after
    header_timeout too (the loop's time: asyncio's handshake timeout)."""
    await harness.stop_node()
    node = await harness.start(http_extra="header_timeout = 1.0")
    reader, writer = await connect(node.https_port)
    began = time.monotonic()
    assert await asyncio.wait_for(reader.read(1), TIMEOUT) == b""
    assert 0.5 < time.monotonic() - began < TIMEOUT
    writer.close()


async def test_the_head_timeout_is_not_the_keepalive_timeout(harness: Harness) -> None:
    """A kept-alive connection idle between requests for longer than header_timeout is not
    cut off by it (the next head's clock starts at its first byte); its next head, slow, is;
    and the keep-alive timeout closes an idle connection on its own."""
    port = await start(harness, "keepalive_timeout = 1.0")
    reader, writer = await connect(port)
    req = b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n"

    async def one() -> bytes:
        writer.write(req)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await asyncio.wait_for(reader.readexactly(length), TIMEOUT)
        return head

    assert (await one()).startswith(b"HTTP/1.1 200")
    await harness.clock.advance(30)  # three head timeouts idle: still open
    await asyncio.sleep(0.1)
    assert (await one()).startswith(b"HTTP/1.1 200")
    writer.write(b"GET /health HTTP/1.1\r\n")  # a head begun, then nothing
    await writer.drain()
    await asyncio.sleep(0.05)
    await harness.clock.advance(10.5)
    status, _ = await answer(reader)
    assert status == 408
    writer.close()
    # idle past keepalive_timeout (real time): closed by the server
    reader, writer = await connect(port)
    assert (await one()).startswith(b"HTTP/1.1 200")
    began = time.monotonic()
    assert await asyncio.wait_for(reader.read(1), TIMEOUT) == b""
    assert 0.5 < time.monotonic() - began < TIMEOUT
    writer.close()


async def test_slowloris_does_not_hold_up_others(harness: Harness) -> None:
    """200 connections each with half a head hang; /health still answers at once (and a
    normal client's uploads route works); after header_timeout every one of them has its 408
    and is closed."""
    port = await start(harness)
    slow = []
    for i in range(200):
        reader, writer = await connect(port)
        writer.write(f"GET /health?n={i} HTTP/1.1\r\nHost: localhost\r\nX-A: ".encode())
        slow.append((reader, writer))
    await asyncio.gather(*(w.drain() for _, w in slow))
    await asyncio.sleep(0.1)
    began = time.monotonic()
    assert await health(port) == 200
    assert time.monotonic() - began < 1.0
    assert all(not r.at_eof() for r, _ in slow)
    await harness.clock.advance(10.5)
    statuses = await asyncio.gather(*(answer(r) for r, _ in slow))
    assert {s for s, _ in statuses} == {408}
    for _, w in slow:
        w.close()
    assert await health(port) == 200


def rss(pid: int) -> int:
    """The resident memory of process ``pid``, bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def test_a_header_flood_holds_bounded_memory(tmp_path: Path, storage_url: str) -> None:
    """``hongyan serve`` as a process: 200 connections at once each offer a 1 MiB header
    (200 MiB in all); each gets 431 and is closed at the limit, the server's memory grows by
    a small part of what was offered, and /health answers throughout."""
    cfg = process_config(tmp_path, storage_url)
    srv = Server(cfg)
    await srv.start()
    try:
        assert srv.proc is not None
        port = http_port(cfg)
        assert await health(port) == 200
        before = rss(srv.proc.pid)
        conns = [await connect(port) for _ in range(200)]
        chunk = b"f" * 65536

        async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> int:
            writer.write(b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Flood: ")
            try:
                for _ in range(16):
                    writer.write(chunk)
                    await asyncio.wait_for(writer.drain(), TIMEOUT)
            except (ConnectionError, RuntimeError):
                pass
            try:
                return (await answer(reader))[0]
            except (ConnectionError, RuntimeError, AssertionError):
                return 0  # (reset before the answer could be read: refused all the same)
            finally:
                writer.close()

        flooding = asyncio.gather(*(flood(r, w) for r, w in conns))
        assert await health(port) == 200
        statuses = await flooding
        # (a client still pushing when the drain ends may see a reset instead of the 431)
        assert set(statuses) <= {431, 0}, statuses
        grown = rss(srv.proc.pid) - before
        assert grown < 40 * 1024 * 1024, grown  # of 200 MiB offered
        assert await health(port) == 200
    finally:
        if srv.proc is not None and srv.proc.returncode is None:
            srv.proc.terminate()
            await srv.wait()


@pytest.mark.parametrize("bad", ["header_timeout = 0", "max_headers = 1",
                                 "max_request_line = 'long'", "keepalive_timeout = -1",
                                 "health_timeout = 0"])
async def test_bad_bounds_name_the_key(harness: Harness, bad: str) -> None:
    await harness.stop_node()
    with pytest.raises(Exception) as exc:
        await harness.start(http_extra=f"tls = false\n{bad}\n")
    assert bad.split(" ")[0] in str(exc.value)
