"""The [lan] section of the config file: announcing the server on the local network by
mDNS/DNS-SD (off by default)."""

from __future__ import annotations

import ipaddress

from pydantic import Field, field_validator

from hongyan.config.schema import Section


def _ip(v: str) -> str:
    try:
        return str(ipaddress.ip_address(v.strip()))
    except ValueError:
        raise ValueError(f"not an IP address: {v!r}") from None


class LanOptions(Section):
    section = "lan"

    enabled: bool = Field(False, description="announce _xmpp-client._tcp (and "
                          "_xmpps-client._tcp with direct TLS) by multicast DNS")
    instance: str = Field("", max_length=63, description="the service instance's name "
                          "browsers show (empty: \"Hongyan <server.domain>\")")
    interfaces: list[str] = Field(default_factory=list, description="addresses of the "
                                  "interfaces to answer on (empty: every interface)")
    addresses: list[str] = Field(default_factory=list, description="addresses announced for "
                                 "the server (empty: c2s.bind when it names addresses, else "
                                 "every interface's)")
    host: str = Field("", description="the .local host name the service points to (empty: "
                      "this machine's name)")

    @field_validator("interfaces", "addresses")
    @classmethod
    def _ips(cls, v: list[str]) -> list[str]:
        return [_ip(a) for a in v]

    @field_validator("instance")
    @classmethod
    def _instance(cls, v: str) -> str:
        if any(ord(c) < 32 for c in v):
            raise ValueError("no control characters in an instance name")
        return v.strip()

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        v = v.strip().removesuffix(".").removesuffix(".local")
        if v and not all(p and len(p) <= 63 and p.replace("-", "").isalnum()
                         for p in v.split(".")):
            raise ValueError(f"not a host name: {v!r}")
        return v


OPTIONS = LanOptions
