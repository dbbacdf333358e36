"""SASL server mechanisms as step machines, no I/O: SCRAM-SHA-1/256 with and without channel
binding (RFC 5802, RFC 7677), and PLAIN (RFC 4616) checked against stored SCRAM keys.

Written here rather than with a library because the server side needs exactly this shape: the
account look-up happens between two steps (it is async and lives in the server), only salted keys
are stored, unknown users must be indistinguishable from wrong passwords, and each failure maps
to an RFC 6120 §6.5 condition.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from precis_i18n import get_profile

from hongyan.xmpp.jid import JIDError, prepare_localpart

_PASSWORD = get_profile("OpaqueString")

_MECHANISMS: dict[str, tuple[str, bool]] = {
    "SCRAM-SHA-1": ("sha1", False),
    "SCRAM-SHA-1-PLUS": ("sha1", True),
    "SCRAM-SHA-256": ("sha256", False),
    "SCRAM-SHA-256-PLUS": ("sha256", True),
}
#: SCRAM mechanism name -> (hash name, uses channel binding); read-only.
MECHANISMS: Mapping[str, tuple[str, bool]] = MappingProxyType(_MECHANISMS)


class SaslFailure(Exception):
    """An authentication failure with its RFC 6120 §6.5 condition."""

    def __init__(self, condition: str, text: str = "") -> None:
        super().__init__(f"{condition}: {text}" if text else condition)
        self.condition = condition
        self.text = text


@dataclass(frozen=True, slots=True)
class ScramCredentials:
    hash_name: str
    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes


def scram_mechanism(name: str) -> tuple[str, bool] | None:
    """(hash name, uses channel binding) of a SCRAM mechanism name, or None."""
    return _MECHANISMS.get(name)


def prepare_password(password: str) -> str:
    try:
        out: str = _PASSWORD.enforce(password)
    except UnicodeError:
        raise SaslFailure("malformed-request", "the password has disallowed characters") from None
    return out


def _h(hash_name: str, data: bytes) -> bytes:
    return hashlib.new(hash_name, data).digest()


def _hmac(hash_name: str, key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hash_name).digest()


def derive_scram(password: str, hash_name: str, salt: bytes | None = None,
                 iterations: int = 4096) -> ScramCredentials:
    """The SCRAM keys of ``password`` (RFC 5802 §3)."""
    if salt is None:
        salt = os.urandom(16)
    salted = hashlib.pbkdf2_hmac(hash_name, prepare_password(password).encode(), salt,
                                 iterations)
    client_key = _hmac(hash_name, salted, b"Client Key")
    return ScramCredentials(hash_name, salt, iterations, _h(hash_name, client_key),
                            _hmac(hash_name, salted, b"Server Key"))


def verify_password(creds: ScramCredentials, password: str) -> bool:
    try:
        derived = derive_scram(password, creds.hash_name, creds.salt, creds.iterations)
    except SaslFailure:
        return False
    return hmac.compare_digest(derived.stored_key, creds.stored_key)


def parse_plain(message: bytes) -> tuple[str, str, str]:
    """(authzid, authcid, password) of a PLAIN message."""
    try:
        text = message.decode("utf-8")
    except UnicodeDecodeError:
        raise SaslFailure("incorrect-encoding", "PLAIN data is not UTF-8") from None
    parts = text.split("\0")
    if len(parts) != 3 or not parts[1] or not parts[2]:
        raise SaslFailure("malformed-request", "PLAIN wants authzid NUL authcid NUL password")
    return parts[0], parts[1], parts[2]


def _attrs(text: str) -> list[tuple[str, str]]:
    out = []
    for part in text.split(","):
        if len(part) < 2 or part[1] != "=":
            raise SaslFailure("malformed-request", f"bad SCRAM attribute {part[:20]!r}")
        out.append((part[0], part[2:]))
    return out


_BAD_ESCAPE = re.compile(r"=(?!2C|3D)")


def _saslname(value: str) -> str:
    """Decode a SCRAM saslname (RFC 5802 §5.1: ``=2C`` is ``,``, ``=3D`` is ``=``, and no other
    ``=``)."""
    if _BAD_ESCAPE.search(value):
        raise SaslFailure("malformed-request", "bad escape in SCRAM name")
    return value.replace("=2C", ",").replace("=3D", "=")


class ScramServer:
    """One SCRAM exchange: :meth:`client_first` → (look up credentials) → :meth:`server_first`
    → :meth:`client_final`."""

    __slots__ = ("_cb", "_cb_flag", "_client_first_bare", "_combined_nonce", "_creds",
                 "_fake_iterations", "_fake_secret", "_gs2_header", "_nonce", "_offers_plus",
                 "_server_first", "_ssdp", "authzid", "hash_name", "plus", "username")

    def __init__(self, hash_name: str, plus: bool,
                 channel_binding: tuple[str, bytes] | Mapping[str, bytes] | None,
                 server_offers_plus: bool, fake_salt_secret: bytes, nonce: str | None = None,
                 fake_iterations: int = 4096, ssdp: str | None = None) -> None:
        """``channel_binding``: the binding type and data of the connection, or every type it
        offers by name; ``ssdp``: the XEP-0474 string of what was advertised (SASL2 sends its
        hash as the ``h`` attribute of server-first-message)."""
        self.hash_name = hash_name
        self.plus = plus
        if isinstance(channel_binding, tuple):
            channel_binding = {channel_binding[0]: channel_binding[1]}
        self._cb: Mapping[str, bytes] = channel_binding or {}
        self._ssdp = ssdp
        self._offers_plus = server_offers_plus
        self._fake_secret = fake_salt_secret
        self._fake_iterations = fake_iterations
        self._nonce = nonce
        self.username: str | None = None
        self.authzid = ""
        self._gs2_header = ""
        self._client_first_bare = ""
        self._combined_nonce = ""
        self._server_first = ""
        self._cb_flag = "n"
        self._creds: ScramCredentials | None = None

    def client_first(self, data: bytes) -> str:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise SaslFailure("incorrect-encoding", "SCRAM data is not UTF-8") from None
        parts = text.split(",", 2)
        if len(parts) != 3:
            raise SaslFailure("malformed-request", "bad SCRAM client-first message")
        flag, authz, bare = parts
        if flag == "n":
            if self.plus:
                raise SaslFailure("malformed-request", "-PLUS requires channel binding")
        elif flag == "y":
            if self.plus:
                raise SaslFailure("malformed-request", "-PLUS requires channel binding")
            if self._offers_plus:
                raise SaslFailure("not-authorized", "channel binding downgrade detected")
        elif flag.startswith("p="):
            if not self.plus:
                raise SaslFailure("malformed-request", "channel binding needs a -PLUS mechanism")
            if flag[2:] not in self._cb:
                raise SaslFailure("not-authorized", f"channel binding {flag[2:]!r} unsupported")
        else:
            raise SaslFailure("malformed-request", "bad GS2 header")
        if authz:
            if not authz.startswith("a="):
                raise SaslFailure("malformed-request", "bad GS2 authzid")
            self.authzid = _saslname(authz[2:])
        self._cb_flag = flag
        self._gs2_header = f"{flag},{authz},"
        attrs = _attrs(bare)
        if len(attrs) < 2 or attrs[0][0] == "m":
            raise SaslFailure("malformed-request", "SCRAM extensions are not supported")
        if (attrs[0][0] != "n" or attrs[1][0] != "r" or not attrs[1][1]
                or not (attrs[1][1].isascii() and attrs[1][1].isprintable())):
            raise SaslFailure("malformed-request", "bad SCRAM client-first message")
        try:
            username = prepare_localpart(_saslname(attrs[0][1]))
        except JIDError:
            raise SaslFailure("not-authorized", "unknown user or bad password") from None
        self._client_first_bare = bare
        self._combined_nonce = attrs[1][1] + (
            self._nonce if self._nonce is not None
            else base64.b64encode(os.urandom(24)).decode())
        self.username = username
        return username

    def server_first(self, creds: ScramCredentials | None) -> bytes:
        assert self.username is not None
        if creds is None:
            # Like a real account: a salt of its own per hash, stable across attempts, and the
            # iteration count new accounts get.
            salt = _hmac("sha256", self._fake_secret,
                         f"{self.hash_name}\0{self.username}".encode())[:16]
            iterations = self._fake_iterations
        else:
            self._creds = creds
            salt, iterations = creds.salt, creds.iterations
        self._server_first = (f"r={self._combined_nonce},s={base64.b64encode(salt).decode()},"
                              f"i={iterations}")
        if self._ssdp is not None:
            self._server_first += ",h=" + base64.b64encode(
                _h(self.hash_name, self._ssdp.encode())).decode()
        return self._server_first.encode()

    def client_final(self, data: bytes) -> bytes:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise SaslFailure("incorrect-encoding", "SCRAM data is not UTF-8") from None
        without_proof, sep, proof_b64 = text.rpartition(",p=")
        if not sep:
            raise SaslFailure("malformed-request", "no proof in SCRAM client-final message")
        attr_list = _attrs(without_proof)
        if len(attr_list) < 2 or attr_list[0][0] != "c" or attr_list[1][0] != "r":
            raise SaslFailure("malformed-request", "bad SCRAM client-final message")
        attrs = dict(attr_list[:2])
        cb_data = self._gs2_header.encode()
        if self._cb_flag.startswith("p="):
            cb_data += self._cb[self._cb_flag[2:]]
        try:
            given_cb = base64.b64decode(attrs.get("c", ""), validate=True)
            proof = base64.b64decode(proof_b64, validate=True)
        except ValueError:
            raise SaslFailure("incorrect-encoding", "bad base64 in SCRAM") from None
        if not hmac.compare_digest(given_cb, cb_data):
            raise SaslFailure("not-authorized", "channel binding mismatch")
        if attrs.get("r") != self._combined_nonce:
            raise SaslFailure("not-authorized", "nonce mismatch")
        creds = self._creds
        if creds is None:
            raise SaslFailure("not-authorized", "unknown user or bad password")
        auth_message = f"{self._client_first_bare},{self._server_first},{without_proof}".encode()
        signature = _hmac(creds.hash_name, creds.stored_key, auth_message)
        if len(proof) != len(signature):
            raise SaslFailure("not-authorized", "unknown user or bad password")
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        if not hmac.compare_digest(_h(creds.hash_name, client_key), creds.stored_key):
            raise SaslFailure("not-authorized", "unknown user or bad password")
        server_sig = _hmac(creds.hash_name, creds.server_key, auth_message)
        return b"v=" + base64.b64encode(server_sig)


def tls_server_end_point(der_cert: bytes) -> bytes:
    """RFC 5929 §4.1 channel binding data of our certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    cert = x509.load_der_x509_certificate(der_cert)
    algo = cert.signature_hash_algorithm
    name = "sha256"
    if algo is not None and not isinstance(algo, (hashes.MD5, hashes.SHA1)):
        name = algo.name
    return hashlib.new(name, der_cert).digest()


