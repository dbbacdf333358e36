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
from hongyan.xmpp.element import Element


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


def result(frm: str, to: str, text: str = "", type: str | None = None) -> Element:
    """``<db:result/>``: a key (from the originating server) or the verdict on it."""
    el = Element("result", NS.DIALBACK, {"from": frm, "to": to})
    if type is not None:
        el.attrs["type"] = type
    if text:
        el.children.append(text)
    return el


def verify(frm: str, to: str, stream_id: str, text: str = "", type: str | None = None
           ) -> Element:
    """``<db:verify/>``: a key to check (to the authoritative server), or its answer."""
    el = Element("verify", NS.DIALBACK, {"from": frm, "to": to, "id": stream_id})
    if type is not None:
        el.attrs["type"] = type
    if text:
        el.children.append(text)
    return el


__all__ = ["key", "result", "valid", "verify"]
