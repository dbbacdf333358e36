"""The [webclient] section of the config file: the bundled web client (Converse.js) at ``/``."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from hongyan.config.schema import Section


class WebClientOptions(Section):
    section = "webclient"

    assets_dir: str = Field("", description="the folder of Converse.js's built files "
                            "(converse.min.js and its assets); empty = web/node_modules/"
                            "converse.js/dist of this checkout, which ./scripts/serve.sh "
                            "installs with npm ci")
    transport: Literal["websocket", "bosh"] = Field(
        "websocket", description="how the page connects: XMPP over WebSocket "
        "(/xmpp-websocket) or BOSH (/http-bind); ?transport=bosh or ?transport=websocket in "
        "the page's address chooses for one visit")
    websocket_url: str = Field("", description="the WebSocket address the page connects to; "
                               "empty = /xmpp-websocket on the page's own host")
    bosh_url: str = Field("", description="the BOSH address the page connects to; empty = "
                          "/http-bind on the page's own host")
    connect_origins: list[str] = Field(
        default_factory=list, description="other origins (scheme://host[:port]) the page may "
        "reach besides its own and this listener's HTTPS port, e.g. the upload service's "
        "public_url behind a reverse proxy")

    @field_validator("websocket_url")
    @classmethod
    def _ws(cls, v: str) -> str:
        v = v.strip()
        if v and not re.fullmatch(r"wss?://[^/\s?#\"'<>]+(/[^\s?#\"'<>]*)?", v):
            raise ValueError(f"not a ws:// or wss:// URL: {v!r}")
        return v

    @field_validator("bosh_url")
    @classmethod
    def _bosh(cls, v: str) -> str:
        v = v.strip()
        if v and not re.fullmatch(r"https?://[^/\s?#\"'<>]+(/[^\s?#\"'<>]*)?", v):
            raise ValueError(f"not an http:// or https:// URL: {v!r}")
        return v

    @field_validator("connect_origins")
    @classmethod
    def _origins(cls, v: list[str]) -> list[str]:
        out = []
        for o in v:
            o = o.strip().lower().rstrip("/")
            if not re.fullmatch(r"(https?|wss?)://[a-z0-9.\-\[\]:]+", o):
                raise ValueError(f"not an origin (scheme://host[:port]): {o!r}")
            out.append(o)
        return out


OPTIONS = WebClientOptions
