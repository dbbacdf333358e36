"""Does a peer's certificate prove its domain? (RFC 6125 DNS-ID, RFC 6120 §13.7.2)

Checked with ``cryptography``'s X.509 path validation (RFC 5280, a web-PKI profile) against
the system's trust store and the configured CA file, after the TLS handshake (which itself
verifies nothing, so that a server whose certificate proves nothing can still authenticate by
dialback). Only DNS-IDs are matched (``cryptography`` has no SRV-ID, RFC 4985). Python 3.11's
``ssl`` hands over only the peer's own certificate, not the intermediates it sent: a chain
with intermediates validates only when they are in the store.
"""

from __future__ import annotations

import datetime
import logging
import re
import ssl
import warnings
from pathlib import Path

from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509 import DNSName
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

log = logging.getLogger("hongyan.s2s")


_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def load_pem_bundle(data: bytes, source: str, strict: bool = False) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle that ``cryptography`` can load, one by one: a trust
    store may hold CAs that break RFC 5280 (Debian's has several whose serial number is not
    positive; OpenSSL and browsers accept them, ``cryptography`` warns about them today and will
    refuse them in a later release). They are kept while they load, without the warning, and
    left out one by one, with a log line, once they do not, instead of losing the whole
    store. ``strict`` (the operator's own ``ca_file``): a block that does not load, or no
    certificate at all, is an error naming ``source``."""
    certs: list[x509.Certificate] = []
    for n, block in enumerate(_PEM.findall(data)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            try:
                certs.append(x509.load_pem_x509_certificate(block))
            except ValueError as exc:
                if strict:
                    raise ValueError(f"{source}: certificate {n + 1} does not load: {exc}") \
                        from exc
                log.debug("s2s: certificate %d of %s left out: %s", n + 1, source, exc)
    if strict and not certs:
        raise ValueError(f"{source}: no PEM certificate in it")
    return certs


def _system_bundle() -> list[x509.Certificate]:
    paths = ssl.get_default_verify_paths()
    for f in (paths.cafile, paths.openssl_cafile, "/etc/ssl/certs/ca-certificates.crt"):
        if f and Path(f).is_file():
            certs = load_pem_bundle(Path(f).read_bytes(), f)
            if certs:
                return certs
    return []


class Trust:
    """The trust anchors (system store and ``ca_file``) and the check of one certificate."""

    def __init__(self, ca_file: str = "", system: bool = True) -> None:
        anchors: list[x509.Certificate] = _system_bundle() if system else []
        if ca_file:
            anchors += load_pem_bundle(Path(ca_file).read_bytes(),
                                       f"[s2s] ca_file {ca_file}", strict=True)
        self._store = Store(anchors) if anchors else None

    def proves(self, chain: list[bytes], domain: str) -> bool:
        """``chain`` (DER, the peer's certificate first) is valid now and names ``domain``."""
        if self._store is None or not chain:
            return False
        try:
            certs = [x509.load_der_x509_certificate(der) for der in chain]
            verifier = (PolicyBuilder().store(self._store)
                        .time(datetime.datetime.now(datetime.UTC))
                        .build_server_verifier(DNSName(domain)))
            verifier.verify(certs[0], certs[1:])
        except (VerificationError, ValueError) as exc:
            log.debug("s2s: the certificate of %s does not prove it: %s", domain, exc)
            return False
        return True


__all__ = ["Trust"]
