"""The web admin page at ``/admin/``, on the HTTP listener: an administrator (``server.admins``)
logs in with the account's XMPP password and sees the online users and their sessions (status,
nick, vCard name), the server's counters and a chart of messages per minute, and creates,
deletes, disables and enables users and makes invitations. It uses the same operations as the
ad-hoc commands and the REST API (:class:`~hongyan.modules.admin.ops.AdminOps`).

Login: a wrong password or a non-admin is the same refusal, after the guard's failure delay
(doubling per failure from the address, like SASL). A login makes a server-side session (in the
key-value store, so that every worker knows it) named by a random id in the cookie
``hy_admin`` (``HttpOnly; SameSite=Strict; Path=/admin``, ``Secure`` over HTTPS); only the
id's SHA-256 is stored. It ends after ``idle_timeout`` seconds without a request, at logout,
or when the account is no longer an admin or is disabled.

Every POST is checked for the page's own origin (``Origin``, else ``Referer``) and carries the
session's CSRF token (before login: a token in a cookie of its own, matched like the
invitation page's). Everything a user can set is HTML-escaped. The pages are server-rendered
with one local CSS and one local JS file from the package: CSP ``default-src 'self'``, never
framed, never cached. Session ids, CSRF values and invitation tokens are never logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time
from collections import deque
from dataclasses import dataclass
from html import escape
from importlib import resources
from itertools import pairwise
from typing import Any

from aiohttp import web

from hongyan.modules.admin import Admin
from hongyan.modules.admin.ops import AdminError
from hongyan.modules.adminweb.options import AdminWebOptions
from hongyan.server.module import Module, Timer
from hongyan.server.webform import cookie, same_origin, token_matches
from hongyan.xmpp import ns as NS

#: XEP-0172 User Nickname (a nick in presence)
NS_NICK = "http://jabber.org/protocol/nick"
PREFIX = "/admin"
COOKIE = "hy_admin"
LOGIN_COOKIE = "hy_admin_login"
NS_SESSION = "urn:hongyan:adminweb:session"
MAX_FIELD = 1024
#: the most online users (and their sessions) one page lists
MAX_LISTED = 200
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
}
STATIC = {"admin.css": "text/css", "admin.js": "text/javascript"}
#: the counters shown, in order, with their labels
SHOWN = (("registered_users", "registered users"), ("online_users", "online users"),
         ("sessions", "sessions"), ("messages_routed", "messages routed"),
         ("logins", "logins"), ("login_failures", "failed logins"),
         ("stanzas_in", "stanzas in"), ("stanzas_out", "stanzas out"),
         ("workers", "workers"), ("uptime_seconds", "uptime (s)"))


@dataclass(slots=True)
class WebSession:
    key: str  # the SHA-256 of the cookie's id (what is stored)
    admin: str  # the bare JID
    csrf: str
    seen: float


class Refused(Exception):
    """A request refused: its status and what the page says."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


