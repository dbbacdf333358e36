"""The HTTP side of uploads, on any worker: PUT into a slot, GET and HEAD of a file, and the
CORS answers a web client needs.

A PUT is checked against its slot before a byte of the body is read: the token (an HMAC, see
:mod:`.slots`), the expiry, ``Content-Length`` (required; not the slot's size: 413 when larger,
400 otherwise) and ``Content-Type`` (the slot's, when it named one: 415 otherwise). The file is
streamed as it arrives into a ``.part`` file of its own (``<id>.<nonce>.part`` beside the
file's place), so an upload holds no more than aiohttp's read buffer in memory. A body that
goes ``[upload] put_idle_timeout`` seconds without a byte, or is not all there after
``put_timeout``, gets 408 and its part is deleted. A whole body is fsynced and then linked to
the file's name (``os.link``: never replacing), so of two PUTs of one slot, even at the same
time on two workers, exactly one wins and the other gets 409; only then does its row make it
downloadable. Whatever fails midway, the part goes: nothing half written is ever served or
kept (leftovers of a crash are swept by :meth:`.store.FileStore.orphans`).

A GET serves the file with its own type but never in a way that runs it in our origin:
``X-Content-Type-Options: nosniff``, ``Content-Security-Policy: default-src 'none'; sandbox``,
and ``Content-Disposition: attachment`` for every type but images, audio, video and plain text.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

from aiohttp import web

from hongyan.modules.upload.slots import (
    DEFAULT_TYPE,
    BadRequest,
    check_content_type,
    is_inline,
    media_type,
    parse_path,
    verify,
)
from hongyan.modules.upload.store import FileStore, StoredFile

#: what one write to the file takes from aiohttp's buffer (a slice: never a join of all it
#: holds, which doubled the memory an upload held)
CHUNK = 64 * 1024
CORS = {"Access-Control-Allow-Origin": "*"}
SAFE = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'; sandbox",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "private, max-age=86400",
    **CORS,
}


def _error(status: int, text: str) -> web.Response:
    resp = web.Response(status=status, text=text + "\n", headers=CORS)
    resp.force_close()  # (a body we did not read is not waited for on this connection)
    return resp


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class _Stalled(Exception):
    """What a PUT's body reader raises when the body stopped coming, or took too long."""


class _Watch:
    """The two clocks of one PUT's body: no byte for ``idle`` seconds, or the whole body not
    there after ``total``, and the body's reader raises :class:`_Stalled`. One timer for the
    idle limit, moved on only when it fires (a chunk just notes the time)."""

    __slots__ = ("_call_later", "_clock", "_idle", "_idle_timer", "_last", "_request",
                 "_total_timer")

    def __init__(self, request: web.BaseRequest,
                 call_later: Callable[[float, Callable[[], None]], Cancellable],
                 clock: Callable[[], float], idle: float, total: float) -> None:
        self._request = request
        self._call_later = call_later
        self._clock = clock
        self._idle = idle
        self._last = clock()
        self._idle_timer: Cancellable | None = call_later(idle, self._check_idle)
        self._total_timer: Cancellable | None = call_later(
            total, lambda: self._stall(f"the upload took longer than {total:g} s"))

    def seen(self) -> None:
        self._last = self._clock()

    def _check_idle(self) -> None:
        self._idle_timer = None
        quiet = self._clock() - self._last
        if quiet >= self._idle:
            self._stall(f"no byte of the upload for {self._idle:g} s")
        else:
            self._idle_timer = self._call_later(self._idle - quiet, self._check_idle)

    def _stall(self, why: str) -> None:
        self.cancel()
        self._request.content.set_exception(_Stalled(why))

    def cancel(self) -> None:
        for timer in (self._idle_timer, self._total_timer):
            if timer is not None:
                timer.cancel()
        self._idle_timer = self._total_timer = None


