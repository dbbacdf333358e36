"""The HTTP listener's parts on their own: the route table, the trusted-proxy rule, and routes
registered through the module API, released when the module stops."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

import pytest
from aiohttp import web

from hongyan.server.module import ModuleAPI
from hongyan.server.node import Node
from hongyan.transport.http import Proxies, Routes


async def ok(_request: web.BaseRequest) -> web.StreamResponse:
    return web.Response(text="ok")


async def other(_request: web.BaseRequest) -> web.StreamResponse:
    return web.Response(text="other")


def test_routes_exact_prefix_methods_and_removal() -> None:
    routes = Routes()
    remove = routes.add("get", "/health", ok)
    routes.add("PUT", "/upload/*", ok)
    routes.add("GET", "/upload/*", other)
    routes.add("GET", "/upload/big/*", ok)
    assert routes.find("GET", "/health") == (ok, ("GET",))
    assert routes.find("HEAD", "/health") == (ok, ("GET",))  # HEAD is GET without a body
    assert routes.find("POST", "/health") == (None, ("GET",))  # -> 405 with Allow
    assert routes.find("GET", "/nowhere") == (None, ())  # -> 404
    assert routes.find("GET", "/health/x") == (None, ())  # exact means exact
    assert routes.find("PUT", "/upload/a/b.png") == (ok, ("GET", "PUT"))
    assert routes.find("GET", "/upload/a") == (other, ("GET", "PUT"))
    assert routes.find("GET", "/upload/big/a") == (ok, ("GET",))  # the longest prefix
    assert routes.find("GET", "/upload") == (None, ())
    with pytest.raises(ValueError, match="two handlers"):
        routes.add("GET", "/health", other)
    with pytest.raises(ValueError, match="starts with"):
        routes.add("GET", "health", other)
    remove()
    assert routes.find("GET", "/health") == (None, ())
    routes.add("GET", "/health", other)  # free again
    remove()  # a stale remover leaves the new handler alone
    assert routes.find("GET", "/health") == (other, ("GET",))


PROXIES = ["127.0.0.1", "10.0.0.0/8", "::1"]


@pytest.mark.parametrize(("peer", "xff", "proto", "client", "scheme"), [
    # not a trusted proxy: its headers mean nothing
    ("192.0.2.7", "203.0.113.9", "https", "192.0.2.7", None),
    # a trusted proxy: the client is what it says
    ("127.0.0.1", "203.0.113.9", "https", "203.0.113.9", "https"),
    ("::ffff:127.0.0.1", "203.0.113.9", "http", "203.0.113.9", "http"),
    ("::1", "2001:db8::5", None, "2001:db8::5", None),
    # a chain: the last address that is not a trusted proxy; what the client wrote itself
    # (the left part) is not believed
    ("127.0.0.1", "6.6.6.6, 203.0.113.9, 10.1.2.3", "https", "203.0.113.9", "https"),
    ("127.0.0.1", "10.9.9.9, 10.1.2.3", None, "10.9.9.9", None),
    # garbage in the header: the last proxy that said something sensible
    ("127.0.0.1", "6.6.6.6, nonsense, 10.1.2.3", None, "10.1.2.3", None),
    ("127.0.0.1", "", None, "127.0.0.1", None),
    ("127.0.0.1", None, None, "127.0.0.1", None),
    # the scheme is the nearest proxy's word, and only http or https
    ("127.0.0.1", None, "http, https", "127.0.0.1", "https"),
    ("127.0.0.1", None, "gopher", "127.0.0.1", None),
    ("127.0.0.1", "[2001:db8::5]", "HTTPS", "2001:db8::5", "https"),
])
def test_forwarded_headers_believed_only_from_trusted_proxies(
        peer: str, xff: str | None, proto: str | None, client: str, scheme: str | None) -> None:
    assert Proxies(PROXIES).client(peer, xff, proto) == (client, scheme)


def test_no_trusted_proxy_believes_nobody() -> None:
    proxies = Proxies([])
    assert not proxies
    assert proxies.client("127.0.0.1", "203.0.113.9", "https") == ("127.0.0.1", None)
    assert not proxies.trusted("127.0.0.1") and not Proxies(PROXIES).trusted("not an address")


async def test_module_routes_are_released_when_the_module_stops() -> None:
    routes = Routes()
    api = ModuleAPI(cast(Node, SimpleNamespace(http_routes=routes)), "web")
    api.http_route("GET", "/.well-known/host-meta", ok)
    api.http_route("GET", "/files/*", other)
    assert routes.find("GET", "/.well-known/host-meta")[0] is ok
    assert routes.find("GET", "/files/x")[0] is other
    await api.release()
    assert routes.find("GET", "/.well-known/host-meta") == (None, ())
    assert routes.find("GET", "/files/x") == (None, ())
