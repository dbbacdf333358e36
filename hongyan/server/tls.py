"""TLS: the server certificate (self-signed on first start when none is configured) and contexts."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import logging
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

log = logging.getLogger("hongyan.tls")


def ensure_self_signed(data_dir: Path, domain: str) -> tuple[Path, Path]:
    """Return (cert, key) under ``data_dir``, making a self-signed pair for ``domain`` once."""
    cert_path = data_dir / f"{domain}.crt"
    key_path = data_dir / f"{domain}.key"
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    data_dir.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)])
    alt: list[x509.GeneralName] = [x509.DNSName(domain)]
    for sub in ("conference", "pubsub", "upload"):
        alt.append(x509.DNSName(f"{sub}.{domain}"))
    with contextlib.suppress(ValueError):
        alt.append(x509.IPAddress(ipaddress.ip_address(domain)))
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    tmp_key = key_path.with_suffix(".key.tmp")
    fd = os.open(tmp_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    os.replace(tmp_key, key_path)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    log.info("made a self-signed certificate for %s in %s", domain, cert_path)
    return cert_path, key_path


def server_context(cert_file: Path, key_file: Path, alpn: list[str] | None = None
                   ) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert_file), str(key_file))
    ctx.options |= ssl.OP_NO_COMPRESSION
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def client_context(cert_file: Path, key_file: Path, ca_file: str = "") -> ssl.SSLContext:
    """The TLS client side of a server-to-server stream this server opens: it shows our
    certificate (the peer may authenticate us by it) and does not fail the handshake on the
    peer's (dialback authenticates a server whose certificate does not prove its name)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert_file), str(key_file))
    ctx.options |= ssl.OP_NO_COMPRESSION
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if ca_file:
        ctx.load_verify_locations(ca_file)
    ctx.set_alpn_protocols(["xmpp-server"])
    return ctx


def cert_der(cert_file: Path) -> bytes:
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    return cert.public_bytes(serialization.Encoding.DER)
