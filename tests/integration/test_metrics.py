"""``/metrics`` over real sockets: the Prometheus text, the numbers moving after logins and
messages, and who may read it (loopback, a bearer token, nobody else)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import Harness
from tests.integration.rawstream import RawStream
from tests.integration.wsstream import CLOSE, WsStream, ws_url

Values = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Values:
    """Every sample: (name, sorted labels) -> value."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def scrape(port: int, headers: dict[str, str] | None = None
                 ) -> tuple[int, dict[str, str], str]:
    async with aiohttp.ClientSession() as http, http.get(
            f"http://127.0.0.1:{port}/metrics", headers=headers) as r:
        return r.status, dict(r.headers), await r.text()


async def values(harness: Harness) -> Values:
    assert harness.node is not None
    status, headers, body = await scrape(harness.node.http_port)
    assert status == 200, body
    assert headers["Content-Type"].startswith("text/plain")
    return parse(body)


def v(vals: Values, name: str, **labels: str) -> float:
    return vals.get((name, tuple(sorted(labels.items()))), 0.0)


async def eventually(harness: Harness, want: float, name: str, **labels: str) -> None:
    for _ in range(200):
        got = v(await values(harness), name, **labels)
        if got == want:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{name} {labels} is {got}, not {want}")


async def test_numbers_move_after_logins_and_a_message(harness: Harness) -> None:
    before = await values(harness)
    assert v(before, "hongyan_sessions", transport="tls") == 0
    assert v(before, "hongyan_worker_sessions", transport="tls", worker="0") == 0
    assert v(before, "hongyan_resident_memory_bytes") > 10_000_000
    a = await harness.logged_in("alice")
    b = await harness.logged_in("bob")
    a.send_message(mto="bob@localhost/test", mbody="hi", mtype="chat")
    assert (await b.next_message())["body"] == "hi"
    after = await values(harness)
    assert v(after, "hongyan_logins_total") - v(before, "hongyan_logins_total") == 2
    assert v(after, "hongyan_messages_routed_total") - \
        v(before, "hongyan_messages_routed_total") == 1
    # presence and roster gets too
    assert v(after, "hongyan_stanzas_in_total") - v(before, "hongyan_stanzas_in_total") >= 5
    assert v(after, "hongyan_stanzas_out_total") - v(before, "hongyan_stanzas_out_total") >= 5
    assert v(after, "hongyan_sessions", transport="tls") == 2  # STARTTLS
    assert v(after, "hongyan_connections", transport="tls") == 2
    assert v(after, "hongyan_connections", transport="tcp") == 0
    assert v(after, "hongyan_worker_logins_total", worker="0") == \
        v(after, "hongyan_logins_total")

    # a message to an account with no session is stored
    await harness.user("carol")
    a.send_message(mto="carol@localhost", mbody="later", mtype="chat")
    await eventually(harness, 1, "hongyan_offline_messages_stored_total")
    await a.close()
    await b.close()
    harness.clients.clear()
    await eventually(harness, 0, "hongyan_connections", transport="tls")
    assert v(await values(harness), "hongyan_sessions", transport="tls") == 0


async def test_failed_logins_and_connections_by_transport(harness: Harness) -> None:
    assert harness.node is not None
    s = await RawStream.open(harness.port)
    await s.header()
    await eventually(harness, 1, "hongyan_connections", transport="tcp")
    s.close()
    await harness.user("dave")
    c = await harness.client("dave@localhost/x", password="wrong", login=False)
    assert not await c.login(harness.port)
    vals = await values(harness)
    assert v(vals, "hongyan_login_failures_total") >= 1
    assert v(vals, "hongyan_logins_total") == 0
    ws = await WsStream.connect(ws_url(harness.node.https_port, tls=True))
    await ws.login("dave", "w")
    vals = await values(harness)
    assert v(vals, "hongyan_connections", transport="websocket") == 1
    assert v(vals, "hongyan_sessions", transport="websocket") == 1
    ws.send(CLOSE)
    await ws.read_to_close()
    await ws.close()
    await eventually(harness, 0, "hongyan_connections", transport="websocket")


async def test_not_public_by_default(harness: Harness) -> None:
    """From loopback it is served; a client a trusted proxy forwards from elsewhere is not."""
    await harness.stop_node()
    node = await harness.start(http_extra='trusted_proxies = ["127.0.0.0/8"]')
    assert (await scrape(node.http_port))[0] == 200
    status, _, body = await scrape(node.http_port, {"X-Forwarded-For": "203.0.113.9"})
    assert status == 403 and "hongyan_" not in body


async def test_a_bearer_token(harness: Harness) -> None:
    await harness.stop_node()
    token = "s3cret-s3cret-s3cret"
    node = await harness.start(extra=f'[metrics]\nallow_from = []\ntoken = "{token}"\n')
    status, headers, body = await scrape(node.http_port)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    assert "hongyan_" not in body
    for wrong in ("Bearer nope", f"Bearer {token}x", f"Basic {token}"):
        status, _, body = await scrape(node.http_port, {"Authorization": wrong})
        assert status in (401, 403) and "hongyan_" not in body, wrong
    status, _, body = await scrape(node.http_port, {"Authorization": f"Bearer {token}"})
    assert status == 200 and "hongyan_logins_total" in body


async def _health(port: int, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(
            f"http://127.0.0.1:{port}/health", headers=headers) as r:
        return r.status, await r.json()


async def test_health_details_only_for_those_who_may_read_metrics(harness: Harness) -> None:
    """A load balancer anywhere gets /health's status; its details (domain, sessions,
    workers) go to the readers of /metrics only: loopback by default, a forwarded address
    from elsewhere does not get them, the bearer token does."""
    await harness.stop_node()
    token = "s3cret-s3cret-s3cret"
    node = await harness.start(http_extra='trusted_proxies = ["127.0.0.0/8"]',
                               extra=f'[metrics]\ntoken = "{token}"\n')
    status, body = await _health(node.http_port)
    assert status == 200 and body["status"] == "ok" and body["domain"] == "localhost"
    assert body["sessions"] == 0 and body["workers"] == 1
    away = {"X-Forwarded-For": "203.0.113.9"}
    assert await _health(node.http_port, away) == (200, {"status": "ok"})
    status, body = await _health(node.http_port, {**away, "Authorization": f"Bearer {token}"})
    assert status == 200 and body["domain"] == "localhost"
    # without the metrics module nobody gets the details
    await harness.stop_node()
    node = await harness.start(extra='[modules]\ndisabled = ["metrics"]\n')
    assert await _health(node.http_port) == (200, {"status": "ok"})
