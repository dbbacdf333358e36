"""tls-exporter channel binding (RFC 9266) of a TLS connection made by the ``ssl`` module.

Python's ssl module has no RFC 5705 exporter (up to 3.13), so the one of the OpenSSL library
the ssl module itself is linked with is called through ctypes, on the SSL* that the module's
_SSLSocket object holds right after its weak reference to the socket. The pointer is checked
(SSL_version must name the protocol version the ssl module reports) before it is used: where
the layout differs, tls-exporter is simply not offered.
"""

from __future__ import annotations

import ctypes
import ssl
from typing import Any

_EXPORTER_LABEL = b"EXPORTER-Channel-Binding"
_TLS13 = 0x0304
_export: Any = None
_version: Any = None


def _libssl() -> bool:
    global _export, _version
    if _export is not None:
        return _export is not False
    try:
        import _ssl

        lib = ctypes.CDLL(_ssl.__file__)
        export = lib.SSL_export_keying_material
        version = lib.SSL_version
    except (OSError, AttributeError, ImportError):
        _export = False
        return False
    export.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p,
                       ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    export.restype = ctypes.c_int
    version.argtypes = [ctypes.c_void_p]
    version.restype = ctypes.c_int
    _export, _version = export, version
    return True


def tls_exporter(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> bytes | None:
    """RFC 9266 tls-exporter channel binding data (32 bytes) of a TLS 1.3 connection, or None
    (another version, or no way to reach the exporter)."""
    if ssl_object is None or ssl_object.version() != "TLSv1.3" or not _libssl():
        return None
    inner = getattr(ssl_object, "_sslobj", None)
    if inner is None or type(inner).__name__ != "_SSLSocket":
        return None
    ptr = ctypes.c_void_p.from_address(id(inner) + 3 * ctypes.sizeof(ctypes.c_void_p)).value
    if not ptr or _version(ptr) != _TLS13:
        return None
    out = ctypes.create_string_buffer(32)
    if _export(ptr, out, 32, _EXPORTER_LABEL, len(_EXPORTER_LABEL), None, 0, 0) != 1:
        return None
    return out.raw
