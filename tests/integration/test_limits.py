"""Bounded everything (issue 25 item 8), through the front door: the caps on unauthenticated
connections (per address, in all), the smaller stanza size before authentication, the byte
budget of a client stream (reading pauses, then resumes), in-band registrations per address
and hour; and a normal client that notices none of it."""

from __future__ import annotations

import asyncio
import socket

from tests.integration.conftest import Harness
from tests.integration.rawstream import (
    PASSWORD,
    SASL,
    RawStream,
    authed_stream,
    b64,
    tls_stream,
)
from tests.integration.test_bad_input import headed_error, stream_error

PING = ("<iq type='get' id='{id}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
REGISTER = ("<iq type='set' id='{id}'><query xmlns='jabber:iq:register'>"
            "<username>{user}</username><password>{pw}</password></query></iq>")


async def opened(harness: Harness, n: int) -> list[RawStream]:
    streams = []
    for _ in range(n):
        s = await RawStream.open(harness.port)
        await s.header()
        streams.append(s)
    return streams


async def test_unauthenticated_connections_per_address_are_capped(harness: Harness) -> None:
    """Past c2s.preauth_per_ip, the next connection gets policy-violation before it says
    anything; one that authenticates frees its place, and a real client logs in."""
    await harness.stop_node()
    await harness.start(c2s_extra="preauth_per_ip = 2")
    held = await opened(harness, 2)
    s = await RawStream.open(harness.port)
    assert headed_error(await s.read_to_close()) == b"policy-violation"
    s.close()
    held[0].close()
    held[1].close()
    authed = await authed_stream(harness, "alice")  # one place while it negotiates, then none
    more = await opened(harness, 1)
    await harness.logged_in("bob")  # the second place (alice's stream no longer counts)
    for x in (authed, *more):
        x.close()


async def test_a_refused_client_that_talks_first_still_reads_the_error(
        harness: Harness) -> None:
    """A client refused at accept whose stream header is already there when the server
    gets to the connection (a busy server accepts late) still reads the policy-violation:
    the server shuts its side and drops what arrives, instead of closing with the header
    unread, which makes the kernel send a reset in place of the queued error."""
    await harness.stop_node()
    await harness.start(c2s_extra="preauth_per_ip = 1")
    held = await opened(harness, 1)
    # a blocking socket: connected and the header sent before the server (on this event
    # loop) has even seen the connection
    sock = socket.create_connection(("127.0.0.1", harness.port), timeout=5)
    try:
        sock.sendall(b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                     b"xmlns:stream='http://etherx.jabber.org/streams' to='localhost' "
                     b"version='1.0'>")
        await asyncio.sleep(0.3)  # the server accepts, refuses and ends its side
        got = b""
        while chunk := await asyncio.to_thread(sock.recv, 65536):
            got += chunk
        assert headed_error(got) == b"policy-violation"
    finally:
        sock.close()
        held[0].close()


async def test_unauthenticated_connections_in_all_are_capped(harness: Harness) -> None:
    await harness.stop_node()
    await harness.start(c2s_extra="preauth_total = 3")
    held = await opened(harness, 3)
    s = await RawStream.open(harness.port)
    out = await s.read_to_close()
    assert headed_error(out) == b"policy-violation"
    assert b"to this server" in out
    s.close()
    held[0].close()
    for _ in range(100):  # (the server notices the close on its next read)
        assert harness.node is not None
        if harness.node.preauth.total < 3:
            break
        await asyncio.sleep(0.01)
    again = await opened(harness, 1)
    for x in (*held[1:], *again):
        x.close()


async def test_stanzas_are_smaller_before_authentication(harness: Harness) -> None:
    """c2s.preauth_max_stanza_size (16 KiB) before SASL; max_stanza_size after it."""
    body = "x" * 20000
    s = await tls_stream(harness)
    await s.header()
    s.send(f"<iq type='get' id='big'><query xmlns='jabber:iq:register'>{body}</query></iq>")
    assert stream_error(await s.read_to_close()) == b"policy-violation"
    s.close()
    s = await authed_stream(harness, "carol")
    s.send(f"<message to='carol@localhost/raw' id='m'><body>{body}</body></message>")
    assert body.encode() in await s.read_until(b"</message>")
    s.close()


async def test_a_flooding_stream_is_paused_then_resumed(harness: Harness) -> None:
    """Past its burst the server stops reading the socket (what it read is handled); once the
    budget is back (clock stepped) it reads again and answers what waited."""
    await harness.stop_node()
    await harness.start(c2s_extra="rate_bytes = 1024\nrate_burst = 16384")
    s = await authed_stream(harness, "dave")
    s.send(" " * 20000 + PING.format(id="p1"))
    assert b"id='p1'" in await s.read_until(b"id='p1'")
    s.send(PING.format(id="p2"))
    try:
        got = await s.read_until(b"id='p2'", timeout=0.5)
    except (TimeoutError, AssertionError):
        got = b""
    assert b"id='p2'" not in got  # reading paused: nothing answered
    await harness.clock.advance(10)  # 4 KB over budget at 1 KB/s: back after 4 s
    assert b"id='p2'" in await s.read_until(b"id='p2'")
    s.close()


async def test_a_stream_sending_too_many_stanzas_is_paused_then_resumed(
        harness: Harness) -> None:
    """c2s.rate_stanzas: small stanzas under the byte budget, but too many of them: past the
    burst the server stops reading; once the budget is back it reads and answers again."""
    await harness.stop_node()
    await harness.start(c2s_extra="rate_stanzas = 1\nrate_stanzas_burst = 20")
    s = await authed_stream(harness, "dave")  # (its SASL, stream and bind count too)
    s.send("".join(PING.format(id=f"q{i}") for i in range(30)))
    assert b"id='q29'" in await s.read_until(b"id='q29'")  # that read is handled whole
    s.send(PING.format(id="late"))
    try:
        got = await s.read_until(b"id='late'", timeout=0.5)
    except (TimeoutError, AssertionError):
        got = b""
    assert b"id='late'" not in got  # paused: nothing answered
    await harness.clock.advance(30)  # about 15 over at 1/s: back after about 15 s
    assert b"id='late'" in await s.read_until(b"id='late'")
    s.close()


async def test_the_streams_of_one_address_share_a_budget(harness: Harness) -> None:
    """c2s.rate_*_per_ip: each stream keeps within its own budget, but together they
    overdraw their address's: the next stream to read is paused; a stream from another
    address is not; the budget comes back."""
    await harness.stop_node()
    await harness.start(c2s_extra="rate_stanzas_per_ip = 1\nrate_stanzas_burst_per_ip = 40")
    a = await authed_stream(harness, "dave")  # (each login spends a few stanzas too)
    b = await authed_stream(harness, "erin")
    a.send("".join(PING.format(id=f"a{i}") for i in range(20)))
    assert b"id='a19'" in await a.read_until(b"id='a19'")
    b.send("".join(PING.format(id=f"b{i}") for i in range(20)))
    assert b"id='b19'" in await b.read_until(b"id='b19'")  # this read overdrew it
    a.send(PING.format(id="next"))  # (handled: it was read; then dave's reading pauses)
    assert b"id='next'" in await a.read_until(b"id='next'")
    a.send(PING.format(id="late"))
    try:
        got = await a.read_until(b"id='late'", timeout=0.5)
    except (TimeoutError, AssertionError):
        got = b""
    assert b"id='late'" not in got  # dave's stream is paused: erin's stanzas spent it too
    reader, writer = await asyncio.open_connection("127.0.0.1", harness.port,
                                                   local_addr=("127.0.0.2", 0))
    other = RawStream(reader, writer)
    await harness.user("frank")
    await other.header()
    await other.starttls()
    await other.header()
    other.send(f"<auth xmlns='{SASL}' mechanism='PLAIN'>"
               f"{b64(chr(0) + 'frank' + chr(0) + PASSWORD)}</auth>")
    await other.read_until(b"success>")
    await other.header()
    other.send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
    await other.read_until(b"</iq>")
    other.send(PING.format(id="elsewhere"))
    assert b"id='elsewhere'" in await other.read_until(b"id='elsewhere'")
    await harness.clock.advance(60)
    assert b"id='late'" in await a.read_until(b"id='late'")
    for s in (a, b, other):
        s.close()


async def test_a_normal_client_notices_no_limit(harness: Harness) -> None:
    a = await harness.logged_in("erin")
    b = await harness.logged_in("frank")
    for i in range(200):
        a.send_message(mto="frank@localhost/test", mbody=f"hello {i} " + "y" * 500)
    got = [await asyncio.wait_for(b.next_message(), 5) for _ in range(200)]
    assert got[-1]["body"].startswith("hello 199")


async def register(s: RawStream, i: int, user: str) -> bytes:
    s.send(REGISTER.format(id=f"r{i}", user=user, pw=PASSWORD))
    return await s.read_element(f"id='r{i}'".encode())


async def test_registrations_per_address_and_hour(harness: Harness) -> None:
    """registration.per_ip_per_hour: the next one is refused with resource-constraint (wait)
    until an hour has passed since the first."""
    await harness.stop_node()
    await harness.start(extra="[registration]\nper_ip_per_hour = 2")
    s = await tls_stream(harness)
    await s.header()
    assert b"type='result'" in await register(s, 1, "reg1")
    assert b"type='result'" in await register(s, 2, "reg2")
    out = await register(s, 3, "reg3")
    assert b"type='error'" in out and b"<resource-constraint " in out, out
    assert b"type='wait'" in out
    s.close()
    await harness.clock.advance(3601)  # (past every negotiation deadline too: a new stream)
    s = await tls_stream(harness)
    await s.header()
    assert b"type='result'" in await register(s, 4, "reg3")
    s.close()
    s = await tls_stream(harness)
    await s.header()
    s.send(f"<auth xmlns='{SASL}' mechanism='PLAIN'>{b64(chr(0) + 'reg3' + chr(0) + PASSWORD)}"
           "</auth>")
    assert b"<success" in await s.read_until(b"success>")
    s.close()


async def _plain_from(harness: Harness, user: str, password: str,
                      source: str = "127.0.0.1") -> bytes:
    """A PLAIN login from ``source`` over STARTTLS: what the server answered, to the close
    when it closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", harness.port,
                                                   local_addr=(source, 0))
    s = RawStream(reader, writer)
    head = await s.header()
    if b"<stream:error>" in head:
        s.close()
        return head
    await s.starttls()
    await s.header()
    s.send(f"<auth xmlns='{SASL}' mechanism='PLAIN'>{b64(chr(0) + user + chr(0) + password)}"
           "</auth>")
    out = await s.read_until(b"</failure>") if password != PASSWORD else \
        await s.read_until(b"success>")
    if b"<stream:error>" in out:
        out += await s.read_to_close()
    s.close()
    return out


async def test_an_address_failing_too_many_logins_is_banned(harness: Harness) -> None:
    """auth.max_failures_per_ip failed logins (on any streams) ban the address for
    auth.ban_seconds: the failing stream ends with policy-violation, new connections get it
    at once, the right password does not help; other addresses log in; the ban ends."""
    await harness.stop_node()
    await harness.start(extra="max_failures_per_ip = 3\nban_seconds = 1.5")
    await harness.user("eve")
    held = await tls_stream(harness)  # opened before the ban
    await held.header()
    for _ in range(2):
        out = await _plain_from(harness, "eve", "wrong")
        assert b"<not-authorized/>" in out and b"<stream:error>" not in out
    out = await _plain_from(harness, "eve", "wrong")
    assert stream_error(out) == b"policy-violation" and b"too many failed logins" in out
    refused = await _plain_from(harness, "eve", PASSWORD)
    assert headed_error(refused) == b"policy-violation"
    held.send(f"<auth xmlns='{SASL}' mechanism='PLAIN'>{b64(chr(0) + 'eve' + chr(0) + PASSWORD)}"
              "</auth>")  # the right password on a stream that was open: refused too
    assert stream_error(await held.read_to_close()) == b"policy-violation"
    held.close()
    c = await harness.client("eve@localhost/x", login=False)
    assert not await asyncio.wait_for(c.login(harness.port), 10)
    # another address is not banned
    assert b"<success" in await _plain_from(harness, "eve", PASSWORD, source="127.0.0.2")
    await asyncio.sleep(1.6)
    assert b"<success" in await _plain_from(harness, "eve", PASSWORD)
