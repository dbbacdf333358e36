"""RFC 7622 JIDs: parsing, preparation (PRECIS via precis-i18n) and comparison.

Preparation is the expensive part, so it is cached per distinct input string: routing parses the
same few JIDs over and over.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import unicodedata

from precis_i18n import get_profile

_LOCAL = get_profile("UsernameCaseMapped")
_RESOURCE = get_profile("OpaqueString")
_LOCAL_FORBIDDEN = frozenset("\"&'/:<>@")
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_MAX = 1023


class JIDError(ValueError):
    """A string that is not a valid JID."""


def _bytes_ok(part: str, what: str) -> None:
    if not part:
        raise JIDError(f"empty {what}")
    if len(part.encode()) > _MAX:
        raise JIDError(f"{what} longer than {_MAX} bytes")


@functools.lru_cache(maxsize=65536)
def prepare_localpart(s: str) -> str:
    """Enforce the UsernameCaseMapped profile plus RFC 7622 §3.3.1 forbidden characters."""
    try:
        out: str = _LOCAL.enforce(s)
    except UnicodeError as exc:
        reason = getattr(exc, "reason", exc)
        raise JIDError(f"invalid localpart {s!r}: {reason}") from None
    if any(c in _LOCAL_FORBIDDEN for c in out):
        raise JIDError(f"invalid localpart {s!r}: forbidden character")
    _bytes_ok(out, "localpart")
    return out


@functools.lru_cache(maxsize=65536)
def prepare_resource(s: str) -> str:
    """Enforce the OpaqueString profile (RFC 7622 §3.4)."""
    try:
        out: str = _RESOURCE.enforce(s)
    except UnicodeError as exc:
        reason = getattr(exc, "reason", exc)
        raise JIDError(f"invalid resourcepart {s!r}: {reason}") from None
    _bytes_ok(out, "resourcepart")
    if out[0] == " ":
        raise JIDError(f"invalid resourcepart {s!r}: leading space (RFC 7622 §3.5)")
    return out


@functools.lru_cache(maxsize=16384)
def prepare_domain(s: str) -> str:
    """RFC 7622 §3.2: IP literals, or a DNS name (IDNA-checked, kept in Unicode, lowercase)."""
    if s.endswith("."):
        s = s[:-1]
    _bytes_ok(s, "domainpart")
    if s.startswith("[") and s.endswith("]"):
        if "%" in s:  # RFC 3986 IP-literal: no zone identifier
            raise JIDError(f"invalid IPv6 literal {s!r}: zone identifier")
        try:
            return "[" + str(ipaddress.IPv6Address(s[1:-1])) + "]"
        except ValueError:
            raise JIDError(f"invalid IPv6 literal {s!r}") from None
    if all(c.isdigit() or c == "." for c in s):
        try:
            return str(ipaddress.IPv4Address(s))
        except ValueError:
            raise JIDError(f"invalid IPv4 address {s!r}") from None
    if s.isascii():
        d = s.lower()
        ascii_form = d
        if "xn--" in d:
            # RFC 7622 §3.2.1: A-labels are converted to U-labels, so both spellings of an
            # internationalized name are the same JID.
            d = ".".join(_u_label(label, s) for label in d.split("."))
    else:
        d = unicodedata.normalize("NFC", s).lower()
        try:
            ascii_form = d.encode("idna").decode()
        except UnicodeError as exc:
            raise JIDError(f"invalid domain {s!r}: {exc}") from None
    for label in ascii_form.split("."):
        if not _LABEL.match(label):
            raise JIDError(f"invalid domain {s!r}")
    return d


def _u_label(label: str, domain: str) -> str:
    """The U-label of an (already lowercased) A-label; other labels unchanged."""
    if not label.startswith("xn--"):
        return label
    try:
        u = label[4:].encode("ascii").decode("punycode")
    except UnicodeError:
        raise JIDError(f"invalid domain {domain!r}: bad A-label {label!r}") from None
    if (not u or u.isascii() or u.encode("punycode").decode("ascii") != label[4:]
            or unicodedata.normalize("NFC", u).lower() != u or "." in u):
        raise JIDError(f"invalid domain {domain!r}: bad A-label {label!r}")
    try:
        u.encode("idna")  # the same check a U-label given as such gets
    except UnicodeError:
        raise JIDError(f"invalid domain {domain!r}: bad A-label {label!r}") from None
    return u


class JID:
    """An immutable, hashable JID; parts are prepared strings, ``""`` when absent."""

    __slots__ = ("_hash", "domain", "local", "resource", "text")

    local: str
    domain: str
    resource: str
    #: the JID as a string (``str(jid)``, without the method call: for hot paths)
    text: str
    _hash: int

    def __init__(self, local: str, domain: str, resource: str = "") -> None:
        """Build from parts that are already prepared (no checks: use :meth:`parse`).
        Treat the result as immutable: it is hashed and shared."""
        self.local = local
        self.domain = domain
        self.resource = resource
        text = f"{local}@{domain}" if local else domain
        if resource:
            text += "/" + resource
        self.text = text
        self._hash = hash(text)

    @classmethod
    def parse(cls, text: str) -> JID:
        return _parse(text)

    @property
    def bare(self) -> JID:
        if not self.resource:
            return self
        return JID(self.local, self.domain)

    @property
    def bare_str(self) -> str:
        return f"{self.local}@{self.domain}" if self.local else self.domain

    @property
    def is_bare(self) -> bool:
        return not self.resource

    @property
    def is_domain(self) -> bool:
        return not self.local and not self.resource

    @property
    def domain_jid(self) -> JID:
        return JID("", self.domain)

    def with_resource(self, resource: str) -> JID:
        return JID(self.local, self.domain, prepare_resource(resource))

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"JID({self.text!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, JID):
            return NotImplemented
        return self.text == other.text

    def __hash__(self) -> int:
        return self._hash


@functools.lru_cache(maxsize=65536)
def _parse(text: str) -> JID:
    if not isinstance(text, str):
        raise JIDError("a JID is a string")
    rest, slash, resource = text.partition("/")
    if slash and not resource:
        raise JIDError(f"empty resourcepart in {text!r}")
    local, at, domain = rest.partition("@")
    if not at:
        local, domain = "", rest
    elif not local:
        raise JIDError(f"empty localpart in {text!r}")
    return JID(
        prepare_localpart(local) if at else "",
        prepare_domain(domain),
        prepare_resource(resource) if slash else "",
    )
