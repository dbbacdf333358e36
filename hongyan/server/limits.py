"""What an unauthenticated client may hold of a node: connections per address and in all.

A connection counts from its accept until SASL succeeds or it closes. Over a cap, the new
connection gets a ``policy-violation`` stream error at once (header, error, close: RFC 6120
§4.9.1.1 lets the server speak first) rather than a silent close at accept: the client learns
why, and it costs the node one write. The counts are per process: with several workers each
worker counts the connections it accepted (the kernel spreads accepts across them), so a node
of N workers admits up to N times each cap. The per-stream byte budget is in
:mod:`hongyan.server.c2s`; the registrations-per-address limit is the register module's.
"""

from __future__ import annotations


class Preauth:
    """Unauthenticated connections, per client address and in all."""

    __slots__ = ("_hosts", "per_ip", "total", "total_cap")

    def __init__(self, per_ip: int, total: int) -> None:
        self.per_ip = per_ip
        self.total_cap = total
        self.total = 0
        self._hosts: dict[str, int] = {}

    def enter(self, host: str) -> str | None:
        """Count a new connection from ``host``; None when admitted, else why not."""
        if self.total >= self.total_cap:
            return "too many unauthenticated connections to this server"
        n = self._hosts.get(host, 0)
        if n >= self.per_ip:
            return "too many unauthenticated connections from your address"
        self._hosts[host] = n + 1
        self.total += 1
        return None

    def leave(self, host: str) -> None:
        n = self._hosts.get(host, 0)
        if n <= 1:
            self._hosts.pop(host, None)
        else:
            self._hosts[host] = n - 1
        self.total -= 1

    def count(self, host: str) -> int:
        return self._hosts.get(host, 0)
