"""Upload slots without state: what a slot request may ask for, and the signed PUT URL that
carries the slot to whichever worker gets the upload.

A slot is ``(id, filename, size, content type, expiry, owner)``. The PUT URL is
``<base>/upload/<id>/<filename>?v=<token>``, the token the slot's last four fields and an
HMAC-SHA-256 of all six under the service's secret: any worker of the node checks it with
the secret alone, before it reads a byte of the body. The GET URL is the same without the
token; the id (144 random bits) is what makes it unguessable. The file is stored under the id
alone, so the name a client chose never reaches the file system.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import unicodedata
from dataclasses import dataclass
from urllib.parse import quote

PATH = "/upload"
#: what an id looks like (secrets.token_urlsafe(18): 24 characters)
ID = re.compile(r"[A-Za-z0-9_-]{24}")
_TOKEN = r"[A-Za-z0-9!#$&^_.+-]+"
#: a media type with optional parameters, nothing a header could be broken with
_MEDIA_TYPE = re.compile(rf"{_TOKEN}/{_TOKEN}(\s*;\s*{_TOKEN}=({_TOKEN}|\"[^\"\\\x00-\x1f]*\"))*")
MAX_FILENAME = 255  # bytes of UTF-8
DEFAULT_TYPE = "application/octet-stream"

#: types a browser may show in place: they run nothing. Everything else (HTML, SVG, XML,
#: JavaScript, PDF, ...) is served as an attachment, so that it never runs in our origin
INLINE = frozenset({
    "image/png", "image/jpeg", "image/gif", "image/webp", "image/avif", "image/bmp",
    "image/heic", "image/heif", "text/plain",
})
INLINE_PREFIXES = ("audio/", "video/")


class BadRequest(ValueError):
    """A slot request that asks for something this service refuses (not-acceptable)."""


def check_filename(name: str) -> str:
    """The file name as it will appear in the URLs (NFC), or :class:`BadRequest`: no
    path separators, no control characters, not ``.`` or ``..``, at most 255 bytes."""
    name = unicodedata.normalize("NFC", name)
    if not name or name in (".", ".."):
        raise BadRequest("the file name is empty")
    if len(name.encode()) > MAX_FILENAME:
        raise BadRequest(f"the file name is longer than {MAX_FILENAME} bytes")
    if "/" in name or "\\" in name:
        raise BadRequest("the file name may not contain '/' or '\\'")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in name):
        raise BadRequest("the file name contains control characters")
    return name


def check_content_type(value: str) -> str:
    """A media type as the slot keeps it (type and subtype lower-cased; empty: none asked),
    or :class:`BadRequest`."""
    value = value.strip()
    if not value:
        return ""
    if len(value) > 255 or not _MEDIA_TYPE.fullmatch(value):
        raise BadRequest(f"not a media type: {value[:80]!r}")
    head, sep, params = value.partition(";")
    return head.strip().lower() + (sep + params if sep else "")


def media_type(value: str) -> str:
    """``type/subtype`` of a Content-Type value, lower-cased, without parameters."""
    return value.partition(";")[0].strip().lower()


def is_inline(content_type: str) -> bool:
    """Whether a download of this type may be shown in place (else: an attachment)."""
    mt = media_type(content_type)
    return mt in INLINE or mt.startswith(INLINE_PREFIXES)


def new_id() -> str:
    return secrets.token_urlsafe(18)


@dataclass(frozen=True, slots=True)
class Slot:
    id: str
    filename: str
    size: int
    content_type: str  # as asked ("" when the request named none)
    expires: int  # seconds since the epoch
    owner: str  # bare JID

    @property
    def path(self) -> str:
        """``/upload/<id>/<filename, percent-encoded>``."""
        return f"{PATH}/{self.id}/{quote(self.filename, safe='')}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, slot_id: str, filename: str, payload: str) -> bytes:
    msg = "\0".join(("hongyan-upload-slot-1", slot_id, filename, payload)).encode()
    return hmac.new(key, msg, hashlib.sha256).digest()


def sign(key: bytes, slot: Slot) -> str:
    """The token of ``slot``'s PUT URL (the ``v`` query parameter)."""
    payload = _b64(json.dumps([slot.size, slot.content_type, slot.expires, slot.owner],
                              separators=(",", ":")).encode())
    return payload + "." + _b64(_mac(key, slot.id, slot.filename, payload))


def verify(key: bytes, slot_id: str, filename: str, token: str) -> Slot | None:
    """The slot a PUT URL's token signs for ``slot_id`` and ``filename``, or None when the
    token is not one this service made for them."""
    payload, _, mac = token.partition(".")
    try:
        if not hmac.compare_digest(_unb64(mac), _mac(key, slot_id, filename, payload)):
            return None
        size, ctype, expires, owner = json.loads(_unb64(payload))
    except (binascii.Error, ValueError, TypeError):
        return None
    return Slot(slot_id, filename, int(size), str(ctype), int(expires), str(owner))


def parse_path(path: str) -> tuple[str, str] | None:
    """``(id, filename)`` of ``/upload/<id>/<filename>`` (``path`` percent-decoded, as aiohttp
    gives it), or None for anything else: more or fewer segments, an id that is not one of
    ours, a name that is not one a slot could have."""
    rest = path.removeprefix(PATH + "/")
    if rest == path:
        return None
    slot_id, sep, name = rest.partition("/")
    if not sep or not ID.fullmatch(slot_id):
        return None
    try:
        if check_filename(name) != name:
            return None
    except BadRequest:
        return None
    return slot_id, name


__all__ = ["DEFAULT_TYPE", "PATH", "BadRequest", "Slot", "check_content_type",
           "check_filename", "is_inline", "media_type", "new_id", "parse_path", "sign",
           "verify"]
