"""The configuration schema. Every key has a safe default; unknown keys are errors."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

_DNS = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}"
                  r"[a-z0-9])?)*$")


def _service_host(v: str) -> str:
    """A component's domain (MUC, PubSub): lower-cased, empty for the default."""
    v = v.strip().lower()
    if v and not _DNS.match(v):
        raise ValueError(f"not a valid domain name: {v!r}")
    return v


ServiceHost = Annotated[str, AfterValidator(_service_host)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSection(Section):
    domain: str = Field("localhost", description="the XMPP domain this server serves")
    data_dir: str = Field("./data", description="where the SQLite database and the "
                          "self-signed certificate live")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    admins: list[str] = Field(default_factory=list, description="bare JIDs of administrators")
    workers: int = Field(1, ge=1, le=64, description="worker processes (one event loop each; "
                         "more than one uses more cores, see docs/design.md, Workers)")

    @field_validator("domain")
    @classmethod
    def _domain(cls, v: str) -> str:
        d = v.strip().lower().rstrip(".")
        try:
            ipaddress.ip_address(d.strip("[]"))
            return d
        except ValueError:
            pass
        if not _DNS.match(d):
            raise ValueError(f"{v!r} is not a DNS name or IP address")
        return d


class C2SSection(Section):
    bind: list[str] = Field(default_factory=lambda: ["0.0.0.0"],
                            description="addresses to listen on")
    port: int = Field(5222, ge=0, le=65535, description="STARTTLS port (0 = any free port)")
    direct_tls: bool = Field(True, description="also listen for direct TLS (XEP-0368)")
    direct_tls_port: int = Field(5223, ge=0, le=65535)
    require_encryption: bool = Field(True, description="refuse to authenticate before TLS")
    allow_plaintext_auth: bool = Field(False, description="allow SASL on unencrypted "
                                       "connections (benchmarks on loopback only)")
    max_stanza_size: int = Field(262144, ge=10000, description="bytes")
    max_depth: int = Field(64, ge=8, le=1024)
    auth_timeout: float = Field(30.0, gt=0, description="seconds of silence allowed before "
                                "authentication")
    idle_parser_release: float = Field(2.0, ge=0, description="seconds without input after "
                                       "which an idle session's XML parser is released to save "
                                       "memory (0 = never)")


class TLSSection(Section):
    cert_file: str = Field("", description="PEM certificate chain; empty = self-signed")
    key_file: str = Field("", description="PEM private key")

    @model_validator(mode="after")
    def _pair(self) -> TLSSection:
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("set both cert_file and key_file, or neither")
        return self


class StorageSection(Section):
    url: str = Field("sqlite:///./data/hongyan.db",
                     description="sqlite:///path or postgresql://user@host:port/db")
    pool_size: int = Field(10, ge=1, le=1000)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("sqlite://", "postgresql://", "postgres://")):
            raise ValueError("must start with sqlite://, postgresql:// or postgres://")
        return v


Mechanism = Literal["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-1",
                    "PLAIN"]


ALL_MECHANISMS: tuple[Mechanism, ...] = (
    "SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-1", "PLAIN")


class AuthSection(Section):
    scram_iterations: int = Field(4096, ge=4096, le=1_000_000)
    mechanisms: list[Mechanism] = Field(default_factory=lambda: list(ALL_MECHANISMS))
    failure_delay: float = Field(1.0, ge=0, description="seconds; doubles per failure")
    failure_delay_max: float = Field(30.0, ge=0)


class RegistrationSection(Section):
    enabled: bool | None = Field(None, description="in-band registration (XEP-0077); "
                                 "default: on for localhost, off otherwise")
    min_password_length: int = Field(4, ge=1, le=1024)


class OfflineSection(Section):
    quota: int = Field(1000, ge=0, description="stored messages per user")


class SMSection(Section):
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


class MucSection(Section):
    host: ServiceHost = Field("", description="the MUC service's domain (XEP-0045); "
                      "empty = conference.<server.domain>. Switch MUC off with "
                      "[modules] disabled = [\"muc\"]")
    history_size: int = Field(20, ge=0, le=1000, description="messages per room kept in "
                              "memory and sent to a joining occupant")
    max_users: int = Field(200, ge=1, le=100000, description="default and upper bound of a "
                           "room's muc#roomconfig_maxusers")
    max_rooms_per_user: int = Field(100, ge=1, description="rooms one user may own")
    archive: bool = Field(True, description="whether a new room archives its messages "
                          "(XEP-0313 on the room; its owner may change it). Writes are "
                          "batched with the [mam] flush settings")