def _sync_dir(folder: Path) -> None:
    """Make a new name in ``folder`` durable (where the platform can)."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class Files:
    """The upload service's HTTP routes (``/upload/*``)."""

    def __init__(self, store: FileStore, key: bytes, now: Callable[[], float],
                 owner_exists: Callable[[str], Awaitable[bool]],
                 call_later: Callable[[float, Callable[[], None]], Cancellable],
                 monotonic: Callable[[], float], idle_timeout: float = 30.0,
                 total_timeout: float = 3600.0) -> None:
        self._store = store
        self._key = key
        self._now = now
        self._call_later = call_later
        self._clock = monotonic
        #: ``[upload] put_idle_timeout`` and ``put_timeout``
        self.idle_timeout = idle_timeout
        self.total_timeout = total_timeout
        self._owner_exists = owner_exists
        #: uploads this process completed, and their bytes (``/metrics``)
        self.uploads = 0
        self.upload_bytes = 0

    async def put(self, request: web.BaseRequest) -> web.StreamResponse:
        where = parse_path(request.path)
        if where is None:
            return _error(404, "not an upload URL")
        slot_id, name = where
        token = request.query.get("v", "")
        slot = verify(self._key, slot_id, name, token) if token else None
        if slot is None:
            return _error(403, "not an upload slot of this server")
        if slot.expires < self._now():
            return _error(403, "this upload slot expired: ask for a new one")
        length = request.content_length
        if length is None:
            return _error(411, "an upload needs a Content-Length")
        if length > slot.size:
            return _error(413, f"this slot is for {slot.size} bytes")
        if length != slot.size:
            return _error(400, f"this slot is for {slot.size} bytes, not {length}")
        sent_type = request.headers.get("Content-Type", "")
        if slot.content_type and media_type(sent_type) != media_type(slot.content_type):
            return _error(415, f"this slot is for {media_type(slot.content_type)}")
        try:
            content_type = slot.content_type or check_content_type(sent_type) or DEFAULT_TYPE
        except BadRequest:
            content_type = DEFAULT_TYPE
        if not await self._owner_exists(slot.owner):
            return _error(403, "the account this slot was for is gone")
        path = self._store.path(slot_id)
        if path.exists():
            return _error(409, "this slot was used already")
        path.parent.mkdir(parents=True, exist_ok=True)
        part = self._store.part_path(slot_id)
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        watch = _Watch(request, self._call_later, self._clock, self.idle_timeout,
                       self.total_timeout)
        written = 0
        try:
            try:
                if request.headers.get("Expect", "").lower() == "100-continue":
                    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                async for chunk in request.content.iter_chunked(CHUNK):
                    watch.seen()
                    written += len(chunk)
                    if written > slot.size:
                        break
                    _write_all(fd, chunk)
                watch.cancel()
                if written == slot.size:
                    await asyncio.to_thread(os.fsync, fd)
            except _Stalled as exc:
                return _error(408, str(exc))
            finally:
                watch.cancel()
                os.close(fd)
            if written != slot.size:
                return _error(400, f"the body was not the slot's {slot.size} bytes")
            try:
                os.link(part, path)  # (never replaces: of two PUTs of a slot, one wins)
            except FileExistsError:
                return _error(409, "this slot was used already")
            _sync_dir(path.parent)
            try:
                await self._store.add(StoredFile(slot_id, slot.owner, name, slot.size,
                                                 content_type, int(self._now())))
            except BaseException:
                self._store.unlink(slot_id)  # (no row: never served, and not kept)
                raise
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(part)  # nothing half written stays, whatever happened
        self.uploads += 1
        self.upload_bytes += written
        return web.Response(status=201, text="created\n", headers=CORS)

    async def get(self, request: web.BaseRequest) -> web.StreamResponse:
        """GET and HEAD (the listener sends HEAD here, and aiohttp leaves out the body)."""
        where = parse_path(request.path)
        found = await self._store.get(where[0]) if where is not None else None
        if where is None or found is None or found.name != where[1]:
            return web.Response(status=404, text="no such file\n", headers=CORS)
        path = self._store.path(found.id)
        if not path.is_file():
            return web.Response(status=404, text="no such file\n", headers=CORS)
        disposition = "inline" if is_inline(found.content_type) else "attachment"
        headers = {**SAFE, "Content-Type": found.content_type,
                   "Content-Disposition": f"{disposition}; filename*=UTF-8''"
                                          f"{quote(found.name, safe='')}"}
        return web.FileResponse(path, headers=headers)

    async def options(self, request: web.BaseRequest) -> web.StreamResponse:
        """A browser's preflight before a cross-origin PUT (a web client on another origin)."""
        return web.Response(status=204, headers={
            **CORS, "Access-Control-Allow-Methods": "GET, HEAD, PUT, OPTIONS",
            "Access-Control-Allow-Headers": "Content-Type",
            "Access-Control-Max-Age": "86400"})


__all__ = ["Files"]
