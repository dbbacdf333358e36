"""A process that writes batches into an SQLite file, so that the event loop never does.

Archives append a row for every message. Written on the event loop (as every other SQLite
statement is, see :class:`hongyan.storage.db.SqliteDatabase`), those rows cost the loop the
B-tree work, the page writes and, at each WAL checkpoint, an ``fdatasync``: the loop stood still
about a fifth of the time under load, and archiving took 66-77% of the server's throughput
(docs/performance.md, "Archiving"). A thread would not help: the GIL hands the loop and the
writer turns, and the loop waits for each of the writer's turns.

:class:`WriterProcess` (the event loop's side) starts ``python -m hongyan.storage.writer PATH``
and sends it frames on its stdin; :func:`main` (the process) answers each frame on its stdout
once it is committed. A frame is a 4-byte big-endian length and a pickle of ``(token, sql,
rows, expand)`` (see :data:`Frame`); an answer is the same framing around ``(token, error)``
with ``error`` None on success.
The process commits in one transaction every frame that has arrived while it was busy (group
commit: the busier the server, the bigger the batches) and runs the WAL checkpoints (the
loop's connections stop checkpointing while it runs). It exits when its stdin closes, after
writing what it has read.

What is in flight is lost if the server process dies, like the rows queued in memory before
it; a clean stop writes everything first.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import io
import itertools
import logging
import os
import pickle
import select
import signal
import sqlite3
import struct
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
_LEN = struct.Struct(">I")
#: (token, sql, rows, expand): ``expand`` (None, or a module-level function, pickled by name)
#: makes the statement's parameters of each row
Frame = tuple[int, str, list[Any], Callable[[Any], Sequence[Any]] | None]
#: a transaction takes more frames only while it has fewer rows than this (bounds how long a
#: write on the event loop may wait for the file's lock: ~10 µs a row)
MAX_GROUP_ROWS = 1000
#: the pipe buffer asked for (see _widen)
PIPE_BYTES = 8 << 20
#: checkpoint the WAL after this many seconds without frames
IDLE_CHECKPOINT = 1.0


class WriterError(RuntimeError):
    """A batch the writer process could not commit (the message of SQLite's error)."""


class WriterProcess:
    """The event loop's side: ``await run(sql, rows)`` returns when the rows are committed."""

    def __init__(self, path: str, busy_timeout_ms: int) -> None:
        self._path = path
        self._busy = busy_timeout_ms
        self._proc: _Child | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[None]] = {}
        self._tokens = itertools.count(1)
        self._starting: asyncio.Lock = asyncio.Lock()
        self._last_code: int | None = None  # how the last process ended

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def _ensure(self) -> _Child:
        async with self._starting:
            if self._proc is None or self._proc.returncode is not None:
                self._proc = await _Child.start(
                    [sys.executable, "-m", "hongyan.storage.writer", self._path, str(self._busy)])
                self._reader = asyncio.get_running_loop().create_task(
                    self._read(self._proc), name="sqlite-writer-answers")
            return self._proc

    async def run(self, sql: str, rows: Sequence[Sequence[Any]],
                  expand: Callable[[Any], Sequence[Any]] | None = None) -> None:
        proc = await self._ensure()
        token = next(self._tokens)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending[token] = fut
        proc.stdin.write(_frame((token, sql, rows, expand)))
        await fut

    async def _read(self, proc: _Child) -> None:
        out = proc.stdout
        try:
            while True:
                head = await out.readexactly(_LEN.size)
                token, error = pickle.loads(await out.readexactly(_LEN.unpack(head)[0]))
                fut = self._pending.pop(token, None)
                if fut is not None and not fut.done():
                    if error is None:
                        fut.set_result(None)
                    else:
                        fut.set_exception(WriterError(error))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            code = self._last_code = await proc.wait()
            lost = list(self._pending.values())
            self._pending.clear()
            for fut in lost:
                if not fut.done():
                    fut.set_exception(WriterError(
                        f"the SQLite writer process exited (code {code}) before committing"))
            if lost or code != 0:
                log.error("the SQLite writer process exited with code %s, %d batches lost",
                          code, len(lost))

    async def close(self) -> None:
        """Let the process write what it has, then end it."""
        proc = self._proc
        if proc is None:
            return
        proc.stdin.close()  # after what is buffered is written
        if self._reader is not None:
            await self._reader
        self._proc = None


class _Child:
    """The writer process as the event loop sees it: its stdin a transport, its stdout a stream.

    It is started by :class:`subprocess.Popen` with SIGINT and SIGTERM blocked, not by the
    loop's ``subprocess_exec``: a Ctrl-C sent to the server's process group while the child is
    between ``fork`` and ``setsid`` would otherwise be delivered the moment the child's signal
    mask is reset before ``exec`` (libuv, under uvloop, resets it, and every disposition to the
    default: the child died of the SIGINT meant for the server, losing its first batch). Blocked,
    the signals stay pending across ``exec`` until :func:`main` has set them to be ignored
    (which discards them) and unblocks them."""

    def __init__(self, popen: subprocess.Popen[bytes], stdin: asyncio.WriteTransport,
                 stdout: asyncio.StreamReader) -> None:
        self.popen = popen
        self.stdin = stdin
        self.stdout = stdout

    @classmethod
    async def start(cls, argv: list[str]) -> _Child:
        loop = asyncio.get_running_loop()
        shielded = {signal.SIGINT, signal.SIGTERM}
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, shielded)
        try:
            # its own session too: once it runs, a signal to the server's group passes it by
            popen = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     start_new_session=True)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # pending ones arrive here
        assert popen.stdin is not None and popen.stdout is not None
        _widen(popen.stdin.fileno())
        reader = asyncio.StreamReader(limit=1 << 20)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), popen.stdout)
        stdin, _ = await loop.connect_write_pipe(asyncio.Protocol, popen.stdin)
        return cls(popen, stdin, reader)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def kill(self) -> None:
        self.popen.kill()

    async def wait(self) -> int:
        if (code := self.popen.poll()) is not None:
            return code
        return await asyncio.get_running_loop().run_in_executor(None, self.popen.wait)


