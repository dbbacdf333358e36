"""The configuration schema. Every key has a safe default; unknown keys are errors."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, ClassVar, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    field_validator,
    model_validator,
)

from hongyan.xmpp.jid import JID, JIDError

_DNS = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}"
                  r"[a-z0-9])?)*$")


def _service_host(v: str) -> str:
    """A component's domain (MUC, PubSub): lower-cased, empty for the default."""
    v = v.strip().lower()
    if v and not _DNS.match(v):
        raise ValueError(f"not a valid domain name: {v!r}")
    return v


_BARE = re.compile(r"^[^@/\s]+@[^@/\s]+$")

ServiceHost = Annotated[str, AfterValidator(_service_host)]


class Section(BaseModel):
    """A ``[section]`` of the config file. The server's own are below; each feature declares
    its own in its folder (``options.py``: ``OPTIONS``, a Section whose ``section`` is the
    folder's name), and the loader finds them by name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: the table a feature's options are read from (empty: one of the server's own)
    section: ClassVar[str] = ""

    def services(self, domain: str) -> dict[str, str]:
        """The domains the feature serves besides ``domain`` (the server's), by key: each must
        be a domain of its own."""
        return {}


S = TypeVar("S", bound=Section)


def _contact_uri(v: str) -> str:
    """A XEP-0157 contact address: a mailto:, xmpp: or http(s): URI."""
    u = v.strip()
    scheme, _, rest = u.partition(":")
    scheme = scheme.lower()
    if scheme == "mailto":
        if not re.fullmatch(r"[^@\s/?#]+@[^@\s/?#]+(\?\S*)?", rest):
            raise ValueError(f"not a mailto: address (mailto:user@example.org): {v!r}")
    elif scheme == "xmpp":
        try:
            JID.parse(rest.split("?", 1)[0].removeprefix("//"))
        except JIDError:
            raise ValueError(f"not an xmpp: URI of a JID (xmpp:user@example.org): "
                             f"{v!r}") from None
        if not rest or any(c.isspace() for c in rest):
            raise ValueError(f"not an xmpp: URI: {v!r}")
    elif scheme in ("https", "http"):
        if not re.fullmatch(r"//[^/\s?#@]+(/\S*)?", rest):
            raise ValueError(f"not an http(s): URL (https://example.org/abuse): {v!r}")
    else:
        raise ValueError(f"a contact address is a mailto:, xmpp: or https: URI: {v!r}")
    return f"{scheme}:{rest}"


ContactURI = Annotated[str, AfterValidator(_contact_uri)]


class ContactsSection(Section):
    """XEP-0157 contact addresses, published in the server's disco#info (only those set)."""

    abuse: list[ContactURI] = Field(default_factory=list, description="where abuse (spam, "
                                    "harassment) is reported")
    admin: list[ContactURI] = Field(default_factory=list, description="the administrators")
    feedback: list[ContactURI] = Field(default_factory=list)
    sales: list[ContactURI] = Field(default_factory=list)
    security: list[ContactURI] = Field(default_factory=list, description="where security "
                                       "issues are reported")
    support: list[ContactURI] = Field(default_factory=list)

    def fields(self) -> dict[str, list[str]]:
        """The serverinfo form's fields that have addresses (var -> values)."""
        return {f"{k}-addresses": list(v) for k, v in self.model_dump().items() if v}


class ServerSection(Section):
    domain: str = Field("localhost", description="the XMPP domain this server serves")
    data_dir: str = Field("./data", description="where the SQLite database and the "
                          "self-signed certificate live")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    admins: list[str] = Field(default_factory=list, description="bare JIDs of administrators "
                              "(they may create nodes on the pubsub service, see "
                              "pubsub.create_nodes)")
    workers: int = Field(1, ge=1, le=64, description="worker processes (one event loop each; "
                         "more than one uses more cores, see docs/design.md, Workers)")
    contacts: ContactsSection = Field(default_factory=ContactsSection,
                                      description="XEP-0157 contact addresses ([server.contacts])")

    @field_validator("admins")
    @classmethod
    def _admins(cls, v: list[str]) -> list[str]:
        # the shape only (the node prepares each as a JID): user@domain, no resource
        for jid in v:
            if not _BARE.match(jid):
                raise ValueError(f"{jid!r} is not a bare JID (user@domain)")
        return v

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
    # limits (docs/design.md, Limits); with several workers each counts for itself
    rate_bytes: int = Field(131072, ge=1024, description="bytes per second a client stream may "
                            "send on average; past its burst the server stops reading it")
    rate_burst: int = Field(1048576, ge=1024, description="bytes a client may send at once "
                            "before rate_bytes applies")
    rate_stanzas: int = Field(200, ge=1, description="stanzas (and other top-level elements) "
                              "per second a client stream may send on average; past its burst "
                              "the server stops reading it")
    rate_stanzas_burst: int = Field(2000, ge=10, description="stanzas a client may send at "
                                    "once before rate_stanzas applies")
    # the same, for all the streams of one address (an IPv6 /64) together
    rate_bytes_per_ip: int = Field(1048576, ge=1024, description="bytes per second all the "
                                   "streams from one address may send on average")
    rate_burst_per_ip: int = Field(8388608, ge=1024, description="bytes they may send at once")
    rate_stanzas_per_ip: int = Field(1000, ge=1, description="stanzas per second all the "
                                     "streams from one address may send on average")
    rate_stanzas_burst_per_ip: int = Field(10000, ge=10, description="stanzas they may send "
                                           "at once")
    preauth_max_stanza_size: int = Field(16384, ge=1024, description="max stanza size (bytes) "
                                         "before authentication (at most max_stanza_size)")
    preauth_per_ip: int = Field(32, ge=1, description="unauthenticated connections from one "
                                "address (per worker); the next gets policy-violation")
    preauth_total: int = Field(10000, ge=1, description="unauthenticated connections in all "
                               "(per worker); the next gets policy-violation")


def _network(v: str) -> str:
    """A trusted proxy: an IP address or network (``10.0.0.0/8``), normalized."""
    try:
        return str(ipaddress.ip_network(v.strip(), strict=False))
    except ValueError:
        raise ValueError(f"not an IP address or network: {v!r}") from None


#: an IP address or network, normalized (trusted proxies; who may read /metrics)
Network = Annotated[str, AfterValidator(_network)]


def _origin(v: str) -> str:
    """An allowed WebSocket origin: ``scheme://host[:port]``, as browsers send it."""
    o = v.strip().lower().rstrip("/")
    if not re.fullmatch(r"https?://[^/\s?#]+", o):
        raise ValueError(f"not an origin (scheme://host[:port]): {v!r}")
    return o


class HTTPSection(Section):
    enabled: bool = Field(True, description="the HTTP listener (WebSocket, discovery, /health)")
    bind: list[str] = Field(default_factory=lambda: ["0.0.0.0"],
                            description="addresses to listen on")
    port: int = Field(5280, ge=0, le=65535, description="HTTP port (0 = any free port)")
    tls: bool = Field(True, description="also listen for HTTPS, with the certificate of c2s")
    tls_port: int = Field(5281, ge=0, le=65535, description="HTTPS port (0 = any free port)")
    trusted_proxies: list[Network] = Field(
        default_factory=list, description="reverse proxies (addresses or networks) whose "
        "X-Forwarded-For and X-Forwarded-Proto headers are believed; nobody else's are")
    websocket: bool = Field(True, description="XMPP over WebSocket (RFC 7395) at "
                            "/xmpp-websocket")
    websocket_lean: bool = Field(True, description="answer WebSocket upgrades at the "
                                 "listener's door and keep no aiohttp object per WebSocket "
                                 "(false: aiohttp's WebSocketResponse, as before)")
    websocket_ping: float = Field(30.0, ge=0, description="seconds between WebSocket pings "
                                  "to an idle client (0 = none); no pong within half of it "
                                  "closes the connection")
    websocket_origins: list[Annotated[str, AfterValidator(_origin)]] = Field(
        default_factory=list, description="origins (scheme://host[:port]) whose pages may "
        "open a WebSocket; empty = any")
    bosh: bool = Field(True, description="XMPP over BOSH (XEP-0206) at /http-bind")
    bosh_max_wait: int = Field(60, ge=1, le=3600, description="the longest a BOSH request "
                               "is held for the server's output, seconds (a client's "
                               "'wait' is cut to it)")
    bosh_max_hold: int = Field(1, ge=0, le=8, description="the most BOSH requests held at "
                               "once per session (a client's 'hold' is cut to it)")
    bosh_inactivity: int = Field(60, ge=5, le=3600, description="seconds a BOSH session "
                                 "may go without a request before it is over")
    bosh_polling: int = Field(2, ge=0, le=600, description="the shortest interval, seconds, "
                              "between two empty requests of a polling session (hold 0)")
    bosh_max_pause: int = Field(120, ge=0, le=3600, description="the longest pause, "
                                "seconds, a BOSH client may ask for")
    max_request_line: int = Field(8190, ge=256, le=1048576, description="bytes a request's "
                                  "target (path and query) may have; longer: 414")
    max_header_size: int = Field(8190, ge=256, le=1048576, description="bytes one header "
                                 "field (name and value) may have; longer: 431")
    max_headers: int = Field(128, ge=8, le=4096, description="header fields a request may "
                             "have; more: 431")
    header_timeout: float = Field(10.0, gt=0, le=3600, description="seconds a client may take "
                                  "over a request head, from its first byte (a connection's "
                                  "first: from the connect); slower: 408 and closed")
    keepalive_timeout: float = Field(75.0, gt=0, le=86400, description="seconds a kept-alive "
                                     "connection may wait for its next request before it is "
                                     "closed")
    health_timeout: float = Field(2.0, gt=0, le=60, description="seconds /health waits for "
                                  "each other worker to answer its ping; one that does not "
                                  "counts as down (503)")
    loopback_secure: bool = Field(True, description="a browser on this machine whose page "
                                  "came from this machine (loopback client, loopback Origin, "
                                  "no forwarding headers) may log in over plain HTTP, as over "
                                  "TLS: what lets the web client at http://localhost:5280/ work")


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
    max_failures_per_ip: int = Field(20, ge=0, description="failed logins from one address "
                                     "(within 10 minutes of each other) after which it is "
                                     "banned for ban_seconds (0 = never banned)")
    ban_seconds: float = Field(3600.0, gt=0, description="how long a banned address may not "
                               "log in (new connections get policy-violation)")
    fast: bool = Field(True, description="FAST tokens (XEP-0484) for SASL2 logins in one "
                       "round trip")
    fast_token_lifetime: float = Field(14 * 86400.0, ge=60, description="seconds a FAST token "
                                       "lasts; a login in its second half gets a new one")


class RegistrationSection(Section):
    enabled: bool | None = Field(None, description="in-band registration (XEP-0077); "
                                 "default: on for localhost, off otherwise")
    min_password_length: int = Field(4, ge=1, le=1024)
    per_ip_per_hour: int = Field(5, ge=0, description="accounts one address may register in an "
                                 "hour (per worker; 0 = no limit)")


class ClusterSection(Section):
    backend: Literal["local", "redis"] = "local"
    redis_url: str = "redis://127.0.0.1:6379/0"
    node_id: str = ""


class ModulesSection(Section):
    disabled: list[str] = Field(default_factory=list, description="modules to switch off")
    package: str = Field("hongyan.modules", description="the package whose subpackages are "
                         "the feature modules (each exposes MODULE)")


class ComponentListenerSection(Section):
    bind: list[str] = Field(default_factory=lambda: ["127.0.0.1"],
                            description="addresses external components (XEP-0114) connect "
                            "to: the protocol has no TLS, so loopback by default")
    port: int = Field(5347, ge=0, le=65535, description="0 = any free port; the listener "
                      "opens only when some component is configured")


class ComponentEntry(Section):
    """One ``[[components]]`` entry: an external component (XEP-0114) and its secret."""

    name: ServiceHost = Field(description="the domain the component serves")
    secret: SecretStr = Field(description="what its handshake proves it knows")

    @field_validator("name")
    @classmethod
    def _named(cls, v: str) -> str:
        if not v:
            raise ValueError("a component needs a name (its domain)")
        return v

    @field_validator("secret")
    @classmethod
    def _secret(cls, v: SecretStr) -> SecretStr:
        if not v.get_secret_value():
            raise ValueError("must not be empty")
        return v


def _route(v: str) -> str:
    """A static route's address: ``host:port`` (``[v6]:port``)."""
    host, sep, port = v.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"not host:port: {v!r}")
    return f"{host}:{port}"


