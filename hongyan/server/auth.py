"""Authentication: the SASL exchange of one stream (RFC 6120 §6) and the node's guard against
password guessing.

:class:`SaslExchange` exists only while a stream negotiates: it offers the mechanisms the
transport allows, runs PLAIN or SCRAM (with channel binding when the TLS connection provides
it), answers failures after the guard's delay and ends the stream after five of them. On
success it hands the account name and the ``<success/>`` bytes to the session, which then
drops it. :class:`Guard` counts failures per client address (with several workers, every
worker counts every failure), bans an address that fails ``auth.max_failures_per_ip`` times
for ``auth.ban_seconds`` (its streams end, its new connections are refused), and remembers
recent PLAIN successes so that a repeat login skips the key derivation.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element
from hongyan.xmpp.errors import StreamError
from hongyan.xmpp.sasl import (
    SaslFailure,
    ScramServer,
    parse_plain,
    scram_mechanism,
    verify_password,
)

if TYPE_CHECKING:
    from hongyan.config.schema import AuthSection
    from hongyan.server.accounts import Accounts
    from hongyan.server.session import SendFilter

MAX_FAILURES = 5  # per stream, then policy-violation
#: the text of the policy-violation a banned address gets
BANNED = "too many failed logins from your address; try again later"
_FORGET_AFTER = 600.0  # seconds without a failure after which a host starts afresh
_MAX_HOSTS = 10_000
_MAX_CACHED = 100_000

log = logging.getLogger("hongyan.auth")


class Guard:
    """Failed logins per client address (the delay before the next answer doubles with each)
    and remembered PLAIN successes. ``notify(topic, body)``, when set, tells the other workers
    (topics ``auth-failed`` and ``auth-ok``; they call :meth:`peer_failed`/:meth:`peer_ok`)."""

    def __init__(self, cfg: AuthSection, accounts: Callable[[], Accounts],
                 secret: Callable[[], bytes]) -> None:
        self._cfg = cfg
        self._accounts = accounts
        self._secret = secret
        self._failures: dict[str, tuple[int, float]] = {}
        #: banned addresses, until when (monotonic)
        self._bans: dict[str, float] = {}
        self._plain_ok: dict[str, bytes] = {}
        self.notify: Callable[[str, bytes], None] | None = None
        #: logins that succeeded and failed in this process (``/metrics``)
        self.logins = 0
        self.login_failures = 0

    def failed(self, host: str) -> float:
        """Record a failed login from ``host``; return how long to delay the answer."""
        self.login_failures += 1
        count = self._count(host)
        if self.notify is not None:
            self.notify("auth-failed", host.encode())
        return float(min(self._cfg.failure_delay * (2 ** (count - 1)),
                         self._cfg.failure_delay_max))

    def succeeded(self, host: str) -> None:
        self.logins += 1
        # every worker holds the same counts: none here, none anywhere (no notice per login)
        if self._failures.pop(host, None) is not None and self.notify is not None:
            self.notify("auth-ok", host.encode())

    def peer_failed(self, body: bytes) -> None:
        self._count(body.decode())

    def peer_ok(self, body: bytes) -> None:
        self._failures.pop(body.decode(), None)

    def banned(self, host: str) -> bool:
        """Whether ``host`` failed too often lately to be let try again."""
        until = self._bans.get(host)
        if until is None:
            return False
        if time.monotonic() < until:
            return True
        del self._bans[host]
        self._failures.pop(host, None)
        return False

    def _count(self, host: str) -> int:
        now = time.monotonic()
        count, last = self._failures.get(host, (0, now))
        if now - last > _FORGET_AFTER:
            count = 0
        count += 1
        if len(self._failures) > _MAX_HOSTS:
            self._failures.clear()
        self._failures[host] = (count, now)
        cap = self._cfg.max_failures_per_ip
        if cap and count >= cap and host not in self._bans:
            if len(self._bans) > _MAX_HOSTS:
                self._bans = {h: t for h, t in self._bans.items() if t > now}
            self._bans[host] = now + self._cfg.ban_seconds
            log.warning("%s failed to log in %d times: banned for %.0f s", host, count,
                        self._cfg.ban_seconds)
        return count

    async def check_plain(self, username: str, password: str) -> bool:
        """Check a PLAIN password against the stored SCRAM-SHA-256 keys.

        Deriving the key costs a PBKDF2 (milliseconds of CPU). A successful check is remembered
        as an HMAC, under a per-process secret, of the username, the password and the current
        StoredKey: a repeat login with the same password skips PBKDF2, and a password change
        (new StoredKey) or a restart invalidates it. Only successes are remembered."""
        creds = await self._accounts().scram(username, "sha256")
        if creds is None:
            return False
        tag = hmac.new(self._secret(), b"\0".join((username.encode(), password.encode(),
                                                   creds.stored_key)), "sha256").digest()
        cache = self._plain_ok
        if cache.get(username) == tag:
            return True
        if not await asyncio.to_thread(verify_password, creds, password):
            return False
        if len(cache) >= _MAX_CACHED:
            cache.clear()
        cache[username] = tag
        return True


class Secured(Protocol):
    """What a transport says about its security."""

    @property
    def secure(self) -> bool: ...
    @property
    def peer_host(self) -> str: ...
    def channel_binding(self) -> tuple[str, bytes] | None: ...


class Negotiating(Protocol):
    """What the exchange needs from the stream it authenticates."""

    @property
    def transport(self) -> Secured: ...
    def send(self, item: Element | bytes, raw: bool = False,
             after: SendFilter | None = None) -> None: ...
    def stream_error(self, exc: StreamError) -> None: ...
    def authenticated(self, username: str, success: bytes) -> Awaitable[None]: ...


def mechanisms(cfg: AuthSection, transport: Secured, *, allow_plaintext: bool) -> list[str]:
    """The mechanisms a stream may use now: none in the clear unless allowed, -PLUS only over
    TLS with channel binding data."""
    secure = transport.secure
    if not secure and not allow_plaintext:
        return []
    cb = secure and transport.channel_binding() is not None
    return [m for m in cfg.mechanisms if cb or not m.endswith("-PLUS")]


def channel_bindings(transport: Secured) -> dict[str, bytes]:
    """Every channel binding type the connection offers, with its data (XEP-0440):
    tls-server-end-point over TLS, and tls-exporter (RFC 9266) over TLS 1.3 where the
    transport can export keying material."""
    out: dict[str, bytes] = {}
    cb = transport.channel_binding()
    if cb is not None:
        out[cb[0]] = cb[1]
        exporter = getattr(transport, "exporter", None)
        data = exporter() if exporter is not None else None
        if data:
            out["tls-exporter"] = data
    return out


class Service(Protocol):
    """What the exchange needs from the node."""

    domain: str
    secret: bytes
    guard: Guard

    @property
    def accounts(self) -> Accounts: ...


class SaslExchange:
    """The SASL negotiation of one stream (RFC 6120 §6.4), from ``<auth/>`` to ``<success/>``."""

    __slots__ = ("_cfg", "_failures", "_node", "_scram", "_stream", "allow_plaintext")

    def __init__(self, stream: Negotiating, node: Service, cfg: AuthSection, *,
                 allow_plaintext: bool) -> None:
        self._stream = stream
        self._node = node
        self._cfg = cfg
        self.allow_plaintext = allow_plaintext
        self._scram: ScramServer | None = None
        self._failures = 0

    def carry_failures(self, other: SaslExchange) -> None:
        """Count the failures of the exchange this one replaces on the same stream."""
        self._failures = other._failures

    def element(self, el: Element) -> Awaitable[object] | None:
        name = el.name
        if name == "abort":
            self._scram = None
            return self._fail(SaslFailure("aborted", ""))
        if name == "auth":
            return self._auth(el)
        if name == "response":
            try:
                data = _b64(el.text)
            except SaslFailure as exc:
                return self._fail(exc)
            scram = self._scram
            if scram is None:
                return self._fail(SaslFailure("malformed-request", "no exchange under way"))
            if scram.username is None:
                return self._scram_first(data)
            try:
                final = scram.client_final(data)
            except SaslFailure as exc:
                self._scram = None
                return self._fail(exc)
            return self._authenticated(scram.username, scram.authzid, final)
        raise StreamError("unsupported-stanza-type", f"unexpected SASL element <{name}/>")

    def _auth(self, el: Element) -> Awaitable[object] | None:
        return self._start(el.attrs.get("mechanism", ""), el.text)

    def _start(self, mech: str, text: str) -> Awaitable[object] | None:
        """Begin ``mech`` with the base64 initial response ``text`` ("" = none)."""
        stream = self._stream
        transport = stream.transport
        if self._node.guard.banned(transport.peer_host):
            return self._banned()
        if not transport.secure and not self.allow_plaintext:
            return self._fail(SaslFailure("encryption-required",
                                          "use STARTTLS before authenticating"))
        offered = mechanisms(self._cfg, transport, allow_plaintext=self.allow_plaintext)
        if mech not in offered:
            return self._fail(SaslFailure("invalid-mechanism", f"{mech!r} not offered"))
        try:
            data = _b64(text)
        except SaslFailure as exc:
            return self._fail(exc)
        if mech == "PLAIN":
            return self._plain(data)
        hash_plus = scram_mechanism(mech)
        assert hash_plus is not None
        self._scram = ScramServer(hash_plus[0], hash_plus[1], channel_bindings(transport),
                                  any(m.endswith("-PLUS") for m in offered), self._node.secret,
                                  fake_iterations=self._cfg.scram_iterations,
                                  ssdp=self._ssdp(offered))
        if not data:
            self._challenge(b"")
            return None
        return self._scram_first(data)

    # -- what SASL2 (XEP-0388) does otherwise ---------------------------------------------------
    def _ssdp(self, offered: list[str]) -> str | None:
        """What XEP-0474 downgrade protection hashes (None: no ``h`` attribute)."""
        return None

    def _challenge(self, data: bytes) -> None:
        if not data:
            self._stream.send(f"<challenge xmlns='{NS.SASL}'/>".encode(), raw=True)
            return
        self._stream.send(f"<challenge xmlns='{NS.SASL}'>".encode() + base64.b64encode(data)
                          + b"</challenge>", raw=True)

    def _failure(self, exc: SaslFailure) -> Element:
        fail = Element("failure", NS.SASL)
        fail.add(exc.condition)
        if exc.text:
            fail.add("text", text=exc.text)
        return fail

    def _succeed(self, username: str, final: bytes) -> Awaitable[None]:
        payload = base64.b64encode(final) if final else b""
        return self._stream.authenticated(
            username, f"<success xmlns='{NS.SASL}'>".encode() + payload + b"</success>")

    async def _scram_first(self, data: bytes) -> None:
        scram = self._scram
        assert scram is not None
        try:
            username = scram.client_first(data)
        except SaslFailure as exc:
            self._scram = None
            await self._fail(exc)
            return
        creds = await self._node.accounts.scram(username, scram.hash_name)
        self._challenge(scram.server_first(creds))

    async def _plain(self, data: bytes) -> None:
        try:
            authzid, authcid, password = parse_plain(data)
            username = self._node.accounts.prepare(authcid)
        except SaslFailure as exc:
            await self._fail(exc)
            return
        except Exception:
            await self._fail(SaslFailure("not-authorized", "unknown user or bad password"))
            return
        if not await self._node.guard.check_plain(username, password):
            await self._fail(SaslFailure("not-authorized", "unknown user or bad password"))
            return
        await self._authenticated(username, authzid, b"")

    async def _authenticated(self, username: str, authzid: str, final: bytes) -> None:
        if authzid and authzid != f"{username}@{self._node.domain}":
            await self._fail(SaslFailure("invalid-authzid", "you may only act as yourself"))
            return
        self._scram = None
        if await self._node.accounts.is_disabled(username):
            # RFC 6120 §6.5.1; not a guessing attempt, so no failure delay
            await self._fail(SaslFailure("account-disabled", "this account is disabled"))
            return
        self._node.guard.succeeded(self._stream.transport.peer_host)
        await self._succeed(username, final)

    async def _banned(self) -> None:
        self._stream.stream_error(StreamError("policy-violation", BANNED))

    async def _fail(self, exc: SaslFailure) -> None:
        self._scram = None
        if exc.condition in ("not-authorized", "invalid-authzid"):
            host = self._stream.transport.peer_host
            delay = self._node.guard.failed(host)
            if self._node.guard.banned(host):
                await self._banned()
                return
            if delay > 0:
                await asyncio.sleep(delay)
        self._stream.send(self._failure(exc))
        self._failures += 1
        if self._failures >= MAX_FAILURES:
            self._stream.stream_error(StreamError("policy-violation",
                                                  "too many failed authentications"))


def _b64(text: str) -> bytes:
    text = text.strip()
    if text in ("", "="):
        return b""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise SaslFailure("incorrect-encoding", "invalid base64") from None
