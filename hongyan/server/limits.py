"""What an unauthenticated client may hold of a node: connections per address and in all.

A connection counts from its accept until SASL succeeds or it closes. Over a cap, the new
connection gets a ``policy-violation`` stream error at once (header, error, close: RFC 6120
§4.9.1.1 lets the server speak first) rather than a silent close at accept: the client learns
why, and it costs the node one write. The counts are per process: with several workers each
worker counts the connections it accepted (the kernel spreads accepts across them), so a node
of N workers admits up to N times each cap. The per-stream byte and stanza budgets are in
:mod:`hongyan.server.c2s`, with :class:`Addresses`, the budgets every stream of one address
shares; the registrations-per-address limit is the register module's.
"""

from __future__ import annotations

import ipaddress
import weakref


def address_key(host: str) -> str:
    """What counts as one address: an IPv4 address, or an IPv6 /64 (one subscriber's share,
    which an attacker gets whole)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{host}/64", strict=False))
    return host


class Budget:
    """The bytes and stanzas all of one address's authenticated and unauthenticated streams
    may still send: token buckets refilled together, when one runs out."""

    __slots__ = ("__weakref__", "bytes", "stamp", "stanzas")

    def __init__(self, bytes_: float, stanzas: float, stamp: float) -> None:
        self.bytes = bytes_
        self.stanzas = stanzas
        self.stamp = stamp


class Addresses:
    """The :class:`Budget` of each address that has a stream open: a stream holds its own,
    so the entry goes with the last stream (a weak mapping, nothing to clean up)."""

    def __init__(self, rate_bytes: int, burst_bytes: int, rate_stanzas: int,
                 burst_stanzas: int) -> None:
        self.rate_bytes = rate_bytes
        self.burst_bytes = float(burst_bytes)
        self.rate_stanzas = rate_stanzas
        self.burst_stanzas = float(burst_stanzas)
        self._budgets: weakref.WeakValueDictionary[str, Budget] = weakref.WeakValueDictionary()

    def budget(self, host: str, now: float) -> Budget:
        key = address_key(host)
        found = self._budgets.get(key)
        if found is None:
            found = Budget(self.burst_bytes, self.burst_stanzas, now)
            self._budgets[key] = found
        return found

    def refill(self, b: Budget, now: float) -> float:
        """Refill ``b`` for the time since its last refill; return the seconds until neither
        bucket is in debt (0: none is)."""
        elapsed = now - b.stamp
        b.stamp = now
        b.bytes = min(b.bytes + elapsed * self.rate_bytes, self.burst_bytes)
        b.stanzas = min(b.stanzas + elapsed * self.rate_stanzas, self.burst_stanzas)
        return max(-b.bytes / self.rate_bytes, -b.stanzas / self.rate_stanzas, 0.0)

    def __len__(self) -> int:
        return len(self._budgets)


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
