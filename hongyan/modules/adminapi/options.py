"""The [adminapi] section of the config file: where the admin API may be used over plain
HTTP."""

from __future__ import annotations

from pydantic import Field

from hongyan.config.schema import Network, Section


class AdminApiOptions(Section):
    section = "adminapi"

    plain_http_from: list[Network] = Field(
        default_factory=lambda: ["127.0.0.0/8", "::1/128"], description="client addresses "
        "(or networks) that may call /api/ over plain HTTP (a bearer token in clear text): "
        "loopback by default; everyone else must use HTTPS (or a trusted reverse proxy that "
        "says https)")
    max_body: int = Field(262144, ge=131072, le=4194304, description="the largest "
                          "request body in bytes (at least what the longest valid one takes: "
                          "two texts of 4,096 characters, escaped)")


OPTIONS = AdminApiOptions
