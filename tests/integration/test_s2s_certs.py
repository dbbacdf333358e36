"""Authenticating servers by certificate (RFC 6125 DNS-IDs, SASL EXTERNAL per XEP-0178)
between two Hongyan nodes whose certificates come from a CA the tests make."""

from __future__ import annotations

from pathlib import Path

from tests.integration.federation import A, B, Pair, pair
from tests.integration.testca import TestCA

__all__ = ["pair"]


def tls_section(ca: TestCA, domain: str) -> str:
    cert, key = ca.issue(domain)
    return f'[tls]\ncert_file = "{cert}"\nkey_file = "{key}"\n'


async def test_valid_certificates_authenticate_by_sasl_external(pair: Pair, tmp_path: Path
                                                                ) -> None:
    ca = TestCA(tmp_path / "ca")
    strict = f'ca_file = "{ca.ca_file}"\nrequire_valid_certificates = true\n'
    pair.a.extra_config = tls_section(ca, A)
    pair.b.extra_config = tls_section(ca, B)
    await pair.start(strict, strict)
    alice = await pair.a.logged_in("alice")
    bob = await pair.b.logged_in("bob")
    alice.send_message(mto="bob@b.test", mbody="certified", mtype="chat")
    assert (await bob.next_message())["body"] == "certified"
    bob.send_message(mto="alice@a.test/test", mbody="likewise", mtype="chat")
    assert (await alice.next_message())["body"] == "likewise"
    assert pair.a.node is not None and pair.b.node is not None
    fa, fb = pair.a.node.federation, pair.b.node.federation
    assert fa is not None and fb is not None
    out = fa.outgoing[(A, B)]
    assert out.verified and out.method == "external"
    (inc,) = [s for s in fb.incoming if (A, B) in s.domains]
    assert inc.method == "external"


async def test_dialback_when_only_the_receiver_is_certified(pair: Pair, tmp_path: Path
                                                            ) -> None:
    """b.test has a self-signed certificate: a.test cannot check it, b.test cannot check
    a.test's client certificate (it does not ask): dialback authenticates both ways."""
    ca = TestCA(tmp_path / "ca")
    pair.a.extra_config = tls_section(ca, A)
    await pair.start(f'ca_file = "{ca.ca_file}"\n', f'ca_file = "{ca.ca_file}"\n')
    alice = await pair.a.logged_in("alice")
    bob = await pair.b.logged_in("bob")
    alice.send_message(mto="bob@b.test", mbody="dialback", mtype="chat")
    assert (await bob.next_message())["body"] == "dialback"
    assert pair.a.node is not None and pair.a.node.federation is not None
    out = pair.a.node.federation.outgoing[(A, B)]
    assert not out.verified and out.method == "dialback"


async def test_required_valid_certificate_refuses_a_self_signed_peer(pair: Pair,
                                                                     tmp_path: Path) -> None:
    ca = TestCA(tmp_path / "ca")
    pair.a.extra_config = tls_section(ca, A)
    await pair.start(f'ca_file = "{ca.ca_file}"\nrequire_valid_certificates = true\n')
    alice = await pair.a.logged_in("alice")
    await pair.b.logged_in("bob")
    alice.send_message(mto="bob@b.test", mbody="are you b.test?", mtype="chat")
    err = await alice.next_message()
    assert err["type"] == "error"
    assert err["error"]["condition"] == "remote-server-not-found"
