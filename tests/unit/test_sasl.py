"""SCRAM and PLAIN step machines against an independent client written here (RFC 5802)."""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from hongyan.xmpp.sasl import (
    MECHANISMS,
    SaslFailure,
    ScramServer,
    derive_scram,
    parse_plain,
    scram_mechanism,
    tls_server_end_point,
    verify_password,
)

SECRET = b"s" * 32


def client_final(hash_name: str, password: str, client_first_bare: str, server_first: str,
                 gs2: str, cb: bytes = b"") -> tuple[str, bytes]:
    attrs = dict(p.split("=", 1) for p in server_first.split(","))
    salted = hashlib.pbkdf2_hmac(hash_name, password.encode(), base64.b64decode(attrs["s"]),
                                 int(attrs["i"]))
    client_key = hmac.new(salted, b"Client Key", hash_name).digest()
    stored = hashlib.new(hash_name, client_key).digest()
    without = f"c={base64.b64encode(gs2.encode() + cb).decode()},r={attrs['r']}"
    auth = f"{client_first_bare},{server_first},{without}".encode()
    sig = hmac.new(stored, auth, hash_name).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, sig, strict=True))
    server_key = hmac.new(salted, b"Server Key", hash_name).digest()
    expected_v = b"v=" + base64.b64encode(hmac.new(server_key, auth, hash_name).digest())
    return f"{without},p={base64.b64encode(proof).decode()}", expected_v


