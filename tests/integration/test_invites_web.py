"""The invitation's web page (/invite/<token>) and the admin API's invitation routes, with
aiohttp's client against the real server's HTTP listener, on SQLite and PostgreSQL: the page's
one-tap xmpp: link and form, the account it makes (the inviter's slixmpp client sees the roster
push, the newcomer logs in), cross-site and forged posts refused, everything a user typed
escaped, unknown tokens a bare 404, and no token in any log line."""

from __future__ import annotations

import logging
import re
from typing import Any

import aiohttp

from hongyan.modules.invites.service import InviteService
from tests.integration.conftest import Harness
from tests.integration.invites import CONFIG, token_of
from tests.integration.test_adhoc import can_login
from tests.integration.test_adminapi import token as api_token
from tests.integration.test_im import roster_push, track_pushes


async def start(harness: Harness) -> InviteService:
    await harness.stop_node()
    await harness.start(extra=CONFIG)
    assert harness.node is not None
    return harness.node.modules["invites"].service  # type: ignore[attr-defined,no-any-return]


def base(harness: Harness) -> str:
    assert harness.node is not None
    return f"http://127.0.0.1:{harness.node.http_port}"


def session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


def csrf_of(page: str) -> str:
    m = re.search(r"name='csrf' value='([^']+)'", page)
    assert m is not None, page
    return m.group(1)


async def post(http: aiohttp.ClientSession, url: str, fields: dict[str, str],
               origin: str | None) -> tuple[int, str]:
    headers = {"Origin": origin} if origin is not None else {}
    async with http.post(url, data=fields, headers=headers) as r:
        return r.status, await r.text()