def _frame(frame: object) -> bytes:
    """A frame's bytes. The pickler runs in fast mode (no memo): rows are flat lists or tuples
    of numbers and strings, never self-referential, and the memo's bookkeeping was most of the
    pickling's cost on the event loop (0.84 against 0.33 µs per archived row)."""
    out = io.BytesIO()
    out.write(b"\0\0\0\0")
    pickler = pickle.Pickler(out, pickle.HIGHEST_PROTOCOL)
    pickler.fast = True
    pickler.dump(frame)
    data = out.getbuffer()
    _LEN.pack_into(data, 0, len(data) - _LEN.size)
    del data
    return out.getvalue()


def _widen(fd: int) -> None:
    """Give the pipe to the process a buffer of up to PIPE_BYTES (Linux; the default is 64 KB).
    A batch of 10,000 archived messages is a frame of ~3 MB: through 64 KB it takes ~50 turns
    of the event loop to hand over, one per loop iteration, and a busy loop's iterations are
    milliseconds apart (the writer sat waiting for its frames 70% of the time)."""
    setsz = getattr(fcntl, "F_SETPIPE_SZ", None)
    if setsz is None:
        return
    try:
        limit = int(Path("/proc/sys/fs/pipe-max-size").read_text())
    except (OSError, ValueError):
        limit = 1 << 20
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, setsz, min(PIPE_BYTES, limit))


# -- the process --------------------------------------------------------------------------------
class _Frames:
    """Frames from a pipe, read with ``os.read`` into a buffer of our own (so that ``select``
    tells the whole truth about what is waiting)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = bytearray()
        self.eof = False

    def fill(self, timeout: float | None) -> bool:
        """Read what the pipe has, waiting up to ``timeout`` (None: until something comes);
        False when nothing came in time."""
        if not select.select([self.fd], [], [], timeout)[0]:
            return False
        data = os.read(self.fd, 1 << 20)
        if data:
            self.buf += data
        else:
            self.eof = True
        return True

    def next(self) -> Frame | None:
        buf = self.buf
        if len(buf) < _LEN.size:
            return None
        end = _LEN.size + _LEN.unpack_from(buf)[0]
        if len(buf) < end:
            return None
        frame: Frame = pickle.loads(memoryview(buf)[_LEN.size:end])
        del buf[:end]
        return frame


def _answer(fd: int, answers: list[tuple[int, str | None]]) -> None:
    out = bytearray()
    for answer in answers:
        data = pickle.dumps(answer, pickle.HIGHEST_PROTOCOL)
        out += _LEN.pack(len(data)) + data
    view = memoryview(out)
    while view:
        view = view[os.write(fd, view):]


def _commit(conn: sqlite3.Connection, frames: list[Frame]) -> list[tuple[int, str | None]]:
    """All frames in one transaction; if that fails, each in its own, so that one bad batch
    fails alone."""
    try:
        conn.execute("BEGIN IMMEDIATE")
        for _token, sql, rows, expand in frames:
            conn.executemany(sql, rows if expand is None else map(expand, rows))
        conn.execute("COMMIT")
        return [(frame[0], None) for frame in frames]
    except Exception as exc:  # SQLite's, or a row expand could not read: that batch fails
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if len(frames) == 1:
            return [(frames[0][0], f"{type(exc).__name__}: {exc}")]
    out: list[tuple[int, str | None]] = []
    for frame in frames:
        out.extend(_commit(conn, [frame]))
    return out


def main(argv: list[str]) -> int:
    path, busy = argv[0], int(argv[1])
    # Its life is the pipe's: it ends when the server closes it (or dies), after writing what
    # it was sent. A Ctrl-C or a service manager's SIGTERM to the whole process group must not
    # cut it short while the server is still flushing its archives into it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # started with them blocked (see _Child): ignored now, the pending ones are discarded
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in (f"busy_timeout={busy}", "journal_mode=WAL", "synchronous=NORMAL",
                   "cache_size=-65536"):
        conn.execute(f"PRAGMA {pragma}")
    frames = _Frames(sys.stdin.fileno())
    out = sys.stdout.fileno()
    dirty = False
    while True:
        frame = frames.next()
        if frame is None:
            if frames.eof:
                break
            if not frames.fill(IDLE_CHECKPOINT if dirty else None):
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")  # idle: off the loop
                dirty = False
            continue
        # Group commit: with it, whatever else has arrived while the last transaction ran.
        group = [frame]
        frames.fill(0)
        rows = len(frame[2])
        while rows < MAX_GROUP_ROWS and (frame := frames.next()) is not None:
            group.append(frame)
            rows += len(frame[2])
        _answer(out, _commit(conn, group))
        dirty = True
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
