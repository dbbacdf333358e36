"""The budgets the streams of one address share (hongyan.server.limits), without sockets."""

from __future__ import annotations

import gc

from hongyan.server.limits import Addresses, address_key


def test_an_address_is_an_ipv4_address_or_an_ipv6_64() -> None:
    assert address_key("192.0.2.7") == "192.0.2.7"
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:bbbb::2") \
        == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("::ffff:192.0.2.7") == "::ffff:192.0.2.7"
    assert address_key("not-an-ip") == "not-an-ip"


def test_streams_of_one_address_share_one_budget_that_goes_with_the_last() -> None:
    addrs = Addresses(rate_bytes=100, burst_bytes=1000, rate_stanzas=10, burst_stanzas=20)
    one = addrs.budget("2001:db8::1", 0.0)
    two = addrs.budget("2001:db8::2", 0.0)
    assert one is two and len(addrs) == 1
    one.bytes -= 1500
    one.stanzas -= 25
    assert addrs.refill(one, 1.0) == 4.0  # bytes: -400 at 100/s; stanzas: -15 at 10/s
    assert addrs.refill(one, 100.0) == 0.0 and (one.bytes, one.stanzas) == (1000.0, 20.0)
    del one, two
    gc.collect()
    assert len(addrs) == 0
    assert addrs.budget("2001:db8::1", 5.0).bytes == 1000.0
