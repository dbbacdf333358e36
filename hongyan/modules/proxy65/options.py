"""The [proxy65] section of the config file: the SOCKS5 Bytestreams proxy (XEP-0065), off by
default."""

from __future__ import annotations

from pydantic import Field, field_validator

from hongyan.config.schema import Section, ServiceHost

MiB = 1024 * 1024


class Proxy65Options(Section):
    section = "proxy65"

    enabled: bool = Field(False, description="run the proxy: its port opens and "
                          "proxy.<domain> is listed in the server's disco#items")
    host: ServiceHost = Field("", description="the proxy's JID (a domain); empty = "
                              "proxy.<server.domain>")
    bind: list[str] = Field(default_factory=lambda: ["0.0.0.0"],
                            description="addresses the SOCKS5 listener binds")
    port: int = Field(7777, ge=0, le=65535, description="the SOCKS5 listener's TCP port "
                      "(0: one the kernel picks)")
    public_host: str = Field("", description="the host clients are told to connect to "
                             "(<streamhost host=...>): an address or name reachable from "
                             "outside; empty = the first bind address when it is not a "
                             "wildcard, else server.domain")
    public_port: int = Field(0, ge=0, le=65535, description="the port clients are told "
                             "(a port forwarded to the listener); 0 = the listener's")
    activation_timeout: float = Field(60.0, ge=1, le=600, description="seconds a "
                                      "connection may take from accept until its bytestream "
                                      "is activated; then it is closed")
    max_bytes: int = Field(1024 * MiB, ge=0, description="bytes one bytestream may relay, "
                           "both directions together; past it both connections are closed "
                           "(0 = no limit)")
    rate: int = Field(0, ge=0, description="bytes per second one bytestream may relay, both "
                      "directions together; reading pauses when it is over (0 = no limit)")
    max_connections: int = Field(1000, ge=2, description="SOCKS5 connections open at once; "
                                 "one more is closed at accept")
    max_connections_per_ip: int = Field(20, ge=2, description="SOCKS5 connections open at "
                                        "once from one client address (a bytestream takes "
                                        "two when both sides share it)")
    allowed_domains: list[str] = Field(default_factory=list, description="other domains "
                                       "whose users may use the proxy (\"*\": every domain); "
                                       "the server's own always may")

    @field_validator("allowed_domains")
    @classmethod
    def _domains(cls, v: list[str]) -> list[str]:
        return [d.strip().lower() for d in v if d.strip()]

    @field_validator("public_host")
    @classmethod
    def _public(cls, v: str) -> str:
        v = v.strip()
        if any(c.isspace() or c in "/'\"<>&" for c in v):
            raise ValueError(f"not a host name or address: {v!r}")
        return v

    def host_for(self, domain: str) -> str:
        return self.host or f"proxy.{domain}"

    def services(self, domain: str) -> dict[str, str]:
        return {"host": self.host_for(domain)} if self.enabled else {}


OPTIONS = Proxy65Options
