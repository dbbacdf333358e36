"""The web admin page (/admin/) with aiohttp's client against the real server's HTTP listener,
on SQLite and PostgreSQL: logging in as an administrator with the XMPP password (a wrong one
or a non-admin refused after the failure delay), the cookie's flags (Secure over the HTTPS
port), the strict headers, a hostile user's status, nick, vCard name and resource escaped,
every action refused without a session, without or with a wrong CSRF token and from another
origin, users created, disabled, enabled and deleted as slixmpp sees it, invitations made, the
messages-per-minute chart, idle expiry and logout, and no secret in any log line."""

from __future__ import annotations

import logging
import time
from html import escape

import pytest

from tests.integration.adminweb import (
    ADMIN,
    ADMIN_PW,
    HOSTILE,
    HOSTILE_RESOURCE,
    base,
    csrf_of,
    get,
    hostile_user,
    login,
    post,
    session,
    start,
    until_listed,
)
from tests.integration.conftest import Harness
from tests.integration.invites import CONFIG as INVITES
from tests.integration.test_adhoc import can_login

ACTIONS = ("users", "users/delete", "users/disable", "users/enable", "invites", "logout")


async def test_an_admin_logs_in_and_sees_users_escaped(harness: Harness,
                                                       caplog: pytest.LogCaptureFixture
                                                       ) -> None:
    caplog.set_level(logging.DEBUG)
    await start(harness)
    await hostile_user(harness)
    root = base(harness)
    async with session() as http:
        async with http.get(root + "/admin") as r:  # the bare prefix: to the page
            assert str(r.url).endswith("/admin/")
        status, page = await login(http, root)
        assert status == 200, page
        assert "Log out" in page and ADMIN in page
        cookies = {c.key: c for c in http.cookie_jar}
        sid = cookies["hy_admin"].value
        page = await until_listed(http, root, escape(HOSTILE))
        # every user-set text is there escaped, never as markup
        assert HOSTILE not in page and HOSTILE_RESOURCE not in page
        assert "<script>" not in page and "<img" not in page
        assert page.count(escape(HOSTILE)) == 3  # the status, the nick and the vCard FN
        assert escape(HOSTILE_RESOURCE) in page
        assert "mallory@localhost" in page and ">away<" in page
        assert "registered users" in page and "<svg class='chart'" in page
    assert all(sid not in r.getMessage() and ADMIN_PW not in r.getMessage()
               for r in caplog.records)


async def test_headers_and_cookie_flags_over_http_and_https(harness: Harness) -> None:
    await start(harness)
    for https in (False, True):
        root = base(harness, https)
        async with session() as http:
            async with http.get(root + "/admin/", ssl=False) as r:
                assert r.status == 200
                h = r.headers
                assert h["Cache-Control"] == "no-store"
                assert h["X-Frame-Options"] == "DENY"
                assert h["Referrer-Policy"] == "same-origin"
                assert h["Content-Security-Policy"].startswith("default-src 'self'")
                assert "frame-ancestors 'none'" in h["Content-Security-Policy"]
                form = await r.text()
            async with http.post(root + "/admin/login", ssl=False, allow_redirects=False,
                                 data={"csrf": csrf_of(form), "jid": ADMIN,
                                       "password": ADMIN_PW}, headers={"Origin": root}) as r:
                assert r.status == 303
                assert r.headers["Location"] == "/admin/"
                set_cookie = r.headers["Set-Cookie"]
            assert set_cookie.startswith("hy_admin=")
            assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie
            assert "Path=/admin" in set_cookie
            assert ("Secure" in set_cookie) is https
            # the local script and style, from the package
            for name, kind in (("admin.js", "text/javascript"), ("admin.css", "text/css")):
                async with http.get(f"{root}/admin/static/{name}", ssl=False) as r:
                    assert r.status == 200 and r.content_type == kind
            assert (await get(http, root + "/admin/static/../x"))[0] == 404


async def test_wrong_passwords_and_non_admins_are_refused_after_the_delay(harness: Harness
                                                                          ) -> None:
    await start(harness)
    await harness.user("eve", "eve-pw")
    root = base(harness)
    cases = [(ADMIN, "wrong"), ("eve@localhost", "eve-pw"), ("eve", "eve-pw"),
             ("nobody@localhost", "x"), ("admin@elsewhere.example", ADMIN_PW), ("", ""),
             ("@@", "x")]
    async with session() as http:
        for jid, password in cases:
            began = time.monotonic()
            status, page = await login(http, root, jid, password)
            assert status == 403, (jid, page)
            assert "Login refused" in page
            assert time.monotonic() - began >= 0.05  # the guard's failure delay
            assert "hy_admin" not in {c.key for c in http.cookie_jar}
            assert "Log out" not in (await get(http, root + "/admin/"))[1]
        # the login form's own CSRF value: missing, wrong, or from another site
        _s, form = await get(http, root + "/admin/")
        fields = {"jid": ADMIN, "password": ADMIN_PW}
        assert (await post(http, root + "/admin/login", fields, root))[0] == 403
        assert (await post(http, root + "/admin/login", {**fields, "csrf": "x"}, root))[0] \
            == 403
        assert (await post(http, root + "/admin/login", {**fields, "csrf": csrf_of(form)},
                           "https://evil.example"))[0] == 403
        # a disabled administrator cannot log in
        await harness.node.accounts.set_disabled("admin", True)  # type: ignore[union-attr]
        assert (await login(http, root))[0] == 403


