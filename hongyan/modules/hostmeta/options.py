"""The [hostmeta] section of the config file: connection discovery (XEP-0156)."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from hongyan.config.schema import Section


class HostMetaOptions(Section):
    section = "hostmeta"

    websocket_url: str = Field("", description="the WebSocket address clients are told "
                               "(wss://chat.example.org/xmpp-websocket, as a reverse proxy "
                               "publishes it); empty: the address the request came to")

    bosh_url: str = Field("", description="the BOSH address clients are told "
                          "(https://chat.example.org/http-bind); empty: the address the "
                          "request came to")

    @field_validator("bosh_url")
    @classmethod
    def _bosh_url(cls, v: str) -> str:
        v = v.strip()
        if v and not re.fullmatch(r"https?://[^/\s?#]+(/[^\s?#]*)?", v):
            raise ValueError(f"not an http:// or https:// URL: {v!r}")
        return v

    @field_validator("websocket_url")
    @classmethod
    def _url(cls, v: str) -> str:
        v = v.strip()
        if v and not re.fullmatch(r"wss?://[^/\s?#]+(/[^\s?#]*)?", v):
            raise ValueError(f"not a ws:// or wss:// URL: {v!r}")
        return v


OPTIONS = HostMetaOptions