Domain = Annotated[str, AfterValidator(_service_host)]


class S2SSection(Section):
    """Server-to-server federation (RFC 6120; docs/design.md, Federation)."""

    enabled: bool | None = Field(None, description="federate with other XMPP servers (port "
                                 "5269); default: on unless the domain is localhost")
    bind: list[str] = Field(default_factory=lambda: ["0.0.0.0"],
                            description="addresses other servers connect to")
    port: int = Field(5269, ge=0, le=65535, description="0 = any free port")
    direct_tls: bool = Field(False, description="also accept direct TLS (XEP-0368), announced "
                             "by an _xmpps-server._tcp SRV record")
    direct_tls_port: int = Field(5270, ge=0, le=65535, description="0 = any free port")
    resolver: str = Field("", description="the DNS server (ip or ip:port) asked for remote "
                          "servers' SRV and address records; empty = /etc/resolv.conf's")
    require_encryption: bool = Field(True, description="STARTTLS before anything else, in "
                                     "both directions")
    dialback: bool = Field(True, description="authenticate servers by dialback (XEP-0220) "
                           "when their certificate does not prove their name")
    ca_file: str = Field("", description="PEM file of CAs trusted besides the system's store "
                         "for peers' certificates")
    require_valid_certificates: bool = Field(False, description="only peers whose "
                                             "certificate proves their domain (RFC 6125); "
                                             "incoming streams are then asked for one and "
                                             "offered SASL EXTERNAL (XEP-0178)")
    routes: dict[str, Annotated[str, AfterValidator(_route)]] = Field(
        default_factory=dict, description="domain -> host:port used instead of DNS (tests, "
        "private networks)")
    allow: list[Domain] = Field(default_factory=list, description="the only domains to "
                                "federate with (empty = any not in deny)")
    deny: list[Domain] = Field(default_factory=list, description="domains never federated "
                               "with")
    connect_timeout: float = Field(10.0, gt=0, description="seconds to reach a remote server")
    negotiation_timeout: float = Field(30.0, gt=0, description="seconds a stream may take to "
                                       "finish TLS and authentication, in either direction")
    idle_timeout: float = Field(600.0, gt=0, description="seconds without a stanza after "
                                "which a stream is closed")
    max_queue: int = Field(1000, ge=1, description="stanzas held per remote domain while its "
                           "stream connects; past it they bounce")
    max_streams_per_ip: int = Field(32, ge=1, description="incoming streams from one address "
                                    "(per worker); the next gets policy-violation")
    max_streams: int = Field(10000, ge=1, description="incoming streams in all (per worker)")
    max_stanza_size: int = Field(262144, ge=10000, description="bytes")

    @field_validator("ca_file")
    @classmethod
    def _ca_file(cls, v: str) -> str:
        if v and not Path(v).is_file():
            raise ValueError(f"no such file: {v!r}")
        return v

    @model_validator(mode="after")
    def _lists(self) -> S2SSection:
        both = set(self.allow) & set(self.deny)
        if both:
            raise ValueError(f"in both allow and deny: {', '.join(sorted(both))}")
        return self

    def federates(self, domain: str) -> bool:
        if domain in self.deny:
            return False
        return not self.allow or domain in self.allow


