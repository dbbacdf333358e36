"""The [metrics] section of the config file: who may read ``/metrics``."""

from __future__ import annotations

from pydantic import Field, field_validator

from hongyan.config.schema import Network, Section


class MetricsOptions(Section):
    section = "metrics"

    allow_from: list[Network] = Field(
        default_factory=lambda: ["127.0.0.0/8", "::1/128"], description="client addresses "
        "(or networks) that may read /metrics without a token: loopback by default; behind a "
        "trusted reverse proxy, the address the proxy forwards")
    token: str = Field("", description="a bearer token that also lets any client read "
                       "/metrics (Authorization: Bearer <token>); empty = none. At least 16 "
                       "characters")
    peer_timeout: float = Field(2.0, gt=0, le=60, description="seconds the answering worker "
                                "waits for the other workers' numbers")

    @field_validator("token")
    @classmethod
    def _token(cls, v: str) -> str:
        v = v.strip()
        if v and len(v) < 16:
            raise ValueError("a metrics token has at least 16 characters")
        return v


OPTIONS = MetricsOptions
