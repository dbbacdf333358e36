"""The HTTP side of uploads, on any worker: PUT into a slot, GET and HEAD of a file, and the
CORS answers a web client needs.

A PUT is checked against its slot before a byte of the body is read: the token (an HMAC, see
:mod:`.slots`), the expiry, ``Content-Length`` (required; not the slot's size: 413 when larger,
400 otherwise) and ``Content-Type`` (the slot's, when it named one: 415 otherwise). The file is
then created exclusively under the slot's id (a second PUT of the slot, even at the same time
on another worker, gets 409) and the body is streamed to it as it arrives, so an upload holds
no more than aiohttp's read buffer in memory. Only when every byte is on disk does its row
make it downloadable; an upload that fails midway leaves nothing behind.

A GET serves the file with its own type but never in a way that runs it in our origin:
``X-Content-Type-Options: nosniff``, ``Content-Security-Policy: default-src 'none'; sandbox``,
and ``Content-Disposition: attachment`` for every type but images, audio, video and plain text.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
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


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class Files:
    """The upload service's HTTP routes (``/upload/*``)."""

    def __init__(self, store: FileStore, key: bytes, now: Callable[[], float],
                 owner_exists: Callable[[str], Awaitable[bool]]) -> None:
        self._store = store
        self._key = key
        self._now = now
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
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            return _error(409, "this slot was used already")
        written = 0
        try:
            try:
                if request.headers.get("Expect", "").lower() == "100-continue":
                    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                async for chunk in request.content.iter_chunked(CHUNK):
                    written += len(chunk)
                    if written > slot.size:
                        break
                    _write_all(fd, chunk)
            finally:
                os.close(fd)
            if written != slot.size:
                self._store.unlink(slot_id)
                return _error(400, f"the body was not the slot's {slot.size} bytes")
            await self._store.add(StoredFile(slot_id, slot.owner, name, slot.size,
                                             content_type, int(self._now())))
        except BaseException:
            self._store.unlink(slot_id)  # nothing half written stays (the slot stays used)
            raise
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