class MamSection(Section):
    default: Literal["always", "never", "roster"] = Field(
        "always", description="XEP-0313 default for users who set no preferences")
    retention_days: float = Field(0, ge=0, description="archived messages older than this "
                                  "many days are removed; 0 = keep forever")
    cleanup_interval: float = Field(3600.0, gt=0, description="seconds between retention "
                                    "cleanups")
    flush_interval: float = Field(0.005, gt=0, le=5, description="seconds archived messages "
                                  "wait in memory before one batched write")
    flush_rows: int = Field(500, ge=1, description="queued messages that trigger a write "
                            "before flush_interval")
    max_queued: int = Field(10000, ge=1, description="queued messages beyond which a sender "
                            "waits (its next stanzas are read once the queue was handed to "
                            "the database): bounds the archive's memory when writes fall "
                            "behind (each room archive's queue too)")
    max_page: int = Field(250, ge=1, le=10000, description="most messages one query returns")


class PushSection(Section):
    include_body: bool = Field(False, description="put the message body in XEP-0357 "
                               "notifications (last-message-body); it then passes through the "
                               "app server and the phone vendor's push service")
    include_sender: bool = Field(True, description="put the sender's JID in notifications "
                                 "(last-message-sender)")
    timeout: float = Field(10.0, gt=0, le=300, description="seconds to wait for the app "
                           "server's answer to a notification")
    retries: int = Field(2, ge=0, le=10, description="times a notification is sent again "
                         "after a timeout or a temporary (type wait) error")
    retry_delay: float = Field(5.0, ge=0, le=3600, description="seconds before the first "
                               "retry; doubled for each further one")
    max_per_user: int = Field(20, ge=1, le=1000, description="push registrations one "
                              "account may keep (one per device and app server node)")


class PubSubSection(Section):
    host: ServiceHost = Field("", description="the XEP-0060 service's domain; empty = "
                      "pubsub.<server.domain>")
    service: bool = Field(True, description="run the pubsub.<domain> service (PEP on "
                          "accounts runs whenever the pep module is loaded)")
    max_item_size: int = Field(131072, ge=1024, le=16 * 1024 * 1024, description="bytes an "
                               "item's payload may have (avatars are the largest PEP items)")
    max_items: int = Field(1000, ge=1, le=100000, description="upper bound of a node's "
                           "pubsub#max_items (and what 'max' means)")
    max_nodes: int = Field(1000, ge=1, description="nodes one service (one account's PEP) "
                           "may hold")


class ClusterSection(Section):
    backend: Literal["local", "redis"] = "local"
    redis_url: str = "redis://127.0.0.1:6379/0"
    node_id: str = ""


class ModulesSection(Section):
    disabled: list[str] = Field(default_factory=list, description="modules to switch off")
    package: str = Field("hongyan.modules", description="the package whose subpackages are "
                         "the feature modules (each exposes MODULE)")


class Config(Section):
    server: ServerSection = ServerSection()
    c2s: C2SSection = C2SSection()
    tls: TLSSection = TLSSection()
    storage: StorageSection = StorageSection()
    auth: AuthSection = AuthSection()
    registration: RegistrationSection = RegistrationSection()
    offline: OfflineSection = OfflineSection()
    sm: SMSection = SMSection()
    muc: MucSection = MucSection()
    mam: MamSection = MamSection()
    push: PushSection = PushSection()
    pubsub: PubSubSection = PubSubSection()
    cluster: ClusterSection = ClusterSection()
    modules: ModulesSection = ModulesSection()

    @model_validator(mode="after")
    def _muc_host(self) -> Config:
        if self.muc.host == self.server.domain:
            raise ValueError("muc.host must be a domain of its own, not server.domain")
        if self.pubsub.host and self.pubsub.host in (self.server.domain, self.muc.host):
            raise ValueError("pubsub.host must be a domain of its own, not server.domain or "
                             "muc.host")
        return self

    @property
    def registration_enabled(self) -> bool:
        if self.registration.enabled is not None:
            return self.registration.enabled
        return self.server.domain == "localhost"
