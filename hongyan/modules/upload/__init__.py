"""XEP-0363 HTTP File Upload at ``upload.<domain>`` (``[upload] host``).

The service is a component domain: disco#info (identity store/file, the ``max-file-size``
form of XEP-0128) and slot requests, answered with a PUT and a GET URL on the node's HTTP
listener (``[upload] public_url``, by default the listener's own address). With several
workers the service lives on one of them (its home), which checks sizes and quotas and keeps
the slots it handed out and not yet used; the uploads and downloads themselves are served by
whichever worker the HTTP request reaches, since the PUT URL carries the slot, signed
(:mod:`.slots`), and single use is the link that makes a whole upload final, which never
replaces (:mod:`.http`).

Files live under ``<data_dir>/upload/`` named by their id, with a row each (:mod:`.store`):
per-user and total quotas count the rows and the slots still open; files older than
``expire_days`` are deleted every ``cleanup_interval`` by the service's home; an account's
files go with it (``AccountDeleted``). At start and every ``cleanup_interval`` each worker also
sweeps what unfinished uploads left (a ``.part`` older than ``put_timeout``, a file without its
row).
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

from hongyan.modules.upload.http import Files
from hongyan.modules.upload.options import UploadOptions
from hongyan.modules.upload.slots import (
    PATH,
    BadRequest,
    Slot,
    check_content_type,
    check_filename,
    new_id,
    sign,
)
from hongyan.modules.upload.store import MIGRATIONS, FileStore
from hongyan.server.hooks import AccountDeleted
from hongyan.server.module import Module, hook
from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element
from hongyan.xmpp.errors import StanzaError
from hongyan.xmpp.jid import JID
from hongyan.xmpp.stamps import xmpp_datetime

UPLOAD = "urn:xmpp:http:upload:0"
_SECRET_NS = "hongyan:upload"
DAY = 86400.0


class Upload(Module):
    name = "upload"
    xeps = {"0363": "1.2.0", "0128": "1.0"}
    migrations = MIGRATIONS

    async def start(self) -> None:
        cfg = self.options = self.api.options(UploadOptions)
        self.host = cfg.host_for(self.api.domain)
        key = bytes.fromhex(await self.api.kv.setdefault("", _SECRET_NS, "secret",
                                                         secrets.token_hex(32)))
        self._key = key
        self.store = FileStore(self.api.db, Path(self.api.config.server.data_dir) / "upload")
        self.files = Files(self.store, key, self.api.now, self._owner_exists,
                           self.api.call_later, self.api.monotonic,
                           cfg.put_idle_timeout, cfg.put_timeout)
        #: slots handed out and not yet used or expired: id -> (owner, size, expiry)
        self._open: dict[str, tuple[str, int, int]] = {}
        self._quota_lock = asyncio.Lock()
        self.api.service(self.host, self._request)
        self.api.http_route("PUT", PATH + "/*", self.files.put)
        self.api.http_route("GET", PATH + "/*", self.files.get)
        self.api.http_route("OPTIONS", PATH + "/*", self.files.options)
        self.api.metric("counter", "uploads", "files uploaded (counted by the worker that got "
                        "the PUT)", lambda: self.files.uploads)
        self.api.metric("counter", "upload_bytes", "bytes of the files uploaded",
                        lambda: self.files.upload_bytes)
        self.api.spawn(self._cleanup())

    async def _owner_exists(self, owner: str) -> bool:
        local, _, domain = owner.partition("@")
        return domain != self.api.domain or await self.api.accounts.exists(local)

    # -- the service ----------------------------------------------------------------------------
    async def _request(self, itype: str, payload: Element, sender: JID) -> Element:
        if itype == "get" and payload.name == "query" and not payload.attrs.get("node"):
            if payload.xmlns == NS.DISCO_INFO:
                return self._disco_info()
            if payload.xmlns == NS.DISCO_ITEMS:
                return Element("query", NS.DISCO_ITEMS)
        if itype == "get" and payload.name == "request" and payload.xmlns == UPLOAD:
            if not sender.local or (sender.domain != self.api.domain and
                                    sender.domain not in self.options.allowed_domains):
                raise StanzaError("forbidden", "this service is for the users of "
                                  f"{self.api.domain}")
            return await self._slot(payload, sender)
        raise StanzaError("service-unavailable")

    def _disco_info(self) -> Element:
        q = Element("query", NS.DISCO_INFO)
        q.add("identity", attrs={"category": "store", "type": "file",
                                 "name": "HTTP File Upload"})
        for var in (NS.DISCO_INFO, UPLOAD):
            q.add("feature", attrs={"var": var})
        form = q.add("x", NS.DATA_FORMS, {"type": "result"})
        form.add("field", attrs={"var": "FORM_TYPE", "type": "hidden"}).add("value", text=UPLOAD)
        form.add("field", attrs={"var": "max-file-size"}).add(
            "value", text=str(self.options.max_file_size))
        return q

    async def _slot(self, req: Element, sender: JID) -> Element:
        cfg = self.options
        filename, size_text = req.attrs.get("filename"), req.attrs.get("size")
        if filename is None or size_text is None:
            raise StanzaError("bad-request", "a slot request has a filename and a size")
        try:
            name = check_filename(filename)
            content_type = check_content_type(req.attrs.get("content-type", ""))
        except BadRequest as exc:
            raise StanzaError("not-acceptable", str(exc)) from None
        if not (size_text.isascii() and size_text.isdigit()) or int(size_text) == 0:
            raise StanzaError("not-acceptable", "the size is not a positive number of bytes")
        size = int(size_text)
        if size > cfg.max_file_size:
            too_large = Element("file-too-large", UPLOAD)
            too_large.add("max-file-size", text=str(cfg.max_file_size))
            raise StanzaError("not-acceptable", "File too large. The maximum file size is "
                              f"{cfg.max_file_size} bytes", app=too_large)
        base = cfg.public_url or self.api.http_url
        if not base:
            raise StanzaError("service-unavailable", "the HTTP listener is off")
        owner = sender.bare_str
        async with self._quota_lock:
            await self._check_quota(owner, size)
            slot = Slot(new_id(), name, size, content_type,
                        int(self.api.now() + cfg.slot_timeout), owner)
            self._open[slot.id] = (owner, size, slot.expires)
        answer = Element("slot", UPLOAD)
        answer.add("put", attrs={"url": f"{base}{slot.path}?v={sign(self._key, slot)}"})
        answer.add("get", attrs={"url": base + slot.path})
        return answer

    async def _check_quota(self, owner: str, size: int) -> None:
        """Refuse (resource-constraint, wait) a slot that would take ``owner`` or the service
        past its quota, counting the files stored and the slots still open."""
        cfg = self.options
        now = self.api.now()
        still = {k: v for k, v in self._open.items() if v[2] >= now}
        for done in await self.store.present(list(still)):
            del still[done]  # its row counts now
        self._open = still
        if cfg.quota_per_user:
            used = await self.store.used(owner) + sum(
                s for o, s, _ in still.values() if o == owner)
            if used + size > cfg.quota_per_user:
                oldest = await self.store.oldest(owner) if cfg.expire_days else None
                raise _full(f"Quota reached: your files may take {cfg.quota_per_user} bytes, "
                            f"{used} are taken", None if oldest is None
                            else oldest + cfg.expire_days * DAY)
        if cfg.quota_total:
            used = await self.store.used() + sum(s for _, s, _ in still.values())
            if used + size > cfg.quota_total:
                raise _full("The upload service's storage is full", None)

    # -- keeping files --------------------------------------------------------------------------
    async def _cleanup(self) -> None:
        """At start and every ``cleanup_interval``: the leftovers of uploads that never
        finished (:meth:`.store.FileStore.orphans`; on every worker, as each may have been
        writing some), and, on the service's home only, what is older than ``expire_days``."""
        cfg = self.options
        while True:
            try:
                swept = await self.store.orphans(self.api.now(), cfg.put_timeout)
                if swept:
                    self.log.info("deleted %d leftovers of unfinished uploads", swept)
            except Exception:
                self.log.exception("could not sweep unfinished uploads")
            if cfg.expire_days > 0 and self.api.service_home(self.host) is None:
                try:
                    before = int(self.api.now() - cfg.expire_days * DAY)
                    while await self.store.delete_older(before) == 1000:
                        pass
                except Exception:
                    self.log.exception("could not delete expired uploads")
            await self.api.sleep(cfg.cleanup_interval)

    @hook(AccountDeleted)
    async def on_deleted(self, ev: AccountDeleted) -> None:
        owner = f"{ev.username}@{self.api.domain}"
        self._open = {k: v for k, v in self._open.items() if v[0] != owner}
        await self.store.delete_owner(owner)


def _full(text: str, retry: float | None) -> StanzaError:
    """XEP-0363 §5: a temporary error, and when trying again may succeed (``retry``)."""
    app = None
    if retry is not None:
        app = Element("retry", UPLOAD, {"stamp": xmpp_datetime(retry)})
    return StanzaError("resource-constraint", text, type="wait", app=app)


MODULE = Upload
