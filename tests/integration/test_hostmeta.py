"""Connection discovery (XEP-0156) over real HTTP: both formats list the WebSocket and BOSH
addresses the request came to (or the configured ones), readable from any origin, and the
addresses work."""

from __future__ import annotations

import json

import aiohttp

from tests.integration.clients import insecure_context
from tests.integration.conftest import Harness
from tests.integration.wsstream import OPEN, WsStream

XRD = "http://docs.oasis-open.org/ns/xri/xrd-1.0"
REL = "urn:xmpp:alt-connections:websocket"
BOSH = "urn:xmpp:alt-connections:xbosh"


async def fetch(url: str, headers: dict[str, str] | None = None
                ) -> tuple[int, dict[str, str], str]:
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers,
                                                         ssl=insecure_context()) as r:
        return r.status, dict(r.headers), await r.text()


async def test_both_formats_list_the_websocket_with_cors(harness: Harness) -> None:
    assert harness.node is not None
    for scheme, port in (("http", harness.node.http_port), ("https", harness.node.https_port)):
        base = f"{scheme}://127.0.0.1:{port}/.well-known/host-meta"
        ws = f"{'wss' if scheme == 'https' else 'ws'}://127.0.0.1:{port}/xmpp-websocket"
        bosh = f"{scheme}://127.0.0.1:{port}/http-bind"
        status, headers, xrd = await fetch(base)
        assert status == 200 and headers["Content-Type"].startswith("application/xrd+xml")
        assert headers["Access-Control-Allow-Origin"] == "*"
        assert xrd == ("<?xml version='1.0' encoding='utf-8'?>\n"
                       f"<XRD xmlns='{XRD}'>\n  <Link rel='{REL}' href='{ws}'/>\n"
                       f"  <Link rel='{BOSH}' href='{bosh}'/>\n</XRD>\n")
        status, headers, jrd = await fetch(base + ".json")
        assert status == 200 and headers["Content-Type"].startswith("application/json")
        assert headers["Access-Control-Allow-Origin"] == "*"
        assert json.loads(jrd) == {"links": [{"rel": REL, "href": ws},
                                             {"rel": BOSH, "href": bosh}]}
        # the BOSH address answers a session creation
        async with aiohttp.ClientSession() as http, http.post(
                bosh, ssl=insecure_context(),
                data="<body xmlns='http://jabber.org/protocol/httpbind' rid='1' "
                     "to='localhost' wait='5' hold='1' ver='1.11' xmlns:xmpp='urn:xmpp:xbosh' "
                     "xmpp:version='1.0'/>") as r:
            assert "<stream:features" in await r.text()
        # what it lists is where a client connects
        s = await WsStream.connect(ws)
        s.send(OPEN)
        assert (await s.message()).startswith("<open ")
        await s.close()


async def test_the_host_the_client_asked_for_and_a_bad_one(harness: Harness) -> None:
    assert harness.node is not None
    url = f"http://127.0.0.1:{harness.node.http_port}/.well-known/host-meta.json"
    _, _, body = await fetch(url, {"Host": "chat.example.org"})
    assert json.loads(body)["links"][0]["href"] == "ws://chat.example.org/xmpp-websocket"
    assert json.loads(body)["links"][1]["href"] == "http://chat.example.org/http-bind"
    _, _, body = await fetch(url, {"Host": "x'><script>"})
    assert json.loads(body)["links"][0]["href"] == "ws://localhost/xmpp-websocket"
    assert json.loads(body)["links"][1]["href"] == "http://localhost/http-bind"


async def test_configured_address_and_websocket_off(harness: Harness) -> None:
    await harness.stop_node()
    await harness.start(extra="[hostmeta]\nwebsocket_url = 'wss://chat.example.org/ws'\n"
                              "bosh_url = 'https://chat.example.org/bosh'\n")
    assert harness.node is not None
    base = f"http://127.0.0.1:{harness.node.http_port}/.well-known/host-meta"
    xrd = (await fetch(base))[2]
    assert "href='wss://chat.example.org/ws'" in xrd
    assert "href='https://chat.example.org/bosh'" in xrd
    await harness.stop_node()
    await harness.start(extra="", http_extra="websocket = false\nbosh = false")
    assert harness.node is not None
    base = f"http://127.0.0.1:{harness.node.http_port}/.well-known/host-meta"
    assert json.loads((await fetch(base + ".json"))[2]) == {"links": []}
    assert (await fetch(f"http://127.0.0.1:{harness.node.http_port}/xmpp-websocket"))[0] == 404
    assert (await fetch(f"http://127.0.0.1:{harness.node.http_port}/http-bind"))[0] == 404
