"""XMPP over BOSH (XEP-0124/XEP-0206): the protocol's rules that keep no stored state, on
SQLite only (test_bosh.py has the rest, on both): long polling on the node's SteppedClock,
hold, polling sessions, pause, the rid window and overactivity, CORS, and bad input (a guessed
sid, malformed and oversized bodies)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.integration.boshclient import EMPTY, HTTPBIND, Bosh, attr, bosh_url
from tests.integration.conftest import Harness
from tests.integration.test_bosh import MSG, bosh, settle, terminated

__all__ = ["bosh"]  # (the fixture)


async def test_long_poll_answers_empty_at_wait(harness: Harness, bosh: Bosh) -> None:
    await harness.user("carol")
    await bosh.login("carol@localhost", wait=20)
    poll = bosh.send()
    assert harness.node is not None and harness.node.bosh is not None
    core = harness.node.bosh.sessions[bosh.sid].core
    for _ in range(100):  # (held once it arrived: its wait counts from then)
        if core._held:
            break
        await asyncio.sleep(0.05)
    assert not poll.done()
    await harness.clock.advance(19)
    await asyncio.sleep(0.1)
    assert not poll.done()
    await harness.clock.advance(1.5)
    got = await asyncio.wait_for(poll, 5)
    assert got == f"<body xmlns='{HTTPBIND}'/>"
    # the session goes on
    assert "<iq " in await bosh.request("<iq xmlns='jabber:client' type='get' id='p'>"
                                        "<ping xmlns='urn:xmpp:ping'/></iq>")


async def test_a_second_request_releases_the_held_one(harness: Harness, bosh: Bosh) -> None:
    """hold=1: a new request makes the held one answered at once (XEP-0124 §7)."""
    await harness.user("dave")
    await bosh.login("dave@localhost")
    first = bosh.send()
    await asyncio.sleep(0.2)
    assert not first.done()
    second = bosh.send()
    assert await asyncio.wait_for(first, 5) == f"<body xmlns='{HTTPBIND}'/>"
    await asyncio.sleep(0.2)
    assert not second.done()
    await bosh.request(type="terminate")
    assert "type='terminate'" in await asyncio.wait_for(second, 5) or second.done()



async def test_plain_http_offers_no_authentication(harness: Harness) -> None:
    """Over http:// the stream is not encrypted: no SASL (c2s.require_encryption), no
    STARTTLS either (TLS is HTTPS's)."""
    assert harness.node is not None
    b = Bosh(bosh_url(harness.node.http_port))
    try:
        got = await b.create()
        assert attr(got, "secure") == "false"
        features = got[got.index("<stream:features"):]
        for offer in ("<mechanisms", "<authentication", "<starttls"):
            assert offer not in features, got
    finally:
        await b.close()


async def test_cors_preflight_and_headers(harness: Harness, bosh: Bosh) -> None:
    origin = {"Origin": "https://web.example"}
    async with bosh.http.options(bosh.url, ssl=False, headers={
            **origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type"}) as r:
        assert r.status == 200
        assert r.headers["Access-Control-Allow-Origin"] == "*"
        assert "POST" in r.headers["Access-Control-Allow-Methods"]
        assert r.headers["Access-Control-Allow-Headers"].lower() == "content-type"
    await bosh.post(bosh.body(to="localhost", wait="5", hold="1", ver="1.11",
                              xmpp__version="1.0"), headers=origin)
    assert bosh.headers["Access-Control-Allow-Origin"] == "*"
    assert bosh.headers["Content-Type"] == "text/xml; charset=utf-8"
    async with bosh.http.get(bosh.url, ssl=False) as r:
        assert r.status == 200 and "BOSH" in await r.text()


async def test_a_rid_beyond_the_window_ends_the_session(harness: Harness, bosh: Bosh) -> None:
    await harness.user("gina")
    await bosh.login("gina@localhost")
    # requests='2': rid+1 and rid+2 are in the window, rid+3 is not
    got = await bosh.request(rid=bosh.rid + 3)
    assert terminated(got, "item-not-found")
    assert terminated(await bosh.request(), "item-not-found")


async def test_too_many_simultaneous_requests_is_overactivity(harness: Harness,
                                                              bosh: Bosh) -> None:
    await harness.user("hank")
    await bosh.login("hank@localhost")
    base = bosh.rid
    held = bosh.send(rid=base + 1)
    await asyncio.sleep(0.1)
    early = bosh.send(rid=base + 3)  # (waits for base+2)
    await asyncio.sleep(0.1)
    # a third request while the two others are unanswered, requests='2' (§11)
    third = await bosh.request(rid=base + 2)
    assert terminated(third, "policy-violation")
    for t in (held, early):
        assert terminated(await asyncio.wait_for(t, 5), "policy-violation")


async def test_polling_too_often_is_a_policy_violation(harness: Harness, bosh: Bosh) -> None:
    """hold=0 (a polling session): two empty requests within 'polling' seconds, the first
    answered empty (§12)."""
    await harness.user("ivan")
    await bosh.login("ivan@localhost", hold=0, between=lambda: harness.clock.advance(2.5))
    await harness.clock.advance(2.5)
    assert await bosh.request() == EMPTY  # answered at once: nothing held
    assert terminated(await bosh.request(), "policy-violation")


async def test_polling_at_the_allowed_interval_goes_on(harness: Harness, bosh: Bosh) -> None:
    await harness.user("ivan")
    await bosh.login("ivan@localhost", hold=0, between=lambda: harness.clock.advance(2.5))
    for _ in range(3):
        await harness.clock.advance(2.5)
        assert await bosh.request() == EMPTY


async def test_pause_answers_held_requests_and_stretches_inactivity(harness: Harness,
                                                                    bosh: Bosh) -> None:
    await harness.user("judy")
    bob = await harness.logged_in("bob")
    await bosh.login("judy@localhost")
    held = bosh.send()
    await asyncio.sleep(0.1)
    assert await bosh.request(pause="100") == EMPTY  # no payloads in the pause's answer
    assert await asyncio.wait_for(held, 5) == EMPTY
    # longer than 'inactivity' (60), within the pause: the session is still there
    await harness.clock.advance(90)
    await settle(harness)
    bob.send_message(mto="judy@localhost/bosh", mbody="after the pause", mtype="chat")
    assert "after the pause" in await bosh.until("after the pause")
    # more than 'maxpause' (120) is refused
    assert terminated(await bosh.request(pause="121"), "policy-violation")


async def test_a_guessed_sid_is_item_not_found(harness: Harness, bosh: Bosh) -> None:
    await harness.user("kate")
    await bosh.login("kate@localhost")
    real = bosh.sid
    for sid in ("nonsense", real[:-3] + "xyz.0", real + "0", real.split(".")[0] + ".7", ""):
        bosh.sid = sid
        got = await bosh.post(f"<body xmlns='{HTTPBIND}' rid='{bosh.rid + 1}' sid='{sid}'/>")
        assert terminated(got, "item-not-found"), (sid, got)
    # the real session lost nothing
    bosh.sid = real
    assert "<iq " in await bosh.request("<iq xmlns='jabber:client' type='get' id='p'>"
                                        "<ping xmlns='urn:xmpp:ping'/></iq>")


@pytest.mark.parametrize("data", [
    b"not xml", b"<body xmlns='http://jabber.org/protocol/httpbind'/>",  # (no rid)
    b"<body xmlns='urn:other' rid='1'/>",
    b"<body xmlns='http://jabber.org/protocol/httpbind' rid='x1'/>",
    b"<!DOCTYPE body [<!ENTITY a 'b'>]><body xmlns='http://jabber.org/protocol/httpbind' "
    b"rid='1'/>",
    b"<body xmlns='http://jabber.org/protocol/httpbind' rid='1'>text</body>",
    b"<body xmlns='http://jabber.org/protocol/httpbind' rid='1'><open",
])
async def test_bad_bodies_are_bad_request(harness: Harness, bosh: Bosh, data: bytes) -> None:
    got = await bosh.post(data)
    assert bosh.status == 200
    assert terminated(got, "bad-request"), got


async def test_an_unknown_host_is_host_unknown(harness: Harness, bosh: Bosh) -> None:
    assert terminated(await bosh.create(to="elsewhere.example"), "host-unknown")


async def test_an_oversized_body_is_413_and_the_session_goes_on(harness: Harness,
                                                                bosh: Bosh) -> None:
    assert harness.node is not None
    await harness.user("liam")
    await bosh.login("liam@localhost")
    limit = harness.node.config.c2s.max_stanza_size
    big = MSG.format(to="bob@localhost", text="x" * (limit + 8192))
    got = await bosh.post(bosh.body(big))
    assert bosh.status == 413, got
    # without a Content-Length (chunked), the same once the limit is passed
    async def chunks() -> AsyncIterator[bytes]:
        data = bosh.body(big).encode()
        for i in range(0, len(data), 65536):
            yield data[i:i + 65536]

    async with bosh.http.post(bosh.url, data=chunks(), ssl=False) as r:
        assert r.status == 413
    # that rid never arrived: the session takes it again
    bosh.rid -= 2
    assert "<iq " in await bosh.request("<iq xmlns='jabber:client' type='get' id='p'>"
                                        "<ping xmlns='urn:xmpp:ping'/></iq>")


async def test_metrics_count_bosh_sessions(harness: Harness, bosh: Bosh) -> None:
    from tests.integration.test_metrics import eventually, v, values
    await harness.user("rita")
    await bosh.login("rita@localhost")
    vals = await values(harness)
    assert v(vals, "hongyan_connections", transport="bosh") == 1
    assert v(vals, "hongyan_sessions", transport="bosh") == 1
    await bosh.request(type="terminate")
    await eventually(harness, 0, "hongyan_connections", transport="bosh")
    await eventually(harness, 0, "hongyan_sessions", transport="bosh")