class IRCSection(Section):
    """The IRC listener (docs/design.md, IRC): IRC clients log in with their XMPP account;
    #channels are rooms of the MUC service."""

    enabled: bool = Field(False, description="listen for IRC clients")
    bind: list[str] = Field(default_factory=lambda: ["0.0.0.0"],
                            description="addresses to listen on")
    port: int = Field(6667, ge=0, le=65535, description="plain TCP port (0 = any free port)")
    tls: bool = Field(True, description="also listen for IRC over TLS (the c2s certificate)")
    tls_port: int = Field(6697, ge=0, le=65535, description="TLS port (0 = any free port)")
    allow_plaintext_auth: bool = Field(False, description="accept passwords on the plain "
                                       "port (else only over TLS)")
    muc_service: ServiceHost = Field("", description="the MUC service #channels are rooms "
                                     "of; empty = conference.<domain>")
    server_name: ServiceHost = Field("", description="the server name IRC clients see; empty "
                                     "= the domain")
    history: int = Field(20, ge=0, le=500, description="room messages replayed on JOIN")
    chathistory_max: int = Field(100, ge=1, le=1000, description="the most messages one "
                                 "IRCv3 CHATHISTORY command gives (ISUPPORT CHATHISTORY)")
    lines_per_second: float = Field(2.0, gt=0, description="lines a client may send per "
                                    "second on average; past its burst reading pauses")
    lines_burst: int = Field(20, ge=1, description="lines a client may send at once before "
                             "lines_per_second applies")
    flood_lines: int = Field(100, ge=1, description="lines past the burst in one go after "
                             "which the client is disconnected (Excess Flood)")
    auth_timeout: float = Field(60.0, gt=0, description="seconds a connection may take to "
                                "register")


