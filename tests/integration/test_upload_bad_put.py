"""Issue 18 on the upload side, at the byte level over real sockets: a PUT whose body stalls
(408 after ``put_idle_timeout`` without a byte, or after ``put_timeout`` in all, and nothing
left on disk), two PUTs of one slot at once (one 201, one 409, the file whole), nothing half
written ever served, and the leftovers of a crash swept at start and by the periodic cleanup.
The node's clock is stepped (``harness.clock``), so no test waits for a timeout for real."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path

import pytest
from yarl import URL

from tests.integration.clients import TIMEOUT
from tests.integration.conftest import Harness
from tests.integration.test_upload import files, get, put, slot, start, user
from tests.integration.waiting import until


class RawPut:
    """One PUT over a plain socket, its body sent as the test says."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, harness: Harness, url: str, length: int,
                   content_type: str = "text/plain") -> RawPut:
        assert harness.node is not None
        return await cls.to_port(harness.node.http_port, url, length, content_type)

    @classmethod
    async def to_port(cls, port: int, url: str, length: int,
                      content_type: str = "text/plain") -> RawPut:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        u = URL(url)
        writer.write(f"PUT {u.raw_path_qs} HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
                     f"{content_type}\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
                     .encode())
        await writer.drain()
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        with contextlib.suppress(ConnectionError):  # (a server that gave up may be gone)
            self.writer.write(data)
            await self.writer.drain()
        await asyncio.sleep(0.05)  # (the server reads it before the test moves the clock)

    async def status(self) -> tuple[int, bytes]:
        """The answer's status and all the server sent until it closed (or the timeout)."""
        data = await asyncio.wait_for(self.reader.read(65536), TIMEOUT)
        rest = data
        while data:
            data = await asyncio.wait_for(self.reader.read(65536), TIMEOUT)
            rest += data
        self.writer.close()
        return int(rest.split(b" ", 2)[1]), rest


def parts(harness: Harness) -> list[Path]:
    return [p for p in files(harness) if p.name.endswith(".part")]


async def test_a_stalled_put_gets_408_and_leaves_nothing(harness: Harness) -> None:
    """No byte for put_idle_timeout: 408, the connection closed, the partial body deleted,
    the file not served; meanwhile another user's upload goes through; the slot can then be
    used whole (the stalled PUT never got it)."""
    await start(harness, "put_idle_timeout = 5\nput_timeout = 3600")
    alice, bob = await user(harness, "alice"), await user(harness, "bob")
    put_url, get_url = await slot(alice, "a.txt", 1000, "text/plain")
    stalled = await RawPut.open(harness, put_url, 1000)
    await stalled.send(b"x" * 400)
    await until(lambda: len(parts(harness)) == 1)
    # bytes keep the upload alive past the idle limit
    await harness.clock.advance(4)
    await stalled.send(b"x" * 100)
    await harness.clock.advance(4)
    assert len(parts(harness)) == 1 and (await get(get_url))[0] == 404
    # others are not held up
    b_put, b_get = await slot(bob, "b.txt", 3, "text/plain")
    assert (await put(b_put, b"bob", "text/plain"))[0] == 201
    await harness.clock.advance(2)
    status, answer = await stalled.status()
    assert status == 408 and b"no byte of the upload for 5 s" in answer
    await until(lambda: parts(harness) == [])
    assert [p.name for p in files(harness)] == [URL(b_get).parts[2]]
    assert (await get(get_url))[0] == 404
    assert (await get(b_get))[2] == b"bob"
    assert (await put(put_url, b"y" * 1000, "text/plain"))[0] == 201
    assert (await get(get_url))[2] == b"y" * 1000


async def test_a_put_cut_off_midway_leaves_nothing(harness: Harness) -> None:
    """The client goes away half way through its body: no part, no file, the slot still
    usable (it never got a whole upload)."""
    await start(harness)
    alice = await user(harness, "alice")
    put_url, get_url = await slot(alice, "cut.txt", 5000, "text/plain")
    cut = await RawPut.open(harness, put_url, 5000)
    await cut.send(b"c" * 2500)
    await until(lambda: len(parts(harness)) == 1)
    cut.writer.close()
    await until(lambda: files(harness) == [])
    assert (await get(get_url))[0] == 404
    assert (await put(put_url, b"w" * 5000, "text/plain"))[0] == 201
    assert (await get(get_url))[2] == b"w" * 5000