def ssdp_string(mechanisms: list[str], channel_bindings: list[str] | None) -> str:
    """What XEP-0474 hashes: the advertised mechanisms sorted (octet order) and joined by
    U+001E, then, when XEP-0440 advertised channel bindings, U+001F and their sorted types."""
    s = "\x1e".join(sorted(mechanisms))
    if channel_bindings is not None:
        s += "\x1f" + "\x1e".join(sorted(channel_bindings))
    return s


#: the Hashed Token mechanisms (XEP-0484 FAST) -> the channel binding each uses ("" = none)
HT_MECHANISMS: Mapping[str, str] = MappingProxyType({
    "HT-SHA-256-NONE": "",
    "HT-SHA-256-ENDP": "tls-server-end-point",
    "HT-SHA-256-EXPR": "tls-exporter",
})


def ht_initiator(token: bytes, cb_data: bytes) -> bytes:
    """The client's proof of the HT-SHA-256 mechanisms: HMAC(token, "Initiator" || cb)."""
    return _hmac("sha256", token, b"Initiator" + cb_data)


def ht_responder(token: bytes, cb_data: bytes) -> bytes:
    """The server's answer (its proof of knowing the token): HMAC(token, "Responder" || cb)."""
    return _hmac("sha256", token, b"Responder" + cb_data)


def parse_ht(message: bytes) -> tuple[str, bytes]:
    """(authcid, initiator hash) of an HT initial response: authcid NUL hash."""
    authcid, sep, proof = message.partition(b"\0")
    if not sep or not authcid or len(proof) != 32:
        raise SaslFailure("malformed-request", "HT wants authcid NUL a 32-byte HMAC")
    try:
        return authcid.decode("utf-8"), proof
    except UnicodeDecodeError:
        raise SaslFailure("incorrect-encoding", "the authcid is not UTF-8") from None
