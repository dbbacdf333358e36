"""The web client's page and files over real sockets (aiohttp's client): what ``/`` serves with
Converse.js installed and without it, its security headers, Converse's files and the paths that
try to leave their folder, and the rule that lets a browser on this machine log in over plain
``ws://`` (``[http] loopback_secure``) and nobody else."""

from __future__ import annotations

import json
import re
from pathlib import Path

import aiohttp
import pytest

from hongyan.modules.webclient import DEFAULT_ASSETS
from tests.integration.conftest import Harness
from tests.integration.test_websocket import mechanisms, ws
from tests.integration.wsstream import OPEN

needs_converse = pytest.mark.skipif(
    not (DEFAULT_ASSETS / "converse.min.js").is_file(),
    reason="Converse.js not installed: npm ci --prefix web (./scripts/test.sh does)")


async def get(url: str, headers: dict[str, str] | None = None
              ) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers,
                                                         ssl=False) as r:
        return r.status, dict(r.headers), await r.read()


def base(harness: Harness) -> str:
    assert harness.node is not None
    return f"http://localhost:{harness.node.http_port}"


def settings(page: bytes) -> dict[str, object]:
    m = re.search(rb'<script type="application/json" id="hongyan-settings">(.*?)</script>',
                  page)
    assert m is not None, page
    got = json.loads(m.group(1))
    assert isinstance(got, dict)
    return got


@needs_converse
async def test_the_page_loads_converse_from_this_server(harness: Harness) -> None:
    assert harness.node is not None
    status, headers, page = await get(base(harness) + "/")
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    # every script, style and icon the page names is on this server
    srcs = re.findall(rb'(?:src|href)="([^"]+)"', page)
    assert srcs and all(s.startswith(b"/webclient/") for s in srcs), srcs
    got = settings(page)
    assert got["transport"] == "websocket"
    assert got["websocket_url"] == "/xmpp-websocket" and got["bosh_url"] == "/http-bind"
    conv = got["converse"]
    assert isinstance(conv, dict)
    assert conv["assets_path"] == "/webclient/dist" and conv["default_domain"] == "localhost"
    assert conv["use_system_emojis"] is True and conv["discover_connection_methods"] is False
    # the security headers
    csp = dict(d.strip().split(" ", 1) for d in headers["Content-Security-Policy"].split(";"))
    assert csp["default-src"] == "'none'"
    assert csp["script-src"] == "'self' 'wasm-unsafe-eval'"  # no inline script, no eval
    port, tls_port = harness.node.http_port, harness.node.https_port
    assert csp["connect-src"].split() == [
        "'self'", f"ws://localhost:{port}", f"wss://localhost:{port}",
        f"https://localhost:{tls_port}"]  # and the upload URLs on the HTTPS port
    assert csp["frame-ancestors"] == "'none'" and csp["base-uri"] == "'none'"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "no-referrer"
    # the start-up script and Converse's own files
    status, headers, body = await get(base(harness) + "/webclient/hongyan.js")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript")
    assert b"converse.initialize" in body
    for path, ctype in (("converse.min.js", "text/javascript"), ("converse.min.css", "text/css"),
                        ("emoji.json", "application/json"),
                        ("webfonts/muli.ttf", "font/ttf")):
        status, headers, body = await get(f"{base(harness)}/webclient/dist/{path}")
        assert status == 200, path
        assert headers["Content-Type"].startswith(ctype), (path, headers["Content-Type"])
        assert body == (DEFAULT_ASSETS / path).read_bytes()
    status, headers, _ = await get(base(harness) + "/curve25519_compiled.wasm")
    assert status == 200 and headers["Content-Type"] == "application/wasm"