async def test_a_trickled_put_gets_408_after_put_timeout(harness: Harness) -> None:
    """A byte every few seconds never trips the idle limit, but the whole body may take no
    longer than put_timeout."""
    await start(harness, "put_idle_timeout = 5\nput_timeout = 20")
    alice = await user(harness, "alice")
    put_url, get_url = await slot(alice, "slow.txt", 100, "text/plain")
    slow = await RawPut.open(harness, put_url, 100)
    for _ in range(5):  # 20 s in all, a byte every 4 s
        await slow.send(b"s")
        await harness.clock.advance(4)
    await slow.send(b"s")  # (the server may already have closed: that is the point)
    await harness.clock.advance(1)
    status, answer = await slow.status()
    assert status == 408 and b"longer than 20 s" in answer
    await until(lambda: files(harness) == [])
    assert (await get(get_url))[0] == 404


async def test_two_puts_of_one_slot_at_once(harness: Harness) -> None:
    """Both PUTs stream at the same time into parts of their own: the first whole one gets
    the file (201), the other 409 and its part is deleted; a GET meanwhile sees nothing, and
    afterwards the winner's bytes whole."""
    await start(harness)
    alice = await user(harness, "alice")
    put_url, get_url = await slot(alice, "race.txt", 2000, "text/plain")
    first = await RawPut.open(harness, put_url, 2000)
    second = await RawPut.open(harness, put_url, 2000)
    await first.send(b"1" * 1999)
    await second.send(b"2" * 1999)
    await until(lambda: len(parts(harness)) == 2)
    assert (await get(get_url))[0] == 404  # half written: never served
    await second.send(b"2")
    await first.send(b"1")
    results = [await second.status(), await first.status()]
    assert [s for s, _ in results] == [201, 409], results
    await until(lambda: parts(harness) == [])
    status, _, body = await get(get_url)
    assert status == 200 and body == b"2" * 2000
    assert len(files(harness)) == 1


async def test_many_puts_of_one_slot_one_wins(harness: Harness) -> None:
    """Eight clients PUT the same slot at once (aiohttp's client): one 201, the rest 409."""
    await start(harness)
    alice = await user(harness, "alice")
    put_url, get_url = await slot(alice, "many.bin", 200_000)
    bodies = [bytes([65 + i]) * 200_000 for i in range(8)]
    results = await asyncio.gather(*(put(put_url, b) for b in bodies))
    statuses = sorted(s for s, _ in results)
    assert statuses == [201] + [409] * 7, results
    status, _, body = await get(get_url)
    assert status == 200 and body in bodies
    await until(lambda: len(files(harness)) == 1)


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


async def test_leftovers_are_swept_at_start_and_periodically(harness: Harness) -> None:
    """A file without its row and an old .part (a crash's leftovers) are deleted when the
    module starts; a fresh .part (an upload still being written) stays until it is older than
    put_timeout, when the periodic cleanup takes it."""
    root = harness.tmp_path / "data" / "upload" / "ab"
    root.mkdir(parents=True)
    orphan, old_part, fresh_part = (root / ("ab" + "c" * 22), root / "abd.0123.part",
                                    root / "abe.4567.part")
    for p in (orphan, old_part, fresh_part):
        p.write_bytes(b"left over")
    _age(orphan, 3600)
    _age(old_part, 7200)
    await start(harness, "put_timeout = 600\ncleanup_interval = 60")
    alice = await user(harness, "alice")
    put_url, get_url = await slot(alice, "kept.txt", 4, "text/plain")
    assert (await put(put_url, b"kept", "text/plain"))[0] == 201
    await until(lambda: not orphan.exists() and not old_part.exists())
    assert fresh_part.exists()
    await harness.clock.advance(601)
    await until(lambda: not fresh_part.exists())
    assert (await get(get_url))[2] == b"kept"  # a file with its row stays


@pytest.mark.parametrize("bad", ["put_idle_timeout = 0", "put_timeout = -1",
                                 "put_timeout = 'soon'"])
async def test_bad_put_timeouts_name_the_key(harness: Harness, bad: str) -> None:
    await harness.stop_node()
    with pytest.raises(Exception) as exc:
        await harness.start(extra=f"[upload]\n{bad}\n", http_extra="tls = false")
    assert bad.split(" ")[0] in str(exc.value)
