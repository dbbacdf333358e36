"""The OpenAPI 3 document of the admin API, generated from its route table."""

from __future__ import annotations

from typing import Any

from hongyan.modules.adminapi.routes import JSON, Route

ERROR: JSON = {"type": "object", "required": ["error", "message"],
               "properties": {"error": {"type": "string"}, "message": {"type": "string"}}}

#: what each error status means, for the document
ERRORS = {400: "the request does not fit (bad JSON, a bad value, an unknown property)",
          401: "no token, or a token that is wrong, revoked or expired",
          403: "the token's scope does not allow this (or plain HTTP from afar)",
          404: "no such account, invitation or report (or route)",
          409: "the account exists already",
          413: "the body is too large", 415: "the body is not application/json"}


def document(routes: list[Route], version: str, base: str = "") -> JSON:
    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        op: JSON = {"summary": r.summary, "operationId": _op_id(r),
                    "security": [{"bearer": [r.scope]}], "responses": {}}
        params: list[JSON] = [{"name": p, "in": "path", "required": True,
                               "schema": {"type": "string", "minLength": 1}}
                              for p in r.params]
        params += [{"name": name, "in": "query", "required": p.required, "schema": p.schema()}
                   for name, p in r.query.items()]
        if params:
            op["parameters"] = params
        if r.body is not None:
            op["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": {"type": "object", "additionalProperties": False,
                           "required": [n for n, p in r.body.items() if p.required],
                           "properties": {n: p.schema() for n, p in r.body.items()}}}}}
        ok: JSON = {"description": "done"}
        if r.answer is not None:
            ok["content"] = {"application/json": {"schema": r.answer}}
        op["responses"][str(r.ok)] = ok
        codes = {400, 401, 403, *r.errors}
        if r.body is not None:
            codes |= {413, 415}
        for code in sorted(codes):
            op["responses"][str(code)] = {
                "description": ERRORS[code],
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        paths.setdefault(r.path, {})[r.method.lower()] = op
    _link_created_users(paths)
    return {
        "openapi": "3.0.3",
        "info": {"title": "Hongyan admin API", "version": version,
                 "description": "Service administration of a Hongyan XMPP server. Every call "
                 "needs `Authorization: Bearer <token>` (made by `hongyan token create`): "
                 "scope `read` for GET, `admin` for everything."},
        "servers": [{"url": base or "/"}],
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _link_created_users(paths: dict[str, dict[str, Any]]) -> None:
    """OpenAPI links from the account a POST /api/users made to every route about an
    account (what a client, or a test generator, can do next with it)."""
    created = paths.get("/api/users", {}).get("post")
    if created is None:
        return
    links = {}
    for path, item in paths.items():
        if "{username}" not in path:
            continue
        for op in item.values():
            links[op["operationId"]] = {"operationId": op["operationId"],
                                        "parameters": {"username": "$response.body#/username"}}
    created["responses"]["201"]["links"] = links


def _op_id(r: Route) -> str:
    words = [w.strip("{}").replace("-", "_") for w in r.path.split("/")[2:]]
    return r.method.lower() + "_" + "_".join(words)


__all__ = ["document"]