class Config(Section):
    server: ServerSection = ServerSection()
    c2s: C2SSection = C2SSection()
    http: HTTPSection = HTTPSection()
    tls: TLSSection = TLSSection()
    storage: StorageSection = StorageSection()
    auth: AuthSection = AuthSection()
    registration: RegistrationSection = RegistrationSection()
    cluster: ClusterSection = ClusterSection()
    modules: ModulesSection = ModulesSection()
    component_listener: ComponentListenerSection = ComponentListenerSection()
    components: list[ComponentEntry] = Field(default_factory=list)
    s2s: S2SSection = S2SSection()
    irc: IRCSection = IRCSection()

    #: each feature's section, by name (see :meth:`options`; the loader fills it)
    _features: dict[str, Section] = PrivateAttr(default_factory=dict)

    def options(self, cls: type[S]) -> S:
        """A feature's options: its ``[cls.section]`` as the config file set it, or its
        defaults (no file, or the feature is not there)."""
        found = self._features.get(cls.section)
        return found if isinstance(found, cls) else cls()

    def with_features(self, features: dict[str, Section]) -> Config:
        self._features = dict(features)
        return self

    @property
    def s2s_enabled(self) -> bool:
        if self.s2s.enabled is not None:
            return self.s2s.enabled
        return self.server.domain != "localhost"

    @property
    def registration_enabled(self) -> bool:
        if self.registration.enabled is not None:
            return self.registration.enabled
        return self.server.domain == "localhost"
