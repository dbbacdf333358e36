"""The metrics registry and its Prometheus text: sources read only when rendered, one family
for the node (the sum over workers) and one per worker."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hongyan.server.metrics import Metrics, Source, render


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text.decode()) for s in f.samples}


def test_a_source_is_read_when_rendered_and_summed_over_workers() -> None:
    m = Metrics()
    reads = []
    count = [3]

    def read() -> float:
        reads.append(1)
        return count[0]

    m.add(Source("things", "counter", "things done", read))
    m.add(Source("open", "gauge", "open things", lambda: {("a",): 1, ("b",): 2}, ("kind",)))
    assert reads == []
    one = m.snapshot()
    count[0] = 4
    two = m.snapshot()
    got = samples(render(m.sources, {0: one, 1: two}))
    assert got[("hongyan_things_total", ())] == 7
    assert got[("hongyan_worker_things_total", (("worker", "0"),))] == 3
    assert got[("hongyan_worker_things_total", (("worker", "1"),))] == 4
    assert got[("hongyan_open", (("kind", "b"),))] == 4
    assert got[("hongyan_worker_open", (("kind", "a"), ("worker", "1")))] == 1


def test_names_are_unique_and_a_source_can_be_removed() -> None:
    m = Metrics()
    remove = m.add(Source("x", "gauge", "x", lambda: 1))
    with pytest.raises(ValueError):
        m.add(Source("x", "gauge", "x again", lambda: 2))
    remove()
    m.add(Source("x", "gauge", "x again", lambda: 2))
    assert m.snapshot() == {"x": [([], 2.0)]}
