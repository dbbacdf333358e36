"""The s2s trust store is read certificate by certificate (hongyan/server/s2s/certs.py)."""

from __future__ import annotations

import base64
import datetime
import warnings
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hongyan.server.s2s.certs import Trust, load_pem_bundle


def _cert(name: str, serial: int) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(serial)
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))


def _pem(der: bytes) -> bytes:
    body = base64.encodebytes(der).replace(b"\n", b"")
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return b"-----BEGIN CERTIFICATE-----\n" + b"\n".join(lines) + b"\n-----END CERTIFICATE-----\n"


def _negative_serial() -> bytes:
    """A certificate whose serial is -1: serial 0x7f re-encoded as 0xff (same length; the
    signature no longer matches, which loading does not check), as some CAs in Debian's store."""
    der = _cert("negative", 0x7F).public_bytes(serialization.Encoding.DER)
    marker = b"\x02\x01\x7f"
    assert der.count(marker) == 1
    return _pem(der.replace(marker, b"\x02\x01\xff"))


def test_bad_blocks_are_left_out_one_by_one_without_warnings() -> None:
    good = _cert("good", 12345).public_bytes(serialization.Encoding.PEM)
    garbage = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    other = _cert("other", 777).public_bytes(serialization.Encoding.PEM)
    bundle = b"# a comment line\n" + good + garbage + _negative_serial() + other
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        certs = load_pem_bundle(bundle, "bundle.pem")
    assert [w.message for w in seen] == []
    names = [c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value for c in certs]
    # the garbage block is left out; the negative serial loads (OpenSSL accepts it) silently
    assert names == ["good", "negative", "other"]
    with warnings.catch_warnings():  # (reading the serial warns again, lazily)
        warnings.simplefilter("ignore")
        assert certs[1].serial_number == -1


def test_empty_bundle() -> None:
    assert load_pem_bundle(b"", "empty.pem") == []


def test_a_bad_ca_file_is_an_error_naming_it(tmp_path: Path) -> None:
    good = _cert("good", 12345).public_bytes(serialization.Encoding.PEM)
    bad = tmp_path / "bad.pem"
    bad.write_bytes(good + b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(ValueError, match=r"\[s2s\] ca_file .*bad\.pem: certificate 2 does not"):
        Trust(str(bad), system=False)
    empty = tmp_path / "empty.pem"
    empty.write_bytes(b"not a certificate\n")
    with pytest.raises(ValueError, match=r"\[s2s\] ca_file .*empty\.pem: no PEM certificate"):
        Trust(str(empty), system=False)
    ok = tmp_path / "ok.pem"
    ok.write_bytes(good)
    assert Trust(str(ok), system=False).proves([], "example.org") is False
