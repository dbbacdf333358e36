"""Federation when things go wrong: remote servers that cannot be reached or do not answer,
idle streams, and raw peers that break the rules (RFC 6120 §4.9, §9; XEP-0220). Each gets its
stanza or stream error, a log line, and the local users lose nothing."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from hongyan.xmpp import dialback
from tests.integration.federation import A, B, Pair, free_port, pair
from tests.integration.rawstream import RawStream
from tests.integration.waiting import until

__all__ = ["pair"]

S2S_HEADER = ("<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
              "xmlns:stream='http://etherx.jabber.org/streams' "
              "xmlns:db='jabber:server:dialback' from='{frm}' to='{to}' version='1.0'>")


def s2s_port(p: Pair, which: str = B) -> int:
    h = p.a if which == A else p.b
    assert h.node is not None
    return h.node.s2s_port


async def peer(port: int, frm: str = A, to: str = B) -> tuple[RawStream, bytes]:
    """A raw server-to-server stream from ``frm`` whose header was answered: it and the
    answer (header and features)."""
    s = await RawStream.open(port)
    s.send(S2S_HEADER.format(frm=frm, to=to))
    return s, await s.read_until(b"</stream:features>")


async def secure_peer(port: int, frm: str = A, to: str = B) -> tuple[RawStream, str]:
    """A raw stream after STARTTLS and the restarted header: it and its stream id."""
    s, _ = await peer(port, frm, to)
    await s.starttls()
    s.send(S2S_HEADER.format(frm=frm, to=to))
    head = await s.read_until(b"</stream:features>")
    sid = head.split(b" id='", 1)[1].split(b"'", 1)[0].decode()
    return s, sid


# -- remote servers that fail ---------------------------------------------------------------------

async def test_unreachable_domain_bounces_remote_server_not_found(pair: Pair) -> None:
    closed = free_port()  # nothing listens there
    await pair.a.stop_node()
    pair.a.s2s_extra = pair.s2s_section(A, pair.ports).replace(
        "routes = {", f'routes = {{ "c.test" = "127.0.0.1:{closed}", ')
    await pair.a.start()
    alice = await pair.a.logged_in("alice")
    alice.send_message(mto="carol@c.test", mbody="anyone?", mtype="chat")
    err = await alice.next_message()
    assert err["type"] == "error"
    assert err["error"]["condition"] == "remote-server-not-found"
    assert err["from"].bare == "carol@c.test"
    # the local side is unharmed: a.test <-> b.test still works
    bob = await pair.b.logged_in("bob")
    alice.send_message(mto="bob@b.test", mbody="still here", mtype="chat")
    assert (await bob.next_message())["body"] == "still here"


async def test_silent_server_bounces_remote_server_timeout(pair: Pair) -> None:
    silent = socket.create_server(("127.0.0.1", 0))  # accepts, never says a word
    try:
        await pair.a.stop_node()
        pair.a.s2s_extra = pair.s2s_section(A, pair.ports, "max_queue = 2\n").replace(
            "routes = {", f'routes = {{ "c.test" = "127.0.0.1:{silent.getsockname()[1]}", ')
        await pair.a.start()
        alice = await pair.a.logged_in("alice")
        for i in range(3):
            alice.send_message(mto="carol@c.test", mbody=f"m{i}", mtype="chat")
        # the queue holds two; the third bounces at once
        err = await alice.next_message()
        assert err["error"]["condition"] == "resource-constraint"
        assert err["body"] == "m2"
        assert pair.a.node is not None and pair.a.node.federation is not None
        out = pair.a.node.federation.outgoing[(A, "c.test")]
        assert len(out.queue) == 2
        await pair.a.clock.advance(45)  # connect_timeout + negotiation_timeout passed
        conditions = [(await alice.next_message())["error"]["condition"] for _ in range(2)]
        assert conditions == ["remote-server-timeout"] * 2
        assert (A, "c.test") not in pair.a.node.federation.outgoing
    finally:
        silent.close()


async def test_idle_streams_close_and_reopen(pair: Pair) -> None:
    alice = await pair.a.logged_in("alice")
    bob = await pair.b.logged_in("bob")
    alice.send_message(mto="bob@b.test", mbody="one", mtype="chat")
    await bob.next_message()
    assert pair.a.node is not None and pair.a.node.federation is not None
    fed = pair.a.node.federation
    first = fed.outgoing[(A, B)]
    await pair.a.clock.advance(601)
    await until(lambda: (A, B) not in fed.outgoing)
    alice.send_message(mto="bob@b.test", mbody="two", mtype="chat")
    assert (await bob.next_message())["body"] == "two"
    assert fed.outgoing[(A, B)] is not first


# -- raw peers that break the rules ---------------------------------------------------------------

async def test_unknown_to_is_host_unknown(pair: Pair, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "hongyan.s2s")
    s = await RawStream.open(s2s_port(pair))
    s.send(S2S_HEADER.format(frm=A, to="nobody.test"))
    out = await s.read_to_close()
    assert b"<host-unknown" in out and out.endswith(b"</stream:stream>")
    assert "nobody.test" in caplog.text


async def test_stanza_before_authentication_is_not_authorized(pair: Pair) -> None:
    bob = await pair.b.logged_in("bob")
    s, feats = await peer(s2s_port(pair))
    assert b"<starttls" in feats and b"<required/>" in feats
    s.send("<message from='mallory@a.test/x' to='bob@b.test/test'><body>forged</body>"
           "</message>")
    out = await s.read_to_close()
    assert b"<not-authorized" in out
    with pytest.raises(TimeoutError):
        await bob.next_message(timeout=0.3)


async def test_dialback_before_tls_is_refused(pair: Pair) -> None:
    s, _ = await peer(s2s_port(pair))
    s.send(f"<db:result from='{A}' to='{B}'>abc</db:result>")
    assert b"<policy-violation" in await s.read_to_close()


async def test_a_peer_lying_about_its_domain(pair: Pair, caplog: pytest.LogCaptureFixture
                                             ) -> None:
    """It claims a.test, whose real server (node a) does not know its key."""
    caplog.set_level(logging.INFO, "hongyan.s2s")
    bob = await pair.b.logged_in("bob")
    s, _ = await secure_peer(s2s_port(pair))
    s.send(f"<db:result from='{A}' to='{B}'>{'0' * 64}</db:result>")
    verdict = await s.read_element(b"<db:result")
    assert b"type='invalid'" in verdict
    assert "dialback for a.test" in caplog.text
    s.send("<message from='alice@a.test/x' to='bob@b.test/test'><body>forged</body></message>")
    assert b"<not-authorized" in await s.read_to_close()
    with pytest.raises(TimeoutError):
        await bob.next_message(timeout=0.3)


async def test_invalid_from_on_an_authenticated_stream(pair: Pair) -> None:
    """A peer that is a.test (it has a.test's secret) sends from c.test: invalid-from."""
    bob = await pair.b.logged_in("bob")
    assert pair.a.node is not None and pair.a.node.federation is not None
    secret = pair.a.node.federation.secret
    s, sid = await secure_peer(s2s_port(pair))
    s.send(f"<db:result from='{A}' to='{B}'>{dialback.key(secret, B, A, sid)}</db:result>")
    assert b"type='valid'" in await s.read_element(b"<db:result")
    s.send("<message from='alice@a.test/x' to='bob@b.test/test' type='chat'><body>real</body>"
           "</message>")
    assert (await bob.next_message())["body"] == "real"
    s.send("<message from='eve@c.test/x' to='bob@b.test/test' type='chat'><body>forged</body>"
           "</message>")
    assert b"<invalid-from" in await s.read_to_close()
    with pytest.raises(TimeoutError):
        await bob.next_message(timeout=0.3)


async def test_a_stanza_for_another_server_is_host_unknown(pair: Pair) -> None:
    """No relaying: an authenticated stream names a domain b.test does not serve."""
    assert pair.a.node is not None and pair.a.node.federation is not None
    secret = pair.a.node.federation.secret
    s, sid = await secure_peer(s2s_port(pair))
    s.send(f"<db:result from='{A}' to='{B}'>{dialback.key(secret, B, A, sid)}</db:result>")
    assert b"type='valid'" in await s.read_element(b"<db:result")
    s.send("<message from='alice@a.test/x' to='someone@elsewhere.test'><body>relay?</body>"
           "</message>")
    assert b"<host-unknown" in await s.read_to_close()


async def test_streams_per_address_are_bounded(pair: Pair) -> None:
    await pair.b.stop_node()
    pair.b.s2s_extra = pair.s2s_section(B, pair.ports, "max_streams_per_ip = 2\n")
    await pair.b.start()
    held = [await peer(s2s_port(pair)) for _ in range(2)]
    s = await RawStream.open(s2s_port(pair))
    out = await s.read_to_close()
    assert b"<policy-violation" in out
    for h, _ in held:
        h.close()
    # once they are gone, a new stream is admitted again
    assert pair.b.node is not None and pair.b.node.federation is not None
    fed = pair.b.node.federation
    await until(lambda: fed.per_ip.count("127.0.0.1") == 0)
    again, feats = await peer(s2s_port(pair))
    assert b"<starttls" in feats
    again.close()


async def test_negotiation_deadline(pair: Pair) -> None:
    """A peer that never finishes TLS (never starts it) is cut off at the deadline."""
    s, _ = await peer(s2s_port(pair))
    await asyncio.sleep(0.1)
    await pair.b.clock.advance(31)
    out = await s.read_to_close()
    assert b"<connection-timeout" in out
