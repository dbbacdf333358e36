"""Where a remote domain's server listens (RFC 6120 §3.2, XEP-0368), through dnspython.

SRV records ``_xmpps-server._tcp`` (direct TLS) and ``_xmpp-server._tcp`` (STARTTLS), merged
and ordered by priority then weight (RFC 2782; a record whose target is ``.`` says there is no
such service); each target's AAAA and A records. Without any SRV record: the domain's own
addresses on port 5269. ``nameserver``: ask that server (``ip`` or ``ip:port``) instead of
those of ``/etc/resolv.conf``.
"""

from __future__ import annotations

import logging
import random

import dns.asyncresolver
import dns.exception
import dns.resolver

log = logging.getLogger("hongyan.s2s")

DEFAULT_PORT = 5269
_ERRORS = (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.NoNameservers,
           dns.exception.Timeout, dns.resolver.NoRootSOA, dns.resolver.YXDOMAIN)

#: (host, port, direct TLS)
Address = tuple[str, int, bool]


class Resolver:
    """DNS look-ups of remote servers."""

    def __init__(self, nameserver: str = "", timeout: float = 5.0) -> None:
        if nameserver:
            r = dns.asyncresolver.Resolver(configure=False)
            host, sep, port = nameserver.rpartition(":")
            if sep and port.isdigit() and "]" not in port and host.count(":") == 0:
                r.nameservers = [host]
                r.port = int(port)
            else:
                r.nameservers = [nameserver.strip("[]")]
        else:
            r = dns.asyncresolver.Resolver()
        r.lifetime = timeout
        self._r = r

    async def addresses(self, domain: str) -> list[Address]:
        """Where to connect for ``domain``, best first."""
        records: list[tuple[int, int, str, int, bool]] = []
        any_srv = False
        for service, direct in (("_xmpps-server._tcp.", True), ("_xmpp-server._tcp.", False)):
            try:
                answer = await self._r.resolve(service + domain, "SRV")
            except _ERRORS:
                continue
            for rr in answer:
                any_srv = True
                target = rr.target.to_text().rstrip(".")
                if not target:  # "." : no such service here
                    continue
                records.append((rr.priority, -rr.weight * random.random(), target, rr.port,
                                direct))
        if not any_srv:
            records = [(0, 0, domain, DEFAULT_PORT, False)]
        records.sort(key=lambda r: (r[0], r[1], not r[4]))
        out: list[Address] = []
        for _, _, target, port, direct in records:
            for host in await self._hosts(target):
                out.append((host, port, direct))
        return out

    async def _hosts(self, name: str) -> list[str]:
        hosts: list[str] = []
        for rdtype in ("AAAA", "A"):
            try:
                answer = await self._r.resolve(name, rdtype)
            except _ERRORS:
                continue
            hosts.extend(rr.to_text() for rr in answer)
        return hosts


__all__ = ["DEFAULT_PORT", "Address", "Resolver"]
