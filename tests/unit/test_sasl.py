"""SCRAM and PLAIN step machines against an independent client written here (RFC 5802)."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from hongyan.xmpp.sasl import (
    SaslFailure,
    ScramServer,
    derive_scram,
    parse_plain,
    scram_mechanism,
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