def test_rfc5802_vector() -> None:
    creds = derive_scram("pencil", "sha1", base64.b64decode("QSXCR+Q6sek8bf92"), 4096)
    s = ScramServer("sha1", False, None, False, SECRET, nonce="3rfcNHYJY1ZVvWVs7j")
    assert s.client_first(b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL") == "user"
    first = s.server_first(creds)
    assert first == b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096"
    final = s.client_final(b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,"
                           b"p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=")
    assert final == b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ="


def test_rfc7677_vector() -> None:
    creds = derive_scram("pencil", "sha256", base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ=="), 4096)
    s = ScramServer("sha256", False, None, False, SECRET, nonce="%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0")
    s.client_first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
    s.server_first(creds)
    final = s.client_final(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                           b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
    assert final == b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


@pytest.mark.parametrize("hash_name", ["sha1", "sha256"])
def test_roundtrip_and_wrong_password(hash_name: str) -> None:
    creds = derive_scram("correct horse", hash_name)
    for password, ok in (("correct horse", True), ("wrong", False)):
        s = ScramServer(hash_name, False, None, False, SECRET)
        s.client_first(b"n,,n=alice,r=abc")
        sf = s.server_first(creds).decode()
        msg, expected = client_final(hash_name, password, "n=alice,r=abc", sf, "n,,")
        if ok:
            assert s.client_final(msg.encode()) == expected
        else:
            with pytest.raises(SaslFailure) as exc:
                s.client_final(msg.encode())
            assert exc.value.condition == "not-authorized"


def test_unknown_user_looks_like_a_wrong_password() -> None:
    s1 = ScramServer("sha256", False, None, False, SECRET)
    s1.client_first(b"n,,n=ghost,r=abc")
    first1 = s1.server_first(None).decode()
    s2 = ScramServer("sha256", False, None, False, SECRET)
    s2.client_first(b"n,,n=ghost,r=abc")
    first2 = s2.server_first(None).decode()
    assert first1.split(",")[1] == first2.split(",")[1]  # the same fake salt every time
    msg, _ = client_final("sha256", "x", "n=ghost,r=abc", first1, "n,,")
    with pytest.raises(SaslFailure) as exc:
        s1.client_final(msg.encode())
    assert exc.value.condition == "not-authorized"


def test_channel_binding_plus() -> None:
    creds = derive_scram("pw", "sha256")
    cb = ("tls-server-end-point", b"\x01" * 32)
    s = ScramServer("sha256", True, cb, True, SECRET)
    s.client_first(b"p=tls-server-end-point,,n=bob,r=xyz")
    sf = s.server_first(creds).decode()
    msg, expected = client_final("sha256", "pw", "n=bob,r=xyz", sf, "p=tls-server-end-point,,",
                                 cb[1])
    assert s.client_final(msg.encode()) == expected
    s = ScramServer("sha256", True, cb, True, SECRET)
    s.client_first(b"p=tls-server-end-point,,n=bob,r=xyz")
    sf = s.server_first(creds).decode()
    msg, _ = client_final("sha256", "pw", "n=bob,r=xyz", sf, "p=tls-server-end-point,,",
                          b"\x02" * 32)
    with pytest.raises(SaslFailure) as exc:
        s.client_final(msg.encode())
    assert exc.value.condition == "not-authorized"


@pytest.mark.parametrize(("plus", "offers_plus", "first", "condition"), [
    (False, True, b"y,,n=bob,r=x", "not-authorized"),       # downgrade
    (True, True, b"n,,n=bob,r=x", "malformed-request"),     # -PLUS without binding
    (False, True, b"p=tls-server-end-point,,n=bob,r=x", "malformed-request"),
    (True, True, b"p=tls-unique,,n=bob,r=x", "not-authorized"),
    (False, False, b"n,,m=ext,n=bob,r=x", "malformed-request"),
    (False, False, b"x,,n=bob,r=x", "malformed-request"),
    (False, False, b"n,,n=bo=b,r=x", "malformed-request"),
    (False, False, b"n,,n=bob", "malformed-request"),
    (False, False, b"\xff\xfe", "incorrect-encoding"),
])
def test_bad_client_first(plus: bool, offers_plus: bool, first: bytes, condition: str) -> None:
    s = ScramServer("sha256", plus, ("tls-server-end-point", b"c"), offers_plus, SECRET)
    with pytest.raises(SaslFailure) as exc:
        s.client_first(first)
    assert exc.value.condition == condition


def test_y_flag_accepted_when_server_has_no_plus() -> None:
    s = ScramServer("sha256", False, None, False, SECRET)
    assert s.client_first(b"y,,n=bob,r=x") == "bob"


def test_saslname_escapes_and_authzid() -> None:
    s = ScramServer("sha1", False, None, False, SECRET)
    s.client_first(b"n,a=bob@localhost,n=bob,r=x")
    assert s.authzid == "bob@localhost"


@pytest.mark.parametrize(("data", "expected"), [
    (b"\0alice\0pw", ("", "alice", "pw")),
    (b"alice@localhost\0alice\0pw", ("alice@localhost", "alice", "pw")),
])
def test_plain(data: bytes, expected: tuple[str, str, str]) -> None:
    assert parse_plain(data) == expected


@pytest.mark.parametrize(("data", "condition"), [
    (b"alice\0pw", "malformed-request"),
    (b"\0\0pw", "malformed-request"),
    (b"\0alice\0", "malformed-request"),
    (b"\0al\xffice\0pw", "incorrect-encoding"),
])
def test_bad_plain(data: bytes, condition: str) -> None:
    with pytest.raises(SaslFailure) as exc:
        parse_plain(data)
    assert exc.value.condition == condition


def test_verify_password_and_mechanisms() -> None:
    creds = derive_scram("pw", "sha256")
    assert verify_password(creds, "pw")
    assert not verify_password(creds, "pw2")
    assert scram_mechanism("SCRAM-SHA-1-PLUS") == ("sha1", True)
    assert scram_mechanism("PLAIN") is None


@pytest.mark.parametrize("first", [
    b"n,,n=bo=3=2CDb,r=x",      # "=3" is no escape, whatever follows
    b"n,,n=bob=,r=x",
    b"n,,n=bob=2c,r=x",         # escapes are upper case
    b"n,,n=bob,r=x\x7fy",       # the nonce is printable ASCII
    b"n,,n=bob,r=",
    b"n,,r=x,n=bob",
    b"n,a=b=x,n=bob,r=x",
    b"n,z=bob,n=bob,r=x",
    b"n,,",
    b"n",
])
def test_malformed_client_first(first: bytes) -> None:
    s = ScramServer("sha1", False, None, False, SECRET)
    with pytest.raises(SaslFailure) as exc:
        s.client_first(first)
    assert exc.value.condition == "malformed-request"


def test_saslname_decoding() -> None:
    s = ScramServer("sha1", False, None, False, SECRET)
    assert s.client_first(b"n,a=x=2Cy=3Dz,n=Bob,r=x") == "bob"
    assert s.authzid == "x,y=z"
    s = ScramServer("sha1", False, None, False, SECRET)
    with pytest.raises(SaslFailure) as exc:   # "," is fine in SCRAM, ":" not in a localpart
        s.client_first(b"n,,n=a:b,r=x")
    assert exc.value.condition == "not-authorized"


def _started(hash_name: str = "sha256", password: str = "pw") -> tuple[ScramServer, str]:
    s = ScramServer(hash_name, False, None, False, SECRET, nonce="SERVER")
    s.client_first(b"n,,n=alice,r=abc")
    return s, s.server_first(derive_scram(password, hash_name)).decode()


@pytest.mark.parametrize(("final", "condition"), [
    (b"r=abcSERVER,c=biws,p=AAAA", "malformed-request"),     # c= comes first
    (b"c=biws,p=AAAA", "malformed-request"),
    (b"c=biws,r=abcSERVER", "malformed-request"),            # no proof
    (b"c=biws,r=abcSERVER,p=***", "incorrect-encoding"),
    (b"c=eSws,r=abcSERVER,p=AAAA", "not-authorized"),        # "y,," is not what was sent
    (b"c=biws,r=abcOTHER,p=AAAA", "not-authorized"),         # wrong nonce
    (b"c=biws,r=abcSERVER,p=AAAA", "not-authorized"),        # short proof
    (b"c=biws,r=abcSERVER,p=\xff", "incorrect-encoding"),
])
def test_bad_client_final(final: bytes, condition: str) -> None:
    s, _ = _started()
    with pytest.raises(SaslFailure) as exc:
        s.client_final(final)
    assert exc.value.condition == condition


def test_wrong_nonce_with_valid_proof_fails() -> None:
    s, sf = _started()
    tampered = sf.replace("r=abcSERVER", "r=abcSERVEX")
    msg, _ = client_final("sha256", "pw", "n=alice,r=abc", tampered, "n,,")
    with pytest.raises(SaslFailure) as exc:
        s.client_final(msg.encode())
    assert exc.value.condition == "not-authorized"


def test_fake_salt_differs_per_user_and_hash() -> None:
    def salt(user: bytes, hash_name: str) -> str:
        s = ScramServer(hash_name, False, None, False, SECRET)
        s.client_first(b"n,,n=" + user + b",r=abc")
        first = s.server_first(None).decode()
        assert first.endswith(",i=4096")
        return first.split(",")[1]
    assert salt(b"ghost", "sha256") != salt(b"phantom", "sha256")
    assert salt(b"ghost", "sha256") != salt(b"ghost", "sha1")


def test_plus_needs_our_binding_type_and_tls() -> None:
    s = ScramServer("sha256", True, None, False, SECRET)     # no TLS channel binding
    with pytest.raises(SaslFailure) as exc:
        s.client_first(b"p=tls-server-end-point,,n=bob,r=x")
    assert exc.value.condition == "not-authorized"


def test_password_preparation() -> None:
    creds = derive_scram("\u2163pw", "sha256")    # OpaqueString keeps it, NFC is a no-op
    assert verify_password(creds, "\u2163pw")
    assert not verify_password(creds, "IVpw")
    assert verify_password(derive_scram("A\u030a", "sha1"), "\u00c5")   # NFC
    with pytest.raises(SaslFailure) as exc:
        derive_scram("", "sha256")
    assert exc.value.condition == "malformed-request"
    with pytest.raises(SaslFailure):
        derive_scram("a\u0000b", "sha256")
    assert not verify_password(creds, "")


@pytest.mark.parametrize(("data", "expected"), [
    (b"\0al ice\0p w", ("", "al ice", "p w")),
    (b"\0\xc3\xa9\0\xe2\x82\xac", ("", "\u00e9", "\u20ac")),
])
def test_plain_more(data: bytes, expected: tuple[str, str, str]) -> None:
    assert parse_plain(data) == expected


@pytest.mark.parametrize("data", [b"", b"\0", b"\0\0", b"a\0b\0c\0d", b"\0a\0b\0"])
def test_plain_structure(data: bytes) -> None:
    with pytest.raises(SaslFailure) as exc:
        parse_plain(data)
    assert exc.value.condition == "malformed-request"


def test_mechanism_table() -> None:
    assert dict(MECHANISMS) == {
        "SCRAM-SHA-1": ("sha1", False), "SCRAM-SHA-1-PLUS": ("sha1", True),
        "SCRAM-SHA-256": ("sha256", False), "SCRAM-SHA-256-PLUS": ("sha256", True),
    }
    assert scram_mechanism("SCRAM-SHA-512") is None


def _cert(sig_hash: hashes.SHA256 | hashes.SHA384 | hashes.SHA512) -> bytes:
    key = rsa.generate_private_key(65537, 2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "example.com")])
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, sig_hash))
    return cert.public_bytes(serialization.Encoding.DER)


