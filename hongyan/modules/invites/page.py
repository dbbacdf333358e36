"""The invitation's web page, ``/invite/<token>`` (XEP-0379 §3.3, XEP-0401 §3.2): who invites,
a one-tap ``xmpp:`` link that Conversations, Monal and the other clients open, the clients to
install first, and a form that makes the account (with the inviter as a contact both ways).

The form is protected against cross-site requests twice: a random per-page value, in a
``SameSite=Strict`` cookie and in the form, must match, and the ``Origin`` (or ``Referer``)
must be the page's own. Everything a user can set is HTML-escaped. An unknown, expired,
used-up or revoked token is the same bare 404. The page says ``Referrer-Policy: same-origin``
so that the token does not follow a click to a client's site, and is never cached."""

from __future__ import annotations

import secrets
from html import escape
from typing import TYPE_CHECKING

from aiohttp import web

from hongyan.modules.invites.store import Invite, plausible
from hongyan.server.webform import cookie as make_cookie
from hongyan.server.webform import same_origin, token_matches
from hongyan.xmpp.errors import StanzaError

if TYPE_CHECKING:
    from hongyan.modules.invites.service import InviteService

COOKIE = "hy_invite_csrf"
MAX_FIELD = 1024
HEADERS = {
    "Cache-Control": "no-store",
    # no-referrer would also make the browser send "Origin: null" with the form
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}
CLIENTS = (("Conversations", "Android", "https://conversations.im/"),
           ("Monal", "iOS and macOS", "https://monal-im.org/"),
           ("Gajim", "Windows and Linux", "https://gajim.org/"),
           ("Dino", "Linux", "https://dino.im/"))
STYLE = ("body{font-family:sans-serif;max-width:36em;margin:2em auto;padding:0 1em;"
         "line-height:1.5}a.button{display:inline-block;padding:.7em 1.2em;background:#2a6;"
         "color:#fff;border-radius:.4em;text-decoration:none;font-weight:bold}"
         "label{display:block;margin-top:.8em}input{font-size:1em;padding:.3em;width:100%;"
         "box-sizing:border-box}button{margin-top:1em;font-size:1em;padding:.5em 1em}"
         ".error{color:#b00;font-weight:bold}")


def _html(title: str, body: str, status: int = 200,
          headers: dict[str, str] | None = None) -> web.Response:
    text = (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{escape(title)}</title><style>{STYLE}</style></head>"
            f"<body>{body}</body></html>\n")
    return web.Response(status=status, text=text, content_type="text/html",
                        headers={**HEADERS, **(headers or {})})


def not_found() -> web.Response:
    return _html("Invitation not found", "<h1>Invitation not found</h1><p>This invitation "
                 "does not exist or is no longer valid. Ask the person who sent it for a new "
                 "one.</p>", 404)


class Page:
    def __init__(self, invites: InviteService) -> None:
        self.invites = invites

    async def _invite(self, request: web.BaseRequest) -> tuple[str, Invite] | None:
        parts = request.rel_url.raw_path.split("/")
        if len(parts) != 3 or not plausible(parts[2]):
            return None
        invite = await self.invites.usable(parts[2])
        return None if invite is None else (parts[2], invite)

    async def show(self, request: web.BaseRequest) -> web.StreamResponse:
        found = await self._invite(request)
        if found is None:
            return not_found()
        token, invite = found
        return self._page(request, token, invite)

    def _page(self, request: web.BaseRequest, token: str, invite: Invite, error: str = "",
              username: str = "", status: int = 200) -> web.Response:
        domain = self.invites.api.domain
        csrf = secrets.token_urlsafe(32)
        cookie = make_cookie(request, COOKIE, csrf, "/invite/")
        uri = self.invites.uri(invite, token)
        who = (f"<strong>{escape(invite.inviter)}@{escape(domain)}</strong> invites you"
               if invite.inviter else "You are invited")
        clients = "".join(f"<li><a href='{escape(url)}' rel='noreferrer'>{escape(name)}</a> "
                          f"({escape(where)})</li>" for name, where, url in CLIENTS)
        if invite.username:
            user_field = (f"<input id='username' name='username' value="
                          f"'{escape(invite.username)}' readonly>")
        else:
            user_field = (f"<input id='username' name='username' value='{escape(username)}' "
                          f"required maxlength='{MAX_FIELD}' autocomplete='username'>")
        problem = f"<p class='error' role='alert'>{escape(error)}</p>" if error else ""
        body = f"""<h1>{who} to chat on {escape(domain)}</h1>
<p>Chat with XMPP: pick any app, talk with anyone on any XMPP server.</p>
<p><a class='button' href='{escape(uri)}'>Open the invitation in your XMPP app</a></p>
<p>If the button does nothing, install an app first, then come back here and tap it:</p>
<ul>{clients}</ul>
<h2>Or make your account here</h2>
{problem}
<form method='post' action=''>
<input type='hidden' name='csrf' value='{escape(csrf)}'>
<label for='username'>Username (your address will be <em>username</em>@{escape(domain)})</label>
{user_field}
<label for='password'>Password</label>
<input id='password' name='password' type='password' required maxlength='{MAX_FIELD}'
 autocomplete='new-password'>
<label for='password2'>Password again</label>
<input id='password2' name='password2' type='password' required maxlength='{MAX_FIELD}'
 autocomplete='new-password'>
<button type='submit'>Make my account</button>
</form>"""
        return _html(f"Invitation to {domain}", body, status, {"Set-Cookie": cookie})

    async def submit(self, request: web.BaseRequest) -> web.StreamResponse:
        found = await self._invite(request)
        if found is None:
            return not_found()
        token, invite = found
        if not same_origin(request):
            return _html("Refused", "<h1>Refused</h1><p>The form was sent from another "
                         "site.</p>", 403)
        if request.content_type != "application/x-www-form-urlencoded":
            return _html("Refused", "<h1>Refused</h1><p>Not a form.</p>", 415)
        try:
            form = await request.post()
        except (ValueError, web.HTTPException):
            return _html("Refused", "<h1>Refused</h1><p>The form could not be read.</p>", 400)
        fields = {k: form.get(k) for k in ("csrf", "username", "password", "password2")}
        values = {k: v if isinstance(v, str) else "" for k, v in fields.items()}
        if not token_matches(request.cookies.get(COOKIE, ""), values["csrf"]):
            return _html("Refused", "<h1>Refused</h1><p>The form expired: open the invitation "
                         "again.</p>", 403)
        username = values["username"].strip()
        if any(len(v) > MAX_FIELD for v in values.values()):
            return self._page(request, token, invite, "A field is too long.", "", 400)
        if values["password"] != values["password2"]:
            return self._page(request, token, invite, "The passwords differ.", username, 400)
        try:
            user = await self.invites.register(invite, username, values["password"])
        except StanzaError as exc:
            status = 409 if exc.condition == "conflict" else 400
            return self._page(request, token, invite, exc.text or exc.condition, username,
                              status)
        jid = f"{user}@{self.invites.api.domain}"
        contact = (f"<p>{escape(invite.inviter)}@{escape(self.invites.api.domain)} is in your "
                   "contacts already.</p>" if invite.inviter else "")
        return _html("Welcome", f"<h1>Welcome, {escape(jid)}!</h1><p>Your account is ready. "
                     f"Log in to <strong>{escape(jid)}</strong> with your password in any XMPP "
                     f"app.</p>{contact}", 201,
                     {"Set-Cookie": f"{COOKIE}=; Path=/invite/; Max-Age=0"})