async def test_the_page_links_the_apps_and_makes_the_account(harness: Harness,
                                                             caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    invites = await start(harness)
    romeo = track_pushes(await harness.logged_in("romeo"))
    made = await invites.create(inviter="romeo")
    assert made.landing_url.endswith("/invite/" + made.token)
    url = f"{base(harness)}/invite/{made.token}"
    async with session() as http:
        async with http.get(url) as r:
            assert r.status == 200
            page = await r.text()
            assert r.headers["Cache-Control"] == "no-store"
            assert r.headers["Referrer-Policy"] == "same-origin"
            assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
            assert "HttpOnly" in r.headers["Set-Cookie"]
            assert "SameSite=Strict" in r.headers["Set-Cookie"]
        assert f"href='xmpp:localhost?register;preauth={made.token}'" in page
        assert "romeo@localhost</strong> invites you" in page
        assert "Conversations" in page and "Monal" in page
        status, text = await post(http, url, {"csrf": csrf_of(page), "username": "Juliet",
                                              "password": "balcony-pw",
                                              "password2": "balcony-pw"}, base(harness))
        assert status == 201, text
        assert "Welcome, juliet@localhost!" in text
        push = await roster_push(romeo)
        assert push == {"jid": "juliet@localhost", "subscription": "both"}
        assert await can_login(harness, "juliet@localhost", "balcony-pw")
        # a single use: the page is gone
        async with http.get(url) as r:
            assert r.status == 404
    juliet = await harness.client("juliet@localhost/web", "balcony-pw")
    assert juliet.client_roster["romeo@localhost"]["subscription"] == "both"
    lines = [r.getMessage() for r in caplog.records]
    assert any(f"registered juliet@localhost with invitation {made.invite.id}" in m
               for m in lines)  # the log is captured, and names the invitation by its id
    assert not any(made.token in m for m in lines)


async def test_forged_and_cross_site_posts_are_refused(harness: Harness) -> None:
    invites = await start(harness)
    made = await invites.create()
    url = f"{base(harness)}/invite/{made.token}"
    fields = {"username": "juliet", "password": "balcony-pw", "password2": "balcony-pw"}
    async with session() as http:
        async with http.get(url) as r:
            csrf = csrf_of(await r.text())
        good = {**fields, "csrf": csrf}
        assert (await post(http, url, good, "http://evil.example"))[0] == 403
        assert (await post(http, url, good, None))[0] == 403  # no Origin, no Referer
        assert (await post(http, url, {**fields, "csrf": "x" + csrf}, base(harness)))[0] == 403
        assert (await post(http, url, fields, base(harness)))[0] == 403
    async with aiohttp.ClientSession() as fresh:  # the value without its cookie
        assert (await post(fresh, url, good, base(harness)))[0] == 403
    assert harness.node is not None
    assert not await harness.node.accounts.exists("juliet")
    async with session() as http, http.get(url) as r:
        assert r.status == 200  # not used up


async def test_what_a_user_typed_is_escaped_and_checked(harness: Harness) -> None:
    invites = await start(harness)
    await harness.user("romeo")
    made = await invites.create()
    url = f"{base(harness)}/invite/{made.token}"
    async with session() as http:
        async def attempt(username: str, pw: str, pw2: str | None = None) -> tuple[int, str]:
            async with http.get(url) as r:
                csrf = csrf_of(await r.text())
            return await post(http, url, {"csrf": csrf, "username": username, "password": pw,
                                          "password2": pw if pw2 is None else pw2},
                              base(harness))

        status, text = await attempt("<script>alert('x')</script>", "balcony-pw")
        assert status == 400
        assert "<script>" not in text and "&lt;script&gt;" in text
        status, text = await attempt("juliet'><b>", "balcony-pw", "other-pw")
        assert status == 400 and "The passwords differ." in text
        assert "juliet&#x27;&gt;&lt;b&gt;" in text and "'><b>" not in text
        assert (await attempt("romeo", "balcony-pw"))[0] == 409
        assert (await attempt("juliet", "pw"))[0] == 400
        assert (await attempt("juliet", "balcony-pw"))[0] == 201


async def test_unknown_tokens_are_a_bare_404(harness: Harness) -> None:
    invites = await start(harness)
    made = await invites.create()
    assert await invites.store.revoke(made.invite.id)
    async with session() as http:
        for path in (f"/invite/{made.token}", "/invite/nonsense", "/invite/" + "A" * 24,
                     "/invite/", f"/invite/{made.token}/more"):
            async with http.get(base(harness) + path) as r:
                text = await r.text()
                assert r.status == 404, path
                assert made.token not in text and "AAAA" not in text and "nonsense" not in text


async def test_the_admin_api_makes_lists_and_revokes_invitations(harness: Harness,
                                                                 caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    await start(harness)
    romeo = track_pushes(await harness.logged_in("romeo"))
    admin = api_token(harness, "--scope", "admin")
    read = api_token(harness, "--scope", "read")
    api = base(harness) + "/api"
    async with aiohttp.ClientSession() as http:
        async with http.get(api + "/openapi.json") as r:
            paths = (await r.json())["paths"]
        assert set(paths["/api/invites"]) == {"get", "post"}
        assert set(paths["/api/invites/{id}"]) == {"delete"}
        for tok, code in ((None, 401), ("wrong", 401), (read, 403)):
            headers = {"Authorization": f"Bearer {tok}"} if tok else {}
            async with http.post(api + "/invites", json={}, headers=headers) as r:
                assert r.status == code
        auth = {"Authorization": f"Bearer {admin}"}
        async with http.post(api + "/invites", json={"inviter": "romeo", "uses": 2,
                                                     "ttl": 3600}, headers=auth) as r:
            assert r.status == 201
            made = await r.json()
        assert made["uri"] == f"xmpp:localhost?register;preauth={made['token']}"
        assert token_of(made["landing_url"].replace("/invite/", "preauth=")) == made["token"]
        async with http.post(api + "/invites", json={"inviter": "nobody"},
                             headers=auth) as r:
            assert r.status == 400
        async with http.post(api + "/invites", json={"uses": 0}, headers=auth) as r:
            assert r.status == 400
        async with http.get(api + "/invites", headers={"Authorization": f"Bearer {read}"}
                            ) as r:
            listed = (await r.json())["invites"]
            assert made["token"] not in await r.text()
        assert [(i["id"], i["inviter"], i["uses"], i["used"], i["state"]) for i in listed] \
            == [(made["id"], "romeo", 2, 0, "active")]
        # the page works, then not once revoked
        assert made["landing_url"].endswith("/invite/" + made["token"])
        async with http.get(f"{base(harness)}/invite/{made['token']}") as r:
            assert r.status == 200
        async with http.delete(api + f"/invites/{made['id']}", headers=auth) as r:
            assert r.status == 204
        async with http.delete(api + "/invites/0123456789ab", headers=auth) as r:
            assert r.status == 404
        async with http.get(f"{base(harness)}/invite/{made['token']}") as r:
            assert r.status == 404
        async with http.get(api + "/invites", headers=auth) as r:
            assert (await r.json())["invites"][0]["state"] == "revoked"
    assert romeo.boundjid.bare == "romeo@localhost"
    lines = [r.getMessage() for r in caplog.records]
    assert any("POST /api/invites -> 201" in m for m in lines)
    assert not any(made["token"] in m or admin in m for m in lines)