# sha256WithRSAEncryption (1.2.840.113549.1.1.11) and same-length relatives: cryptography no
# longer signs with MD5/SHA-1, so such certificates are made by rewriting the algorithm OID.
_SHA256_RSA = bytes.fromhex("06092a864886f70d01010b")


@pytest.mark.parametrize(("sig_hash", "oid_last", "digest"), [
    (hashes.SHA256(), 0x0B, "sha256"),
    (hashes.SHA384(), None, "sha384"),
    (hashes.SHA512(), None, "sha512"),
    (hashes.SHA256(), 0x05, "sha256"),    # sha1WithRSA: RFC 5929 §4.1 says use SHA-256
    (hashes.SHA256(), 0x04, "sha256"),    # md5WithRSA: likewise
])
def test_tls_server_end_point(sig_hash: hashes.SHA256 | hashes.SHA384 | hashes.SHA512,
                              oid_last: int | None,
                              digest: str) -> None:
    der = _cert(sig_hash)
    if oid_last is not None:
        assert der.count(_SHA256_RSA) == 2
        der = der.replace(_SHA256_RSA, _SHA256_RSA[:-1] + bytes([oid_last]))
        expected = {0x0B: hashes.SHA256, 0x05: hashes.SHA1, 0x04: hashes.MD5}[oid_last]
        assert isinstance(x509.load_der_x509_certificate(der).signature_hash_algorithm, expected)
    assert tls_server_end_point(der) == hashlib.new(digest, der).digest()