def _key(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


def page(title: str, body: str, status: int = 200, headers: dict[str, str] | None = None
         ) -> web.Response:
    text = (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{escape(title)}</title>"
            f"<link rel='stylesheet' href='{PREFIX}/static/admin.css'>"
            f"<script src='{PREFIX}/static/admin.js' defer></script></head>"
            f"<body>{body}</body></html>\n")
    return web.Response(status=status, text=text, content_type="text/html",
                        headers={**HEADERS, **(headers or {})})


def chart(bars: list[tuple[int, int]]) -> str:
    """An inline SVG bar chart of ``(minute since the epoch, messages)``, oldest first."""
    width, height, pad = 600, 160, 24
    top = max([n for _m, n in bars] + [1])
    step = (width - 2 * pad) / max(len(bars), 1)
    parts = [f"<svg class='chart' viewBox='0 0 {width} {height}' role='img' "
             f"aria-label='messages per minute' xmlns='http://www.w3.org/2000/svg'>",
             f"<text x='2' y='12'>{top}</text><text x='2' y='{height - pad + 4}'>0</text>"]
    for i, (minute, n) in enumerate(bars):
        h = (height - 2 * pad) * n / top
        x = pad + i * step
        stamp = time.strftime("%H:%M", time.gmtime(minute * 60))
        parts.append(f"<rect x='{x:.1f}' y='{height - pad - h:.1f}' width='{max(step - 2, 1):.1f}'"
                     f" height='{h:.1f}'><title>{stamp} UTC: {n}</title></rect>")
    if bars:
        for i in (0, len(bars) - 1):
            stamp = time.strftime("%H:%M", time.gmtime(bars[i][0] * 60))
            parts.append(f"<text x='{pad + i * step:.1f}' y='{height - 6}'>{stamp}</text>")
    parts.append("</svg>")
    return "".join(parts)


class AdminWeb(Module):
    name = "adminweb"
    depends = ("admin",)
    uses = ("invites", "vcard")

    async def start(self) -> None:
        self.opts = self.api.options(AdminWebOptions)
        self.ops = self.api.module(Admin).ops
        self.started = time.monotonic()
        #: (minute since the epoch, messages routed so far): the last reading of each minute
        self.samples: deque[tuple[int, int]] = deque(maxlen=self.opts.chart_minutes + 1)
        self._timer: Timer | None = None
        self._static = {name: (resources.files(__package__) / "static" / name).read_bytes()
                        for name in STATIC}
        self.api.on_ask("adminweb-sessions", self._sessions)
        self.api.http_route("GET", PREFIX, self.redirect)
        self.api.http_route("GET", PREFIX + "/*", self.get)
        self.api.http_route("POST", PREFIX + "/*", self.post)
        self.api.spawn(self._sample())

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    # -- the chart's readings -------------------------------------------------------------------
    async def _sample(self) -> None:
        try:
            await self.sample()
        finally:
            self._timer = self.api.call_later(60.0, self._next)

    def _next(self) -> None:
        self.api.spawn(self._sample())

    async def sample(self) -> None:
        stats = await self.ops.stats()
        total = int(stats.get("messages_routed", 0))  # type: ignore[call-overload]
        minute = int(self.api.now() // 60)
        if self.samples and self.samples[-1][0] == minute:
            self.samples[-1] = (minute, total)
        else:
            self.samples.append((minute, total))

    def bars(self) -> list[tuple[int, int]]:
        s = list(self.samples)
        return [(m, max(t - prev, 0)) for (_pm, prev), (m, t) in pairwise(s)]

    # -- each worker's sessions -----------------------------------------------------------------
    def _sessions(self, _body: bytes) -> bytes:
        out = []
        for s in self.api.sessions.all():
            if s.jid is None:
                continue
            p = s.presence
            out.append({"jid": str(s.jid),
                        "show": (p.find_text("show", NS.CLIENT) or "online") if p else "",
                        "status": (p.find_text("status", NS.CLIENT) or "") if p else "",
                        "nick": (p.find_text("nick", NS_NICK) or "") if p else ""})
        return json.dumps(out).encode()

    async def online(self) -> dict[str, list[dict[str, str]]]:
        """The bare JIDs online (at most :data:`MAX_LISTED`) and their sessions."""
        answers = await self.api.ask("adminweb-sessions")
        users: dict[str, list[dict[str, str]]] = {}
        for body in answers.values():
            for s in json.loads(body):
                users.setdefault(s["jid"].partition("/")[0], []).append(s)
        return {u: sorted(users[u], key=lambda s: s["jid"]) for u in sorted(users)[:MAX_LISTED]}

    async def full_name(self, bare: str) -> str:
        vcard: Any = self.api.optional("vcard")
        if vcard is None:
            return ""
        card = await vcard.load(bare.partition("@")[0])
        return str(card.find_text("FN", NS.VCARD) or "")

    # -- sessions -------------------------------------------------------------------------------
    async def session(self, request: web.BaseRequest) -> WebSession | None:
        sid = request.cookies.get(COOKIE, "")
        if not sid or len(sid) > 100:
            return None
        key = _key(sid)
        stored = await self.api.kv.get("", NS_SESSION, key)
        if stored is None:
            return None
        data = json.loads(stored)
        now = self.api.now()
        user = data["admin"].partition("@")[0]
        if now - data["seen"] > self.opts.idle_timeout or data["admin"] not in self.api.admins \
                or await self.api.accounts.is_disabled(user) \
                or not await self.api.accounts.exists(user):
            await self.api.kv.delete("", NS_SESSION, key)
            return None
        ws = WebSession(key, data["admin"], data["csrf"], now)
        await self._store(ws)
        return ws

    async def _store(self, ws: WebSession) -> None:
        await self.api.kv.set("", NS_SESSION, ws.key, json.dumps(
            {"admin": ws.admin, "csrf": ws.csrf, "seen": ws.seen}))

    # -- GET ------------------------------------------------------------------------------------
    async def redirect(self, _request: web.BaseRequest) -> web.StreamResponse:
        return web.Response(status=308, headers={**HEADERS, "Location": PREFIX + "/"})

    async def get(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.rel_url.path
        if path.startswith(PREFIX + "/static/"):
            name = path.rsplit("/", 1)[1]
            if name not in STATIC:
                return page("Not found", "<h1>Not found</h1>", 404)
            return web.Response(body=self._static[name], content_type=STATIC[name],
                                headers={**HEADERS, "Cache-Control": "no-cache"})
        if path != PREFIX + "/":
            return page("Not found", "<h1>Not found</h1>", 404)
        ws = await self.session(request)
        if ws is None:
            return self.login_page(request)
        return await self.dashboard(ws)

    def login_page(self, request: web.BaseRequest, error: str = "", status: int = 200
                   ) -> web.Response:
        csrf = secrets.token_urlsafe(32)
        problem = f"<p class='error' role='alert'>{escape(error)}</p>" if error else ""
        body = f"""<main class='login'><h1>{escape(self.api.domain)}: administration</h1>
{problem}<form method='post' action='{PREFIX}/login'>
<input type='hidden' name='csrf' value='{csrf}'>
<label for='jid'>Administrator's address</label>
<input id='jid' name='jid' required maxlength='{MAX_FIELD}' autocomplete='username'
 placeholder='admin@{escape(self.api.domain)}'>
<label for='password'>XMPP password</label>
<input id='password' name='password' type='password' required maxlength='{MAX_FIELD}'
 autocomplete='current-password'>
<p><button type='submit'>Log in</button></p></form></main>"""
        return page("Log in", body, status,
                    {"Set-Cookie": cookie(request, LOGIN_COOKIE, csrf, PREFIX)})

    async def dashboard(self, ws: WebSession, notice: str = "", error: str = "",
                        status: int = 200, extra: str = "") -> web.Response:
        await self.sample()
        stats = await self.ops.stats()
        stats["uptime_seconds"] = int(time.monotonic() - self.started)
        online = await self.online()
        _count, registered = await self.ops.registered(0, MAX_LISTED)
        c = escape(ws.csrf)

        def form(action: str, fields: str, label: str, cls: str = "inline") -> str:
            return (f"<form class='{cls}' method='post' action='{PREFIX}/{action}'>"
                    f"<input type='hidden' name='csrf' value='{c}'>{fields}"
                    f"<button type='submit'>{escape(label)}</button></form>")

        def user_field(jid: str) -> str:
            return f"<input type='hidden' name='username' value='{escape(jid)}'>"

        rows = []
        for bare, sessions in online.items():
            fn = escape(await self.full_name(bare))
            for s in sessions:
                resource = s["jid"].partition("/")[2]
                rows.append(f"<tr><td>{escape(bare)}</td><td>{fn}</td>"
                            f"<td>{escape(resource)}</td><td>{escape(s['show'])}</td>"
                            f"<td>{escape(s['status'])}</td><td>{escape(s['nick'])}</td></tr>")
        online_table = ("<table id='online'><thead><tr><th>User</th><th>Name (vCard)</th>"
                        "<th>Resource</th><th>Show</th><th>Status</th><th>Nick</th></tr>"
                        f"</thead><tbody>{''.join(rows)}</tbody></table>" if rows
                        else "<p id='online'>Nobody is online.</p>")
        users = []
        for jid in registered:
            info = await self.ops.user_info(jid)
            disabled = bool(info["disabled"])
            toggle = form("users/enable" if disabled else "users/disable", user_field(jid),
                          "Enable" if disabled else "Disable")
            users.append(f"<tr data-user='{escape(jid)}'><td>{escape(jid)}</td>"
                         f"<td class='state'>{'disabled' if disabled else 'active'}</td>"
                         f"<td>{toggle}{form('users/delete', user_field(jid), 'Delete')}</td>"
                         "</tr>")
        stat_boxes = "".join(f"<div><b>{escape(str(stats.get(k, 0)))}</b>{escape(label)}</div>"
                             for k, label in SHOWN)
        invites = "" if self.api.optional("invites") is None else f"""
<h2>Invite</h2>{form('invites', "<label>Username (optional) <input name='username' "
                     f"maxlength='{MAX_FIELD}'></label><label>Uses <input name='uses' "
                     "type='number' min='1' max='1000' value='1'></label>", 'Create invitation',
                     'invite')}{extra}"""
        note = (f"<p class='notice' role='status'>{escape(notice)}</p>" if notice else "") + \
               (f"<p class='error' role='alert'>{escape(error)}</p>" if error else "")
        body = f"""<header><h1>{escape(self.api.domain)}: administration</h1>
<div>{escape(ws.admin)} {form('logout', '', 'Log out')}</div></header>
<main data-refresh='60'>{note}
<h2>Server</h2><div class='stats' id='stats'>{stat_boxes}</div>
<h2>Messages per minute</h2>{chart(self.bars())}
<h2>Online users and sessions</h2>{online_table}
<h2>Users</h2>{form('users', "<label>Username <input name='username' required "
                   f"maxlength='{MAX_FIELD}'></label><label>Password <input name='password' "
                   f"type='password' required maxlength='{MAX_FIELD}' "
                   "autocomplete='new-password'></label>", 'Create user', 'create')}
<table id='users'><thead><tr><th>User</th><th>State</th><th></th></tr></thead>
<tbody>{''.join(users)}</tbody></table>{invites}</main>"""
        return page(f"{self.api.domain}: administration", body, status)

    # -- POST -----------------------------------------------------------------------------------
    async def _form(self, request: web.BaseRequest) -> dict[str, str]:
        if not same_origin(request):
            raise Refused(403, "The form was sent from another site.")
        if request.content_type != "application/x-www-form-urlencoded":
            raise Refused(415, "Not a form.")
        if request.content_length is not None and request.content_length > 16 * MAX_FIELD:
            raise Refused(413, "The form is too large.")
        try:
            form = await request.post()
        except (ValueError, web.HTTPException):
            raise Refused(400, "The form could not be read.") from None
        out = {k: v for k, v in form.items() if isinstance(v, str)}
        if any(len(v) > MAX_FIELD for v in out.values()):
            raise Refused(400, "A field is too long.")
        return out

    async def post(self, request: web.BaseRequest) -> web.StreamResponse:
        action = request.rel_url.path[len(PREFIX) + 1:]
        try:
            form = await self._form(request)
            if action == "login":
                return await self.login(request, form)
            ws = await self.session(request)
            if ws is None:
                raise Refused(403, "Log in first.")
            if not token_matches(ws.csrf, form.get("csrf", "")):
                raise Refused(403, "The form expired: reload the page.")
            return await self.act(request, ws, action, form)
        except Refused as exc:
            return page("Refused", f"<main><h1>Refused</h1><p class='error'>{escape(exc.text)}"
                        f"</p><p><a href='{PREFIX}/'>Back</a></p></main>", exc.status)

    async def login(self, request: web.BaseRequest, form: dict[str, str]) -> web.Response:
        if not token_matches(request.cookies.get(LOGIN_COOKIE, ""), form.get("csrf", "")):
            raise Refused(403, "The form expired: reload the page.")
        host = request.remote or ""
        guard = self.api.guard
        user = ""
        ok = False
        try:
            user = self.ops.username(form.get("jid", ""))
            ok = self.ops.jid(user) in self.api.admins \
                and await guard.check_plain(user, form.get("password", "")) \
                and not await self.api.accounts.is_disabled(user)
        except AdminError:
            ok = False
        if not ok:
            delay = guard.failed(host)
            self.log.info("admin page: a login refused from %s", host)
            if delay > 0:
                await asyncio.sleep(delay)
            return self.login_page(request, "Login refused: a wrong address or password, or "
                                   "not an administrator.", 403)
        guard.succeeded(host)
        sid = secrets.token_urlsafe(32)
        ws = WebSession(_key(sid), self.ops.jid(user), secrets.token_urlsafe(32),
                        self.api.now())
        await self._store(ws)
        self.log.info("admin page: %s logged in from %s", ws.admin, host)
        return web.Response(status=303, headers={
            **HEADERS, "Location": PREFIX + "/",
            "Set-Cookie": cookie(request, COOKIE, sid, PREFIX)})

    async def act(self, request: web.BaseRequest, ws: WebSession, action: str,
                  form: dict[str, str]) -> web.Response:
        name = form.get("username", "")
        try:
            if action == "logout":
                await self.api.kv.delete("", NS_SESSION, ws.key)
                return web.Response(status=303, headers={
                    **HEADERS, "Location": PREFIX + "/",
                    "Set-Cookie": cookie(request, COOKIE, "", PREFIX, 0)})
            if action == "users":
                user = await self.ops.add_user(name, form.get("password", ""))
                notice = f"Created {self.ops.jid(user)}."
            elif action == "users/delete":
                await self.ops.delete_user(name)
                notice = f"Deleted {name}."
            elif action in ("users/disable", "users/enable"):
                await self.ops.set_disabled(name, action == "users/disable")
                notice = f"{'Disabled' if action == 'users/disable' else 'Enabled'} {name}."
            elif action == "invites":
                return await self.invite(ws, form)
            else:
                raise Refused(404, "No such action.")
        except AdminError as exc:
            return await self.dashboard(ws, error=exc.text,
                                        status={"not-found": 404, "conflict": 409}.get(
                                            exc.kind, 400))
        self.log.info("admin page: %s: %s", ws.admin, notice)
        return await self.dashboard(ws, notice=notice)

    async def invite(self, ws: WebSession, form: dict[str, str]) -> web.Response:
        service: Any = getattr(self.api.optional("invites"), "service", None)
        if service is None:
            raise Refused(404, "Invitations are off.")
        uses_text = form.get("uses", "").strip() or "1"
        if not uses_text.isdigit() or not 1 <= int(uses_text) <= 1000:
            return await self.dashboard(ws, error="Uses is a number from 1 to 1000.",
                                        status=400)
        try:
            made = await service.create(username=form.get("username", "").strip(),
                                        uses=int(uses_text))
        except ValueError as exc:
            return await self.dashboard(ws, error=str(exc), status=400)
        self.log.info("admin page: %s made invitation %s", ws.admin, made.invite.id)
        expires = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(made.invite.expires_at))
        extra = (f"<div id='invite-made'><p>Invitation link (shown once, valid until "
                 f"{escape(expires)}):</p><p><code class='link' id='invite-link'>"
                 f"{escape(made.landing_url)}</code> <button type='button' "
                 f"data-copy='invite-link'>Copy</button></p><p>XMPP URI: <code class='link'>"
                 f"{escape(made.uri)}</code></p></div>")
        return await self.dashboard(ws, notice="Invitation created.", extra=extra)


MODULE = AdminWeb
