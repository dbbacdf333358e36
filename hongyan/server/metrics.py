"""The node's numbers, as ``/metrics`` shows them (Prometheus text format, prometheus-client).

Counting must cost the hot path nothing it would notice, so nothing here is called per stanza:
the server counts in plain integer attributes where it already is (:class:`Counters`, on the
node; a module's own attributes), and a :class:`Source` names a number and how to read it.
The numbers are read only when ``/metrics`` is asked for (:meth:`Metrics.snapshot`), and
:func:`render` turns the snapshots of a node's processes into the text Prometheus reads: one
family per number for the whole node (the sum over the processes, ``hongyan_<name>``) and one
per process (``hongyan_worker_<name>`` with a ``worker`` label).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

Kind = Literal["counter", "gauge"]
#: one value, or one per tuple of label values
Reading = float | dict[tuple[str, ...], float]
#: what one process read: name -> [(label values, value)], as it crosses between workers (JSON)
Snapshot = dict[str, list[tuple[list[str], float]]]

PREFIX = "hongyan_"


class Counters:
    """What client sessions count as they work: a plain integer incremented once per flush of
    an outbox, not per stanza (no lock, no look-up). The router counts the stanzas it routes,
    the login guard the logins, a module what it does."""

    __slots__ = ("written",)

    def __init__(self) -> None:
        #: what sessions wrote to their clients: stanzas, and their streams' own elements
        #: (headers, features, SASL, stream management)
        self.written = 0


@dataclass(frozen=True, slots=True)
class Source:
    """A number ``/metrics`` shows: its name (without ``hongyan_``, and for a counter without
    ``_total``), kind, help text, label names and how to read it."""

    name: str
    kind: Kind
    help: str
    read: Callable[[], Reading]
    labels: tuple[str, ...] = ()


class Metrics:
    """The node's sources (the core's and those modules register through the module API)."""

    __slots__ = ("_sources",)

    def __init__(self) -> None:
        self._sources: dict[str, Source] = {}

    def add(self, source: Source) -> Callable[[], None]:
        """Register ``source``; returns what removes it."""
        if source.name in self._sources:
            raise ValueError(f"two metrics named {source.name!r}")
        self._sources[source.name] = source

        def remove() -> None:
            if self._sources.get(source.name) is source:
                del self._sources[source.name]
        return remove

    @property
    def sources(self) -> list[Source]:
        return list(self._sources.values())

    def snapshot(self) -> Snapshot:
        """Every source's value(s) now."""
        out: Snapshot = {}
        for s in self._sources.values():
            value = s.read()
            if isinstance(value, dict):
                out[s.name] = [(list(k), float(v)) for k, v in sorted(value.items())]
            else:
                out[s.name] = [([], float(value))]
        return out


def render(sources: list[Source], snapshots: dict[int, Snapshot]) -> bytes:
    """The Prometheus text of a node whose processes (by index) read ``snapshots``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(sources, snapshots))
    return generate_latest(registry)


class _Collector:
    def __init__(self, sources: list[Source], snapshots: dict[int, Snapshot]) -> None:
        self._sources = sources
        self._snapshots = snapshots

    def collect(self) -> Iterator[Metric]:
        family: type[CounterMetricFamily] | type[GaugeMetricFamily]
        for s in self._sources:
            family = CounterMetricFamily if s.kind == "counter" else GaugeMetricFamily
            node = family(PREFIX + s.name, s.help, labels=s.labels)
            per = family(f"{PREFIX}worker_{s.name}", s.help + " (one worker process)",
                         labels=(*s.labels, "worker"))
            total: dict[tuple[str, ...], float] = {}
            for index, snap in sorted(self._snapshots.items()):
                for labels, value in snap.get(s.name, ()):
                    key = tuple(labels)
                    total[key] = total.get(key, 0.0) + value
                    per.add_metric([*key, str(index)], value)
            for key, value in sorted(total.items()):
                node.add_metric(list(key), value)
            yield node
            yield per


def resident_memory() -> float:
    """This process's resident set size in bytes (Linux; 0 elsewhere)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return float(int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, IndexError):
        return 0.0


__all__ = ["Counters", "Metrics", "Reading", "Snapshot", "Source", "render", "resident_memory"]
