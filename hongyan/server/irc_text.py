"""Text of the IRC listener shared by its commands and its history: IRCv3 server-time values
and message bodies as IRC lines."""

from __future__ import annotations

import datetime


def irc_time(stamp: str | None) -> str:
    """An IRCv3 server-time value from a XEP-0082 stamp (now when there is none)."""
    when = None
    if stamp:
        try:
            when = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        except ValueError:
            when = None
    if when is None:
        when = datetime.datetime.now(datetime.UTC)
    when = when.astimezone(datetime.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def lines_of(body: str) -> list[str]:
    """A body as IRC lines (a /me as CTCP ACTION), at most 20 of them."""
    out: list[str] = []
    for line in body.splitlines()[:20]:
        if line.startswith("/me "):
            line = f"\x01ACTION {line[4:]}\x01"
        out.append(line or " ")
    return out or [" "]
