"""The [extdisco] section of the config file: STUN and TURN servers announced to clients
(XEP-0215 External Service Discovery)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from hongyan.config.schema import Section


class ExternalService(BaseModel):
    """One ``[[extdisco.service]]`` table: a STUN or TURN server clients may use."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["stun", "stuns", "turn", "turns"] = Field(description="the service type "
                                                           "(XEP-0215 registry)")
    host: str = Field(description="the server's host name or IP address, as clients reach it")
    port: int = Field(3478, ge=1, le=65535, description="its port (3478 for STUN/TURN, 5349 "
                      "for TURN over TLS)")
    transport: Literal["udp", "tcp"] = Field("udp", description="udp or tcp")
    name: str = Field("", description="a name shown to users (empty: none)")
    secret: SecretStr | None = Field(None, description="the TURN server's shared secret "
                                     "(coturn's static-auth-secret, use-auth-secret): clients "
                                     "get time-limited credentials made from it, never the "
                                     "secret itself; unset = a service that needs none")

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        v = v.strip()
        if not v or any(c.isspace() for c in v):
            raise ValueError(f"not a host name: {v!r}")
        return v

    @field_validator("secret")
    @classmethod
    def _secret(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not v.get_secret_value():
            raise ValueError("an empty secret; leave the key out for a service without one")
        return v


class ExtdiscoOptions(Section):
    section = "extdisco"

    ttl: int = Field(86400, ge=60, le=30 * 86400, description="seconds the TURN credentials "
                     "handed out stay valid (the 'expires' of XEP-0215, the timestamp in the "
                     "TURN REST username)")
    service: list[ExternalService] = Field(default_factory=list, description="the services "
                                            "announced, one [[extdisco.service]] table each")


OPTIONS = ExtdiscoOptions
