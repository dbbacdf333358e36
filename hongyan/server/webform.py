"""What the server's own HTML forms share (the invitation page, the admin page): the
same-origin check of a POST, the cookie attributes and a constant-time compare of a CSRF
token with the one expected."""

from __future__ import annotations

import hmac

from aiohttp import web


def same_origin(request: web.BaseRequest) -> bool:
    """The request's ``Origin`` (or, without one, its ``Referer``) is the listener's own."""
    own = f"{request.scheme}://{request.host}"
    origin = request.headers.get("Origin")
    if origin is not None:
        return origin == own
    referer = request.headers.get("Referer", "")
    return referer.startswith(own + "/")


def cookie(request: web.BaseRequest, name: str, value: str, path: str,
           max_age: int | None = None) -> str:
    """A ``Set-Cookie`` value: ``HttpOnly; SameSite=Strict``, ``Secure`` over HTTPS."""
    out = f"{name}={value}; Path={path}; HttpOnly; SameSite=Strict"
    if max_age is not None:
        out += f"; Max-Age={max_age}"
    return out + ("; Secure" if request.scheme == "https" else "")


def token_matches(expected: str, given: str) -> bool:
    """Whether a non-empty ``expected`` token equals ``given`` (constant time)."""
    return bool(expected) and hmac.compare_digest(expected.encode(), given.encode())


__all__ = ["cookie", "same_origin", "token_matches"]
