"""The [sm] section of the config file: stream management (XEP-0198)."""

from __future__ import annotations

from pydantic import Field

from hongyan.config.schema import Section


class SMOptions(Section):
    section = "sm"

    resume_timeout: int = Field(3600, ge=1, description="seconds a XEP-0198 session whose "
                                "connection dropped waits for its client to resume it (iOS "
                                "clients need an hour); then its unacknowledged messages go to "
                                "offline storage and contacts see it go offline")
    max_unacked: int = Field(1000, ge=10, description="stanzas sent and not yet acknowledged "
                             "a session may have; past it the stream ends (policy-violation)")
    request_every: int = Field(5, ge=1, description="ask the client for an ack (<r/>) after "
                               "this many unacknowledged stanzas")
    request_interval: float = Field(30.0, gt=0, description="seconds between sweeps that ask "
                                    "every client with unacknowledged stanzas for an ack")


OPTIONS = SMOptions
