"""The [invites] section of the config file: invitations (XEP-0379, XEP-0401, XEP-0445)."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from hongyan.config.schema import Section

#: the longest lifetime an invitation may be given (a year) and the most uses
MAX_TTL = 365 * 86400
MAX_USES = 1000


class InvitesOptions(Section):
    section = "invites"

    allow_users: bool = Field(False, description="every user of the server may invite "
                              "people (the ad-hoc command urn:xmpp:invite#invite): a newcomer "
                              "registers with the invitation and becomes the inviter's "
                              "contact; off: only the administrators (server.admins) invite")
    per_user: int = Field(10, ge=1, le=MAX_USES, description="how many active invitations a "
                          "user who is not an administrator may have at once (past it: "
                          "resource-constraint)")
    ttl: int = Field(7 * 86400, ge=60, le=MAX_TTL, description="seconds an invitation is "
                     "valid when its maker gives no lifetime")
    uses: int = Field(1, ge=1, le=MAX_USES, description="how many accounts (or contacts) one "
                      "invitation is good for when its maker does not say")
    base_url: str = Field("", description="the public address of the invitation pages "
                          "(https://chat.example.org, as a reverse proxy publishes them); "
                          "empty: the HTTP listener's own address")

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        v = v.strip().rstrip("/")
        if v and not re.fullmatch(r"https?://[^/\s?#]+(/[^\s?#]*)?", v):
            raise ValueError(f"not an http:// or https:// URL: {v!r}")
        return v


OPTIONS = InvitesOptions
