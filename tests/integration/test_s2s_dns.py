"""Finding remote servers in DNS (RFC 6120 §3.2, XEP-0368): a real DNS server (dnsmasq)
serves the test domains' SRV and address records; the nodes have no static routes, only
``[s2s] resolver`` pointing at it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hongyan.server.s2s.dns import Resolver
from tests.integration import dnsserver
from tests.integration.conftest import Harness
from tests.integration.federation import A, B, Pair, free_port


@pytest.fixture
async def dns_pair(tmp_path: Path, storage_url: str) -> AsyncIterator[tuple[Pair, int]]:
    """a.test is found by _xmpps-server._tcp (direct TLS), b.test by _xmpp-server._tcp
    (STARTTLS); each SRV target has an A record. Yields the pair and the DNS port."""
    dnsserver.require()
    ports = {A: free_port(), B: free_port()}
    a_direct = free_port()
    dns_port = free_port()
    server = dnsserver.DnsServer(tmp_path, "127.0.0.1", dns_port, ["test"], [
        ("srv", f"_xmpps-server._tcp.{A}", "xmpp.a.test", a_direct),
        ("srv", f"_xmpp-server._tcp.{A}", "xmpp.a.test", ports[A], 10),
        ("srv", f"_xmpp-server._tcp.{B}", "xmpp.b.test", ports[B]),
        ("srv", f"_xmpp-server._tcp.conference.{B}", "xmpp.b.test", ports[B]),
        ("a", "xmpp.a.test", "127.0.0.1"),
        ("a", "xmpp.b.test", "127.0.0.1"),
        ("a", "fallback.test", "127.0.0.1"),
    ])
    await server.start()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = Harness(tmp_path / "a", storage_url, A)
    b = Harness(tmp_path / "b", f"sqlite:///{tmp_path / 'b' / 'h.db'}", B)
    common = f'enabled = true\nbind = ["127.0.0.1"]\nresolver = "127.0.0.1:{dns_port}"\n'
    a.s2s_extra = common + f"port = {ports[A]}\ndirect_tls = true\ndirect_tls_port = {a_direct}\n"
    b.s2s_extra = common + f"port = {ports[B]}\n"
    p = Pair(a, b, ports)
    try:
        await a.start()
        await b.start()
        yield p, dns_port
    finally:
        await p.stop()
        server.stop()


async def test_srv_records_and_direct_tls(dns_pair: tuple[Pair, int]) -> None:
    pair, dns_port = dns_pair
    resolver = Resolver(f"127.0.0.1:{dns_port}")
    assert pair.a.node is not None
    direct = pair.a.node.s2s_direct_tls_port
    # XEP-0368: the direct TLS record first at equal priority, then STARTTLS at its own
    assert await resolver.addresses(A) == [("127.0.0.1", direct, True),
                                           ("127.0.0.1", pair.ports[A], False)]
    assert await resolver.addresses(B) == [("127.0.0.1", pair.ports[B], False)]
    # no SRV record: the domain's own address on 5269; no record at all: nowhere
    assert await resolver.addresses("fallback.test") == [("127.0.0.1", 5269, False)]
    assert await resolver.addresses("nowhere.test") == []
    alice = await pair.a.logged_in("alice")
    bob = await pair.b.logged_in("bob")
    alice.send_message(mto="bob@b.test", mbody="found you in DNS", mtype="chat")
    assert (await bob.next_message())["body"] == "found you in DNS"
    bob.send_message(mto="alice@a.test/test", mbody="over direct TLS", mtype="chat")
    assert (await alice.next_message())["body"] == "over direct TLS"
    assert pair.b.node is not None and pair.b.node.federation is not None
    out = pair.b.node.federation.outgoing[(B, A)]
    # b.test reached a.test's direct TLS port (XEP-0368), not its STARTTLS one
    assert out.address == ("127.0.0.1", direct, True)
    assert out.transport.secure
    assert pair.a.node.federation is not None
    (inc,) = [s for s in pair.a.node.federation.incoming if (B, A) in s.domains]
    assert inc.transport.secure


async def test_a_domain_without_records_bounces(dns_pair: tuple[Pair, int]) -> None:
    pair, _ = dns_pair
    alice = await pair.a.logged_in("alice")
    alice.send_message(mto="carol@nowhere.test", mbody="hello?", mtype="chat")
    err = await alice.next_message()
    assert err["error"]["condition"] == "remote-server-not-found"