async def test_every_action_needs_a_session_a_csrf_token_and_the_origin(harness: Harness
                                                                         ) -> None:
    await start(harness, INVITES)
    await harness.user("bob", "bob-pw")
    root = base(harness)
    fields = {"username": "bob", "password": "new-pw", "uses": "1"}
    async with session() as anonymous:
        for action in ACTIONS:
            status, page = await post(anonymous, f"{root}/admin/{action}", fields, root)
            assert status == 403 and "Log in first" in page, action
        # a forged session cookie is no session
        anonymous.cookie_jar.update_cookies({"hy_admin": "forged"})
        assert "Log out" not in (await get(anonymous, root + "/admin/"))[1]
        for action in ACTIONS:
            assert (await post(anonymous, f"{root}/admin/{action}", fields, root))[0] == 403
    async with session() as http:
        status, page = await login(http, root)
        assert status == 200
        good = csrf_of(page)
        for action in ACTIONS:
            url = f"{root}/admin/{action}"
            for sent, origin in ((fields, root), ({**fields, "csrf": "wrong"}, root),
                                 ({**fields, "csrf": good}, "https://evil.example"),
                                 ({**fields, "csrf": good}, None)):
                status, page = await post(http, url, sent, origin)
                assert status == 403, (action, sent, origin)
        # a cross-site Referer is refused too
        async with http.post(f"{root}/admin/users/delete", data={**fields, "csrf": good},
                             headers={"Referer": "https://evil.example/admin/"}) as r:
            assert r.status == 403
        # not a form
        async with http.post(f"{root}/admin/users/delete", json={**fields, "csrf": good},
                             headers={"Origin": root}) as r:
            assert r.status == 415
        # nothing happened
        assert await harness.node.accounts.exists("bob")  # type: ignore[union-attr]
        assert await can_login(harness, "bob@localhost", "bob-pw")
        assert "Log out" in (await get(http, root + "/admin/"))[1]


async def test_users_and_invitations_from_the_page(harness: Harness,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await start(harness, INVITES)
    root = base(harness)
    async with session() as http:
        _status, page = await login(http, root)
        csrf = csrf_of(page)

        async def act(action: str, **fields: str) -> tuple[int, str]:
            return await post(http, f"{root}/admin/{action}", {"csrf": csrf, **fields}, root)

        status, page = await act("users", username="Carol", password="carol-pw")
        assert status == 200 and "Created carol@localhost." in page
        assert "<tr data-user='carol@localhost'>" in page
        assert await can_login(harness, "carol@localhost", "carol-pw")
        status, page = await act("users", username="carol", password="other")
        assert status == 409
        status, page = await act("users", username="bad user", password="x")
        assert status == 400
        status, page = await act("users/disable", username="carol@localhost")
        assert status == 200 and "Disabled carol@localhost." in page
        assert not await can_login(harness, "carol@localhost", "carol-pw")
        status, page = await act("users/enable", username="carol@localhost")
        assert status == 200
        assert await can_login(harness, "carol@localhost", "carol-pw")
        status, page = await act("invites", username="dave", uses="2")
        assert status == 200 and "Invitation created." in page
        link = page.split("id='invite-link'>")[1].split("<")[0]
        assert link.startswith("https://localhost:") and "/invite/" in link
        token = link.rsplit("/", 1)[1]
        async with http.get(f"{root}/invite/{token}") as r:
            assert r.status == 200 and "dave" in await r.text()
        assert (await act("invites", uses="0"))[0] == 400
        status, page = await act("users/delete", username="carol@localhost")
        assert status == 200
        assert not await harness.node.accounts.exists("carol")  # type: ignore[union-attr]
        assert (await act("users/delete", username="carol@localhost"))[0] == 404
        assert (await act("nothing"))[0] == 404
    assert all(token not in r.getMessage() and csrf not in r.getMessage()
               for r in caplog.records)


async def test_the_chart_counts_messages_per_minute(harness: Harness) -> None:
    await start(harness)
    romeo = await harness.logged_in("romeo")
    await harness.logged_in("juliet")
    root = base(harness)
    async with session() as http:
        await login(http, root)
        await get(http, root + "/admin/")  # this minute's reading
        for i in range(3):
            romeo.send_message(mto="juliet@localhost", mbody=f"hi {i}", mtype="chat")
        page = ""
        for _ in range(100):
            await harness.clock.advance(61)
            _s, page = await get(http, root + "/admin/")
            if ": 3</title>" in page or ": 4</title>" in page:
                break
        assert "UTC: 3</title>" in page, page


async def test_idle_sessions_expire_and_logout_ends_the_session(harness: Harness) -> None:
    await start(harness)
    root = base(harness)
    async with session() as http:
        _status, page = await login(http, root)
        await harness.clock.advance(1700)
        assert "Log out" in (await get(http, root + "/admin/"))[1]  # in use: still on
        await harness.clock.advance(1801)
        assert "Log out" not in (await get(http, root + "/admin/"))[1]
        status, page = await login(http, root)
        sid = {c.key: c for c in http.cookie_jar}["hy_admin"].value
        status, _page = await post(http, root + "/admin/logout", {"csrf": csrf_of(page)}, root)
        assert status == 200  # the login page again
        assert "hy_admin" not in {c.key for c in http.cookie_jar if c.value}
    # the old id, replayed, is no session
    async with session() as replay:
        replay.cookie_jar.update_cookies({"hy_admin": sid})
        assert "Log out" not in (await get(replay, root + "/admin/"))[1]
    # an administrator no more: the session ends
    async with session() as http:
        await login(http, root)
        await harness.node.accounts.set_disabled("admin", True)  # type: ignore[union-attr]
        assert "Log out" not in (await get(http, root + "/admin/"))[1]
