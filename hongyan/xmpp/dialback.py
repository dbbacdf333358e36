"""Server dialback (XEP-0220) keys and elements, sans-I/O.

A dialback key proves that the server which sent it is authoritative for its domain: only the
authoritative server (or one that shares its secret: the workers of a node, the nodes of a
cluster) can compute it again. Keys are made as XEP-0185 recommends, from a secret kept by the
server: ``HMAC-SHA256(hex(SHA256(secret)), receiving + " " + originating + " " + stream id)``,
hex-encoded.
"""

from __future__ import annotations

import hashlib
import hmac

from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element, escape_attr, escape_text


def key(secret: bytes, receiving: str, originating: str, stream_id: str) -> str:
    """The dialback key of a stream from ``originating`` to ``receiving`` whose id (given by
    the receiving server) is ``stream_id`` (XEP-0185 §3)."""
    hashed = hashlib.sha256(secret).hexdigest().encode()
    text = f"{receiving} {originating} {stream_id}".encode()
    return hmac.new(hashed, text, hashlib.sha256).hexdigest()


def valid(secret: bytes, receiving: str, originating: str, stream_id: str, given: str) -> bool:
    """``given`` is the key :func:`key` makes (compared in constant time)."""
    expected = key(secret, receiving, originating, stream_id)
    return hmac.compare_digest(expected.encode(), given.strip().lower().encode())


def result(frm: str, to: str, text: str = "", type: str | None = None) -> bytes:
    """``<db:result/>``: a key (from the originating server) or the verdict on it, written
    with the ``db:`` prefix the stream header declares (as every server writes it)."""
    return _element("result", {"from": frm, "to": to}, text, type)


def verify(frm: str, to: str, stream_id: str, text: str = "", type: str | None = None
           ) -> bytes:
    """``<db:verify/>``: a key to check (to the authoritative server), or its answer."""
    return _element("verify", {"from": frm, "to": to, "id": stream_id}, text, type)


def error(name: str, frm: str, to: str, stream_id: str | None, err: Element) -> bytes:
    """A dialback request answered with an error (XEP-0220 §2.4: ``type='error'``); ``err``
    is a stanza error element (jabber:client inside, as the stream writes every stanza)."""
    attrs = {"from": frm, "to": to}
    if stream_id is not None:
        attrs["id"] = stream_id
    return _element(name, attrs, "", "error", err.to_str(NS.CLIENT))


def _element(name: str, attrs: dict[str, str], text: str, type: str | None,
             inner: str = "") -> bytes:
    if type is not None:
        attrs["type"] = type
    head = "".join(f" {k}='{escape_attr(v)}'" for k, v in attrs.items())
    body = escape_text(text) + inner
    if not body:
        return f"<db:{name}{head}/>".encode()
    return f"<db:{name}{head}>{body}</db:{name}>".encode()


__all__ = ["error", "key", "result", "valid", "verify"]
