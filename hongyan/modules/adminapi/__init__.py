"""The REST admin API under the HTTP listener, at ``/api/``: the operations of the ad-hoc
administration commands (the same :class:`~hongyan.modules.admin.ops.AdminOps`) plus server
statistics, JSON in and out, JSON errors (``{"error", "message"}``), and its OpenAPI 3
document at ``/api/openapi.json``.

Every route needs ``Authorization: Bearer <token>``, a token made by ``hongyan token create``
(:mod:`.tokens`): none, or a wrong, revoked or expired one, is 401; a ``read`` token on a
route that changes something is 403. Over plain HTTP only from ``plain_http_from``
(loopback), else 403: a token must not cross a network in clear text. Tokens are never
logged.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from aiohttp import web

from hongyan.modules.admin import Admin
from hongyan.modules.admin.ops import MAX_DELAY, MAX_PAGE, MAX_PASSWORD, MAX_TEXT, AdminError
from hongyan.modules.adminapi.openapi import document
from hongyan.modules.adminapi.options import AdminApiOptions
from hongyan.modules.adminapi.reports import report_routes
from hongyan.modules.adminapi.routes import (
    JSON,
    Call,
    Invalid,
    Param,
    Route,
    check_body,
    check_query,
)
from hongyan.modules.adminapi.tokens import MIGRATIONS, Token, Tokens
from hongyan.server.module import Module
from hongyan.transport.http import Networks

if TYPE_CHECKING:
    from hongyan.modules.blocking import Blocking

PREFIX = "/api"
#: the API's own version (the OpenAPI document's ``info.version``)
API_VERSION = "1.0"
DOC_PATH = "/api/openapi.json"
#: every method the prefix takes, so that any other than a route's is a JSON 405 with the
#: path's own Allow (HEAD is GET's)
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE")
_STATUS = {"bad-input": 400, "not-found": 404, "conflict": 409}

STRING: JSON = {"type": "string"}
INT: JSON = {"type": "integer"}
STRINGS: JSON = {"type": "array", "items": STRING}


def obj(**props: JSON) -> JSON:
    return {"type": "object", "required": sorted(props), "properties": props}


NULLABLE_NUMBER: JSON = {"type": "number", "nullable": True}
PAGE = {"offset": Param(int, minimum=0, maximum=10**9, description="how many to skip"),
        "limit": Param(int, minimum=1, maximum=MAX_PAGE, description="how many at most")}
USERS = obj(count=INT, offset=INT, users=STRINGS)
USER = obj(username=STRING, jid=STRING, created={"type": "integer", "nullable": True},
           disabled={"type": "boolean"}, last_login=NULLABLE_NUMBER, sessions=STRINGS)
ROSTER = obj(items={"type": "array", "items": obj(jid=STRING, name=STRING,
                                                   subscription=STRING, groups=STRINGS)})
#: no control characters but tab, line feed and carriage return (XML cannot carry them); and
#: at least one that is not an ASCII space
_TEXT = "\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f"
NO_CONTROL = f"[^{_TEXT}]*"
NOT_BLANK = f"[^{_TEXT}]*[^ \\t\\n\\r{_TEXT}][^{_TEXT}]*"
MESSAGE = {"subject": Param(str, max_length=MAX_TEXT, pattern=NO_CONTROL),
           "body": Param(str, required=True, max_length=MAX_TEXT, pattern=NOT_BLANK)}
STOP = {"delay": Param(int, minimum=0, maximum=MAX_DELAY, description="seconds"),
        "announcement": Param(str, max_length=MAX_TEXT, pattern=NO_CONTROL,
                              description="sent to every online user first")}


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None
          ) -> web.Response:
    return web.Response(status=status, text=json.dumps({"error": code, "message": message}),
                        content_type="application/json", headers=headers)


INVITE = obj(id=STRING, kind=STRING, inviter=STRING, username=STRING, uses=INT, used=INT,
             created_at=INT, expires_at=INT,
             state={"type": "string", "enum": ["active", "expired", "used", "revoked"]})
MADE = obj(id=STRING, token=STRING, uri=STRING, landing_url=STRING, expires_at=INT)


class AdminApi(Module):
    name = "adminapi"
    depends = ("admin",)
    uses = ("invites", "blocking")  # invitations, and XEP-0377 reports, when loaded
    migrations = MIGRATIONS

    async def start(self) -> None:
        opts = self.api.options(AdminApiOptions)
        self._plain = Networks(opts.plain_http_from)
        self._max_body = opts.max_body
        self.ops = self.api.module(Admin).ops
        self.tokens = Tokens(self.api.db)
        self.started = time.monotonic()
        self.routes = self._routes()
        # (no import of the blocking module here: a server whose blocking folder is deleted
        # still has its admin commands and routes, without the reports)
        blocking: Blocking | None = self.api.optional("blocking")  # type: ignore[assignment]
        if blocking is not None:
            self.routes += report_routes(blocking, self.api.domain)
        self._doc = json.dumps(document(self.routes, API_VERSION)).encode()
        self.api.http_route("GET", DOC_PATH, self.serve_doc)
        for method in METHODS:
            self.api.http_route(method, PREFIX + "/*", self.serve)

    async def serve_doc(self, _request: web.BaseRequest) -> web.StreamResponse:
        return web.Response(body=self._doc, content_type="application/json")

    # -- one request ----------------------------------------------------------------------------
    async def serve(self, request: web.BaseRequest) -> web.StreamResponse:
        segments = [unquote(s) for s in request.rel_url.raw_path.split("/")]
        path = "/".join(segments)
        matches = [(r, m) for r in self.routes if (m := r.pattern.match(path)) is not None]
        if not matches:
            return error(404, "not-found", "no such route")
        method = "GET" if request.method == "HEAD" else request.method
        found = [(r, m) for r, m in matches if r.method == method]
        if not found:
            return error(405, "method-not-allowed", "not with this method",
                         {"Allow": ", ".join(sorted({r.method for r, _ in matches}))})
        route, match = found[0]
        token = await self._token(request)
        refused = self._refused(request, route, token)
        if refused is not None:
            return refused
        assert token is not None
        response = await self._call(request, route, match.groupdict())
        # an audit line: the token's id, never the token
        self.log.info("token %s (%s) from %s: %s %s -> %d", token.id, token.name or "-",
                      request.remote, request.method, request.rel_url.path, response.status)
        return response

    async def _call(self, request: web.BaseRequest, route: Route, path: dict[str, str]
                    ) -> web.Response:
        try:
            call = Call(path, check_query(route.query, dict(request.query)),
                        await self._body(request, route))
        except Invalid as exc:
            return error(400, "bad-request", str(exc))
        except web.HTTPException as exc:
            return error(exc.status, exc.reason.lower().replace(" ", "-"), exc.text or "")
        try:
            status, answer = await route.handler(call)
        except AdminError as exc:
            return error(_STATUS[exc.kind], exc.kind, exc.text)
        if answer is None:
            return web.Response(status=status)
        return web.Response(status=status, text=json.dumps(answer),
                            content_type="application/json",
                            headers={"Cache-Control": "no-store"})

    async def _token(self, request: web.BaseRequest) -> Token | None:
        auth = request.headers.get("Authorization", "")
        if auth[:7].lower() != "bearer ":
            return None
        return await self.tokens.check(auth[7:].strip(), self.api.now())

    def _refused(self, request: web.BaseRequest, route: Route, token: Token | None
                 ) -> web.Response | None:
        if request.scheme != "https" and (request.remote or "") not in self._plain:
            return error(403, "https-required", "the admin API is served over HTTPS only")
        auth = request.headers.get("Authorization", "")
        challenge = {"WWW-Authenticate": 'Bearer realm="hongyan-admin"'}
        if auth[:7].lower() != "bearer ":
            return error(401, "unauthorized", "a bearer token is needed", challenge)
        if token is None:
            return error(401, "unauthorized", "the token is wrong, revoked or expired",
                         {"WWW-Authenticate": 'Bearer realm="hongyan-admin", '
                                             'error="invalid_token"'})
        if route.scope == "admin" and token.scope != "admin":
            return error(403, "forbidden", f"a {token.scope} token may not do this")
        return None

    async def _body(self, request: web.BaseRequest, route: Route) -> dict[str, Any]:
        if route.body is None:
            return {}
        if request.content_type != "application/json":
            raise web.HTTPUnsupportedMediaType(text="the body is application/json")
        if request.content_length is not None and request.content_length > self._max_body:
            raise web.HTTPRequestEntityTooLarge(max_size=self._max_body,
                                                actual_size=request.content_length,
                                                text="the body is too large")
        raw = await request.content.read(self._max_body + 1)
        if len(raw) > self._max_body:
            raise web.HTTPRequestEntityTooLarge(max_size=self._max_body,
                                                actual_size=len(raw),
                                                text="the body is too large")
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise Invalid("the body is not JSON") from None
        return check_body(route.body, body)

    # -- the routes -----------------------------------------------------------------------------
    def _routes(self) -> list[Route]:
        ops = self.ops

        async def stats(_c: Call) -> tuple[int, Any]:
            out = await ops.stats()
            out["uptime_seconds"] = int(time.monotonic() - self.started)
            return 200, out

        async def users(c: Call) -> tuple[int, Any]:
            offset = c.query.get("offset", 0)
            count, jids = await ops.registered(offset, c.query.get("limit", 100))
            return 200, {"count": count, "offset": offset, "users": jids}

        async def online(c: Call) -> tuple[int, Any]:
            offset = c.query.get("offset", 0)
            count, jids = await ops.online(offset, c.query.get("limit", 100))
            return 200, {"count": count, "offset": offset, "users": jids}

        async def sessions(_c: Call) -> tuple[int, Any]:
            full = await ops.sessions()
            return 200, {"count": len(full), "sessions": full}

        async def add(c: Call) -> tuple[int, Any]:
            user = await ops.add_user(c.body["username"], c.body["password"])
            return 201, {"username": user, "jid": ops.jid(user)}

        async def info(c: Call) -> tuple[int, Any]:
            return 200, await ops.user_info(c.path["username"])

        async def delete(c: Call) -> tuple[int, Any]:
            await ops.delete_user(c.path["username"])
            return 204, None

        async def disable(c: Call) -> tuple[int, Any]:
            await ops.set_disabled(c.path["username"], True)
            return 204, None

        async def enable(c: Call) -> tuple[int, Any]:
            await ops.set_disabled(c.path["username"], False)
            return 204, None

        async def password(c: Call) -> tuple[int, Any]:
            await ops.set_password(c.path["username"], c.body["password"])
            return 204, None

        async def roster(c: Call) -> tuple[int, Any]:
            items = await ops.roster(c.path["username"])
            return 200, {"items": [{"jid": i.contact, "name": i.name,
                                    "subscription": i.subscription, "groups": list(i.groups)}
                                   for i in items]}

        async def last_login(c: Call) -> tuple[int, Any]:
            return 200, {"last_login": await ops.last_login(c.path["username"])}

        async def user_sessions(c: Call) -> tuple[int, Any]:
            found = (await ops.user_info(c.path["username"]))["sessions"]
            return 200, {"sessions": found}

        async def end(c: Call) -> tuple[int, Any]:
            return 200, {"ended": await ops.end_sessions(c.path["username"])}

        async def announce(c: Call) -> tuple[int, Any]:
            return 200, {"sent": await ops.announce(c.body.get("subject", ""), c.body["body"])}

        async def motd(_c: Call) -> tuple[int, Any]:
            msg = await ops.motd()
            if msg is None:
                raise AdminError("not-found", "no message of the day is set")
            return 200, {"subject": msg.subject, "body": msg.body}

        async def set_motd(c: Call) -> tuple[int, Any]:
            await ops.set_motd(c.body.get("subject", ""), c.body["body"])
            return 204, None

        async def delete_motd(_c: Call) -> tuple[int, Any]:
            await ops.delete_motd()
            return 204, None

        def stop(restart: bool) -> Any:
            async def run(c: Call) -> tuple[int, Any]:
                delay = c.body.get("delay", 0)
                await ops.shutdown(delay, c.body.get("announcement", ""), restart)
                return 202, {"restart": restart, "delay": delay}
            return run

        invites: Any = getattr(self.api.optional("invites"), "service", None)

        async def invite_create(c: Call) -> tuple[int, Any]:
            try:
                made = await invites.create(c.body.get("inviter", ""), c.body.get("username", ""),
                                            c.body.get("uses"), c.body.get("ttl"))
            except ValueError as exc:
                raise AdminError("bad-input", str(exc)) from None
            return 201, {"id": made.invite.id, "token": made.token, "uri": made.uri,
                         "landing_url": made.landing_url,
                         "expires_at": made.invite.expires_at}

        async def invite_list(_c: Call) -> tuple[int, Any]:
            now = self.api.now()
            return 200, {"invites": [i.json(now) for i in await invites.store.list()]}

        async def invite_revoke(c: Call) -> tuple[int, Any]:
            if not await invites.store.revoke(c.path["id"]):
                raise AdminError("not-found", "no such invitation")
            return 204, None

        invite_routes = [
            Route("POST", "/api/invites", "admin", "Make an invitation (its token is in the "
                  "answer only)", invite_create, ok=201, answer=MADE, body={
                      "username": Param(str, max_length=1023, pattern=NO_CONTROL,
                                        description="the username kept for the newcomer"),
                      "inviter": Param(str, max_length=1023, pattern=NO_CONTROL,
                                       description="a user the newcomer becomes a contact "
                                       "of, both ways"),
                      "uses": Param(int, minimum=1, maximum=1000,
                                    description="how many accounts it makes"),
                      "ttl": Param(int, minimum=60, maximum=365 * 86400,
                                   description="seconds it is valid")}),
            Route("GET", "/api/invites", "read", "Invitations (never their tokens)",
                  invite_list, answer=obj(invites={"type": "array", "items": INVITE})),
            Route("DELETE", "/api/invites/{id}", "admin", "Revoke an invitation",
                  invite_revoke, ok=204, errors=(404,)),
        ] if invites is not None else []

        u = "/api/users/{username}"
        pw = {"password": Param(str, required=True, max_length=MAX_PASSWORD)}
        ended, sent = obj(ended=INT), obj(sent=INT)
        stats_schema = {"type": "object", "additionalProperties": INT,
                        "required": ["registered_users", "online_users", "sessions",
                                     "workers", "uptime_seconds"]}
        return [
            Route("GET", "/api/stats", "read", "Server statistics", stats,
                  answer=stats_schema),
            Route("GET", "/api/users", "read", "Registered users (paged)", users,
                  answer=USERS, query=PAGE),
            Route("POST", "/api/users", "admin", "Add a user", add, ok=201,
                  answer=obj(username=STRING, jid=STRING),
                  body={"username": Param(str, required=True, max_length=1023), **pw},
                  errors=(409,)),
            Route("GET", u, "read", "A user's account", info, answer=USER, errors=(404,)),
            Route("DELETE", u, "admin", "Delete a user and all its data", delete, ok=204,
                  errors=(404,)),
            Route("POST", u + "/disable", "admin", "Disable a user (its sessions end)",
                  disable, ok=204, errors=(404,)),
            Route("POST", u + "/enable", "admin", "Enable a user again", enable, ok=204,
                  errors=(404,)),
            Route("PUT", u + "/password", "admin", "Change a user's password", password,
                  ok=204, body=pw, errors=(404,)),
            Route("GET", u + "/roster", "read", "A user's roster", roster, answer=ROSTER,
                  errors=(404,)),
            Route("GET", u + "/last-login", "read", "A user's last login (seconds since "
                  "the epoch, null: never)", last_login,
                  answer=obj(last_login=NULLABLE_NUMBER), errors=(404,)),
            Route("GET", u + "/sessions", "read", "A user's sessions (full JIDs)",
                  user_sessions, answer=obj(sessions=STRINGS), errors=(404,)),
            Route("DELETE", u + "/sessions", "admin", "End a user's sessions", end,
                  answer=ended, errors=(404,)),
            Route("GET", "/api/online", "read", "Online users (paged)", online,
                  answer=USERS, query=PAGE),
            Route("GET", "/api/sessions", "read", "Every session (full JIDs)", sessions,
                  answer=obj(count=INT, sessions=STRINGS)),
            Route("POST", "/api/announce", "admin", "Send a message to every online user",
                  announce, answer=sent, body=MESSAGE),
            Route("GET", "/api/motd", "read", "The message of the day", motd,
                  answer=obj(subject=STRING, body=STRING), errors=(404,)),
            Route("PUT", "/api/motd", "admin", "Set the message of the day (sent at login)",
                  set_motd, ok=204, body=MESSAGE),
            Route("DELETE", "/api/motd", "admin", "Delete the message of the day",
                  delete_motd, ok=204),
            Route("POST", "/api/shutdown", "admin", "Shut the server down", stop(False),
                  ok=202, answer=obj(restart={"type": "boolean"}, delay=INT), body=STOP),
            Route("POST", "/api/restart", "admin", "Restart the server", stop(True),
                  ok=202, answer=obj(restart={"type": "boolean"}, delay=INT), body=STOP),
            *invite_routes,
        ]


MODULE = AdminApi
