"""The HTTP listener over real sockets: both ports, /health, 404 and 405, and the client's address
and scheme as a handler sees them, with and without a trusted reverse proxy in front."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from tests.integration.clients import insecure_context
from tests.integration.conftest import Harness


async def get(url: str, headers: dict[str, str] | None = None, method: str = "GET"
              ) -> tuple[int, dict[str, str], str]:
    async with aiohttp.ClientSession() as http, http.request(
            method, url, headers=headers, ssl=insecure_context()) as r:
        return r.status, dict(r.headers), await r.text()


def urls(harness: Harness) -> list[str]:
    node = harness.node
    assert node is not None and node.http_port and node.https_port
    return [f"http://127.0.0.1:{node.http_port}", f"https://127.0.0.1:{node.https_port}"]


async def test_health_on_http_and_https(harness: Harness) -> None:
    for base in urls(harness):
        status, headers, body = await get(base + "/health")
        assert status == 200 and headers["Content-Type"].startswith("application/json")
        assert body == ('{"status": "ok", "domain": "localhost", "sessions": 0, "worker": null, '
                    '"workers": 1, "missing": []}')


async def test_unknown_path_and_wrong_method(harness: Harness) -> None:
    base = urls(harness)[0]
    assert (await get(base + "/nothing-here"))[0] == 404
    status, headers, _ = await get(base + "/health", method="POST")
    assert status == 405 and headers["Allow"] == "GET"


async def whoami(request: web.BaseRequest) -> web.StreamResponse:
    return web.Response(text=f"{request.remote} {request.scheme}")


async def test_forwarded_headers_from_an_untrusted_peer_are_ignored(harness: Harness) -> None:
    assert harness.node is not None
    harness.node.http_routes.add("GET", "/whoami", whoami)
    plain, tls = urls(harness)
    spoof = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
    assert (await get(plain + "/whoami", spoof))[2] == "127.0.0.1 http"
    assert (await get(tls + "/whoami", {"X-Forwarded-Proto": "http"}))[2] == "127.0.0.1 https"


async def test_forwarded_headers_from_a_trusted_proxy(harness: Harness) -> None:
    await harness.stop_node()
    await harness.start(http_extra='trusted_proxies = ["127.0.0.0/8"]')
    assert harness.node is not None
    harness.node.http_routes.add("GET", "/whoami", whoami)
    plain = urls(harness)[0] + "/whoami"
    assert (await get(plain))[2] == "127.0.0.1 http"
    assert (await get(plain, {"X-Forwarded-For": "203.0.113.9",
                              "X-Forwarded-Proto": "https"}))[2] == "203.0.113.9 https"
    # what the client wrote itself before the proxy appended its address is not believed
    assert (await get(plain, {"X-Forwarded-For": "6.6.6.6, 203.0.113.9, 127.0.0.2"}))[2] == \
        "203.0.113.9 http"
