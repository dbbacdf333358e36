"""XEP-0082 date and time profiles."""

from __future__ import annotations

import datetime


def xmpp_datetime(ts: float) -> str:
    """XEP-0082 DateTime in UTC with millisecond precision."""
    dt = datetime.datetime.fromtimestamp(ts, datetime.UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def parse_xmpp_datetime(text: str) -> float:
    """Seconds since the epoch of a XEP-0082 DateTime; raises ValueError."""
    t = text.strip()
    if t.endswith("Z"):
        t = t[:-1] + "+00:00"
    dt = datetime.datetime.fromisoformat(t)
    if dt.tzinfo is None:
        raise ValueError("a XEP-0082 DateTime needs a time zone")
    return dt.timestamp()
