"""The REST admin API at /api/ with aiohttp's client against the real server: the document,
every route refused without a good token (missing, wrong, revoked, expired → 401; a read token
on a route that changes something → 403), what each route does (checked with slixmpp logins
and messages), bad input, HTTPS-only from afar, and no token in any log line. Tokens come from
``hongyan token create``, as an operator makes them. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any

import aiohttp
import pytest

from tests.integration.clients import Client
from tests.integration.conftest import Harness
from tests.integration.test_adhoc import can_login
from tests.integration.test_process import hongyan

#: a valid body for each route that takes one (by method and path)
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/api/users"): {"username": "zed", "password": "pw"},
    ("PUT", "/api/users/{username}/password"): {"password": "new"},
    ("POST", "/api/announce"): {"body": "hi"},
    ("PUT", "/api/motd"): {"body": "hi"},
    ("POST", "/api/shutdown"): {"delay": 0},
    ("POST", "/api/restart"): {"delay": 0},
    ("POST", "/api/invites"): {},
}


def token(harness: Harness, *args: str) -> str:
    r = hongyan("token", "create", *args, config=harness.tmp_path / "hongyan.toml")
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


class Api:
    def __init__(self, harness: Harness, http: aiohttp.ClientSession) -> None:
        assert harness.node is not None
        self.base = f"http://127.0.0.1:{harness.node.http_port}"
        self.http = http

    async def call(self, method: str, path: str, tok: str | None = None,
                   body: Any = None, headers: dict[str, str] | None = None,
                   data: bytes | None = None) -> tuple[int, Any, dict[str, str]]:
        h = dict(headers or {})
        if tok is not None:
            h["Authorization"] = f"Bearer {tok}"
        async with self.http.request(method, self.base + path, json=body, data=data,
                                     headers=h) as r:
            text = await r.text()
            got = None
            if text:
                assert r.content_type == "application/json", text
                got = await r.json()
            return r.status, got, dict(r.headers)


@pytest.fixture
async def api(harness: Harness) -> Any:
    async with aiohttp.ClientSession() as http:
        yield Api(harness, http)


async def test_the_openapi_document_lists_every_route(api: Api) -> None:
    status, doc, _ = await api.call("GET", "/api/openapi.json")
    assert status == 200
    assert doc["openapi"].startswith("3.")
    ops = {(m.upper(), p) for p, item in doc["paths"].items() for m in item}
    assert ("GET", "/api/stats") in ops and ("POST", "/api/users") in ops
    # 20, the invitations' 3 (test_invites_web.py) and the abuse reports' 2 (test_reports.py)
    assert len(ops) == 25
    for item in doc["paths"].values():
        for op in item.values():
            assert {"400", "401", "403"} <= set(op["responses"])


async def test_every_route_refuses_missing_wrong_revoked_expired_and_read_tokens(
        harness: Harness, api: Api) -> None:
    await harness.user("alice")
    read = token(harness, "--scope", "read")
    revoked = token(harness, "--name", "old")
    r = hongyan("token", "revoke", revoked.split("_")[1],
                config=harness.tmp_path / "hongyan.toml")
    assert r.returncode == 0, r.stderr
    expiring = token(harness, "--expires", "60s")
    _, doc, _ = await api.call("GET", "/api/openapi.json")
    await harness.clock.advance(61)
    wrong = read[:-4] + ("AAAA" if not read.endswith("AAAA") else "BBBB")
    for path, item in doc["paths"].items():
        for method, op in item.items():
            url = path.replace("{username}", "alice").replace("{id}", "0123456789ab")
            body = BODIES.get((method.upper(), path))
            for tok in (None, "nonsense", wrong, revoked, expiring):
                status, got, headers = await api.call(method.upper(), url, tok, body)
                assert status == 401, (method, path, tok, got)
                assert got["error"] == "unauthorized"
                assert headers["WWW-Authenticate"].startswith("Bearer")
            status, got, _ = await api.call(method.upper(), url, headers={
                "Authorization": "Basic YWRtaW46YWRtaW4="}, body=body)
            assert status == 401
            status, got, _ = await api.call(method.upper(), url, read, body)
            if op["security"] == [{"bearer": ["admin"]}]:
                assert status == 403, (method, path, got)
                assert got["error"] == "forbidden"
            else:
                assert method == "get" and status in (200, 404), (path, got)
    # nothing was done by any of them
    assert harness.node is not None
    assert await harness.node.accounts.exists("alice")
    assert not await harness.node.accounts.exists("zed")
    assert harness.node.shutdown_asked is None
    status, _, _ = await api.call("GET", "/api/motd", read)
    assert status == 404


async def test_accounts_through_the_api(harness: Harness, api: Api) -> None:
    tok = token(harness, "--scope", "admin")
    status, got, _ = await api.call("POST", "/api/users", tok,
                                    {"username": "Carol", "password": "first"})
    assert (status, got) == (201, {"username": "carol", "jid": "carol@localhost"})
    status, got, _ = await api.call("POST", "/api/users", tok,
                                    {"username": "carol", "password": "x"})
    assert (status, got["error"]) == (409, "conflict")
    assert await can_login(harness, "carol@localhost", "first")
    status, _, _ = await api.call("PUT", "/api/users/carol@localhost/password", tok,
                                  {"password": "second"})
    assert status == 204
    assert not await can_login(harness, "carol@localhost", "first")
    before = time.time()
    carol = await harness.client("carol@localhost/phone", "second")
    carol.update_roster("juliet@example.org", name="Juliet", groups=["Friends"])
    await asyncio.sleep(0.3)

    status, info, _ = await api.call("GET", "/api/users/carol", tok)
    assert status == 200
    assert info["jid"] == "carol@localhost" and info["disabled"] is False
    assert info["sessions"] == ["carol@localhost/phone"]
    assert before - 1 <= info["last_login"] <= time.time() + 1
    status, got, _ = await api.call("GET", "/api/users/carol/roster", tok)
    assert got == {"items": [{"jid": "juliet@example.org", "name": "Juliet",
                              "subscription": "none", "groups": ["Friends"]}]}
    status, got, _ = await api.call("GET", "/api/users/carol/last-login", tok)
    assert got["last_login"] == info["last_login"]
    status, got, _ = await api.call("GET", "/api/users/carol/sessions", tok)
    assert got == {"sessions": ["carol@localhost/phone"]}

    status, _, _ = await api.call("POST", "/api/users/carol/disable", tok)
    assert status == 204
    await asyncio.wait_for(carol.gone.wait(), 10)
    probe = Client("carol@localhost/again", "second")
    harness.clients.append(probe)
    assert not await probe.login(harness.port)
    assert "account-disabled" in str(probe.auth_failures[0])
    status, info, _ = await api.call("GET", "/api/users/carol", tok)
    assert info["disabled"] is True
    status, _, _ = await api.call("POST", "/api/users/carol/enable", tok)
    assert status == 204
    assert await can_login(harness, "carol@localhost", "second")

    status, _, _ = await api.call("DELETE", "/api/users/carol", tok)
    assert status == 204
    status, got, _ = await api.call("GET", "/api/users/carol", tok)
    assert (status, got["error"]) == (404, "not-found")
    status, got, _ = await api.call("DELETE", "/api/users/carol", tok)
    assert status == 404


async def test_lists_sessions_messages_stats_and_shutdown(harness: Harness, api: Api) -> None:
    tok = token(harness)
    read = token(harness, "--scope", "read")
    for i in range(5):
        await harness.user(f"u{i}")
    bob = await harness.logged_in("bob")
    dave = await harness.logged_in("dave", resource="laptop")
    status, got, _ = await api.call("GET", "/api/users?offset=2&limit=3", read)
    assert got == {"count": 7, "offset": 2, "users": ["u0@localhost", "u1@localhost",
                                                       "u2@localhost"]}
    status, got, _ = await api.call("GET", "/api/online", read)
    assert got == {"count": 2, "offset": 0, "users": ["bob@localhost", "dave@localhost"]}
    status, got, _ = await api.call("GET", "/api/sessions", read)
    assert got == {"count": 2, "sessions": ["bob@localhost/test", "dave@localhost/laptop"]}

    status, got, _ = await api.call("POST", "/api/announce", tok,
                                    {"subject": "News", "body": "Hello everyone"})
    assert (status, got) == (200, {"sent": 2})
    for c in (bob, dave):
        msg = await c.next_message()
        assert (msg["from"], msg["subject"], msg["body"]) == ("localhost", "News",
                                                             "Hello everyone")
    status, _, _ = await api.call("PUT", "/api/motd", tok, {"body": "Welcome"})
    assert status == 204
    assert (await api.call("GET", "/api/motd", read))[1] == {"subject": "", "body": "Welcome"}
    erin = await harness.logged_in("erin")
    assert (await erin.next_message())["body"] == "Welcome"
    status, _, _ = await api.call("DELETE", "/api/motd", tok)
    assert status == 204
    assert (await api.call("GET", "/api/motd", read))[0] == 404

    status, got, _ = await api.call("DELETE", "/api/users/bob/sessions", tok)
    assert (status, got) == (200, {"ended": 1})
    await asyncio.wait_for(bob.gone.wait(), 10)

    status, stats, _ = await api.call("GET", "/api/stats", read)
    assert status == 200
    assert stats["registered_users"] == 8 and stats["online_users"] == 2
    assert stats["sessions"] == 2 and stats["workers"] == 1
    assert stats["logins"] >= 3 and stats["messages_routed"] >= 0
    assert stats["uptime_seconds"] >= 0

    node = harness.node
    assert node is not None
    asked: list[bool] = []
    node.on_shutdown = asked.append
    status, got, _ = await api.call("POST", "/api/restart", tok,
                                    {"delay": 30, "announcement": "brb"})
    assert (status, got) == (202, {"restart": True, "delay": 30})
    assert (await dave.next_message())["body"] == "brb"
    await harness.clock.advance(31)
    assert asked == [True]


async def test_bad_input_gets_json_errors(harness: Harness, api: Api) -> None:
    tok = token(harness)
    await harness.user("alice")
    cases: list[tuple[str, str, dict[str, Any], int]] = [
        ("POST", "/api/users", {"data": b"{not json", "headers": {
            "Content-Type": "application/json"}}, 400),
        ("POST", "/api/users", {"data": b"username=x", "headers": {
            "Content-Type": "application/x-www-form-urlencoded"}}, 415),
        ("POST", "/api/users", {"data": b'{"username": "' + b"x" * 300000 + b'"}',
                                "headers": {"Content-Type": "application/json"}}, 413),
        ("POST", "/api/users", {"body": [1, 2]}, 400),
        ("POST", "/api/users", {"body": {"username": "x", "password": "p", "admin": True}},
         400),
        ("POST", "/api/users", {"body": {"username": 5, "password": "p"}}, 400),
        ("POST", "/api/users", {"body": {"username": "x"}}, 400),
        ("POST", "/api/users", {"body": {"username": "a b@c@d", "password": "p"}}, 400),
        ("POST", "/api/users", {"body": {"username": "x@elsewhere.org", "password": "p"}},
         400),
        ("POST", "/api/users", {"body": {"username": "x", "password": ""}}, 400),
        ("GET", "/api/users?limit=0", {}, 400),
        ("GET", "/api/users?limit=abc", {}, 400),
        ("GET", "/api/users?offset=-1", {}, 400),
        ("GET", "/api/users?bogus=1", {}, 400),
        ("GET", "/api/users/%20", {}, 400),
        ("GET", "/api/users/ghost", {}, 404),
        ("GET", "/api/nothing", {}, 404),
        ("PATCH", "/api/users", {}, 405),
        ("POST", "/api/announce", {"body": {"body": "a\x00b"}}, 400),
        ("POST", "/api/announce", {"body": {"body": "x" * 5000}}, 400),
        ("POST", "/api/shutdown", {"body": {"delay": -1}}, 400),
        ("POST", "/api/shutdown", {"body": {"delay": True}}, 400),
        ("PUT", "/api/motd", {"body": {"body": "   "}}, 400),
    ]
    for method, path, kw, want in cases:
        status, got, _ = await api.call(method, path, tok, **kw)
        assert status == want, (method, path, got)
        if want != 405:
            assert set(got) == {"error", "message"}, got
    assert await harness.node.accounts.list() == ["alice"]  # type: ignore[union-attr]
    assert harness.node.shutdown_asked is None  # type: ignore[union-attr]


async def test_plain_http_only_from_the_configured_addresses(harness: Harness) -> None:
    await harness.stop_node()
    await harness.start(extra="[adminapi]\nplain_http_from = []\n")
    tok = token(harness, "--scope", "read")
    node = harness.node
    assert node is not None
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{node.http_port}/api/stats",
                            headers={"Authorization": f"Bearer {tok}"}) as r:
            assert r.status == 403
            assert (await r.json())["error"] == "https-required"
        async with http.get(f"https://127.0.0.1:{node.https_port}/api/stats", ssl=False,
                            headers={"Authorization": f"Bearer {tok}"}) as r:
            assert r.status == 200


async def test_no_token_in_logs_or_storage(harness: Harness, api: Api,
                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    tok = token(harness, "--name", "ops")
    secret = tok.split("_", 2)[2]
    r = hongyan("token", "list", config=harness.tmp_path / "hongyan.toml")
    assert r.returncode == 0 and "ops" in r.stdout and secret not in r.stdout
    assert harness.node is not None
    rows = await harness.node.db.fetchall("SELECT * FROM api_tokens")
    assert rows and all(secret not in str(v) and tok not in str(v) for row in rows for v in row)
    for t in (tok, tok[:-1] + "x", "hy_" + "0" * 12 + "_" + secret):
        await api.call("GET", "/api/stats", t)
        await api.call("POST", "/api/users", t, {"username": "n", "password": "pw"})
        await api.call("GET", "/api/users?limit=0", t)
    # the audit lines name the token by its id
    token_id = tok.split("_")[1]
    assert f"token {token_id} (ops) from 127.0.0.1: POST /api/users -> 201" in caplog.text
    assert secret not in caplog.text
    assert not re.search(r"hy_[0-9a-f]{12}_", caplog.text)