@needs_converse
async def test_the_transport_is_chosen_per_visit_or_by_config(harness: Harness) -> None:
    _, _, page = await get(base(harness) + "/?transport=bosh")
    assert settings(page)["transport"] == "bosh"
    _, _, page = await get(base(harness) + "/?transport=carrier-pigeon")
    assert settings(page)["transport"] == "websocket"
    await harness.stop_node()
    await harness.start(extra='[webclient]\ntransport = "bosh"\n'
                        'bosh_url = "https://chat.example.org/http-bind"\n'
                        'connect_origins = ["https://upload.example.org"]\n')
    _, headers, page = await get(base(harness) + "/")
    got = settings(page)
    assert got["transport"] == "bosh" and got["bosh_url"] == "https://chat.example.org/http-bind"
    csp = headers["Content-Security-Policy"]
    assert "https://chat.example.org " in csp and "https://upload.example.org" in csp
    _, _, page = await get(base(harness) + "/?transport=websocket")
    assert settings(page)["transport"] == "websocket"


@needs_converse
async def test_paths_that_leave_the_assets_folder_are_not_found(harness: Harness) -> None:
    url = base(harness) + "/webclient/dist/"
    for bad in ("../package.json", "..%2fpackage.json", "%2e%2e/package.json", "chunkjs/",
                "", "images", ".hidden", "/etc/passwd", "..\\package.json",
                "sounds/../../package.json", "nothing-here.js"):
        status, _, body = await get(url + bad)
        assert status == 404, (bad, status, body[:80])
        assert b"converse" not in body.lower(), bad


async def test_without_converse_the_page_says_how_to_install_it(harness: Harness,
                                                                tmp_path: Path) -> None:
    empty = tmp_path / "no-converse-here"
    empty.mkdir()
    await harness.stop_node()
    await harness.start(extra=f'[webclient]\nassets_dir = "{empty}"\n')
    status, headers, page = await get(base(harness) + "/")
    assert status == 503 and headers["Content-Type"] == "text/html; charset=utf-8"
    text = page.decode()
    assert "The web client is not installed" in text
    assert "npm ci --prefix web" in text and "./scripts/serve.sh" in text
    assert str(empty) in text
    assert "Content-Security-Policy" in headers
    assert (await get(base(harness) + "/webclient/dist/converse.min.js"))[0] == 404
    # the rest of the listener is unaffected
    assert (await get(base(harness) + "/health"))[0] == 200


async def features(harness: Harness, headers: dict[str, str] | None = None) -> list[bytes]:
    s = await ws(harness, headers=headers)
    s.send(OPEN)
    await s.message()
    got = mechanisms((await s.message()).encode())
    await s.close()
    return got


async def test_a_browser_on_this_machine_may_log_in_over_plain_websocket(
        harness: Harness) -> None:
    """A page from this machine in a browser on this machine (loopback both ends, a loopback
    Origin, nothing forwarded) is as private as a local socket: SASL is offered over ws://,
    without -PLUS. Anything that may have come from elsewhere is not."""
    assert harness.node is not None
    port = harness.node.http_port
    for origin in (f"http://localhost:{port}", "http://127.0.0.1", "https://[::1]:5281"):
        assert await features(harness, {"Origin": origin}) == [
            b"SCRAM-SHA-256", b"SCRAM-SHA-1", b"PLAIN"], origin
    await harness.user("lena")
    s = await ws(harness, headers={"Origin": f"http://localhost:{port}"})
    assert "lena@localhost/ws" in await s.login("lena")
    await s.close()
    for headers in (None,  # no Origin: not a browser's page
                    {"Origin": "https://chat.example.org"},
                    {"Origin": "http://localhost.example.org"},
                    {"Origin": "null"},
                    # what a reverse proxy on this machine relays from elsewhere
                    {"Origin": "http://localhost", "X-Forwarded-For": "203.0.113.9"},
                    {"Origin": "http://localhost", "Forwarded": "for=203.0.113.9"},
                    {"Origin": "http://localhost", "X-Real-IP": "203.0.113.9"},
                    {"Origin": "http://localhost", "Via": "1.1 proxy"}):
        assert await features(harness, headers) == [], headers
    await harness.stop_node()
    await harness.start(http_extra="loopback_secure = false")
    assert await features(harness, {"Origin": "http://localhost"}) == []
