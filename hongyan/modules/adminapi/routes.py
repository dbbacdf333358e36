"""The admin API's routes, declared once: each one's method, path, scope, body, query and
answer. The dispatcher checks requests against them and the OpenAPI document
(``/api/openapi.json``) is generated from them, so the two cannot drift apart."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Param:
    """A body property or a query parameter: ``kind`` str, int or bool."""

    kind: type
    required: bool = False
    minimum: int | None = None
    maximum: int | None = None
    max_length: int | None = None
    #: what a string must match as a whole (written for both Python's re and ECMA-262)
    pattern: str | None = None
    description: str = ""

    def schema(self) -> JSON:
        out: JSON = {"type": {str: "string", int: "integer", bool: "boolean"}[self.kind]}
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        if self.max_length is not None:
            out["maxLength"] = self.max_length
        if self.pattern is not None:
            out["pattern"] = f"^(?:{self.pattern})$"
        if self.description:
            out["description"] = self.description
        return out


class Invalid(Exception):
    """A request that does not fit its route (400)."""


@dataclass(frozen=True, slots=True)
class Call:
    """A request as a handler sees it: path parameters, query and body, checked."""

    path: dict[str, str]
    query: dict[str, Any]
    body: dict[str, Any]


Handler = Callable[[Call], Awaitable[tuple[int, Any]]]


@dataclass(slots=True)
class Route:
    method: str
    path: str
    scope: str  # "read" or "admin"
    summary: str
    handler: Handler
    ok: int = 200
    answer: JSON | None = None  # the JSON schema of a success's body (None: no body)
    body: dict[str, Param] | None = None
    query: dict[str, Param] = field(default_factory=dict)
    errors: tuple[int, ...] = (400,)
    pattern: re.Pattern[str] = field(init=False)

    def __post_init__(self) -> None:
        self.pattern = re.compile("^" + re.sub(r"\\{(\w+)\\}", r"(?P<\1>[^/]+)",
                                                re.escape(self.path)) + "$")

    @property
    def params(self) -> list[str]:
        return re.findall(r"\{(\w+)\}", self.path)


def check_value(name: str, p: Param, value: Any) -> Any:
    if p.kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(f"{name} is an integer")
        if (p.minimum is not None and value < p.minimum) or \
                (p.maximum is not None and value > p.maximum):
            raise Invalid(f"{name} is out of range")
    elif not isinstance(value, p.kind):
        raise Invalid(f"{name} is a {p.schema()['type']}")
    if isinstance(value, str):
        if p.max_length is not None and len(value) > p.max_length:
            raise Invalid(f"{name} is longer than {p.max_length}")
        if p.pattern is not None and re.fullmatch(p.pattern, value) is None:
            raise Invalid(f"{name} has characters it may not have (or is blank)")
        try:
            value.encode()
        except UnicodeEncodeError:
            raise Invalid(f"{name} is not valid Unicode (a lone surrogate)") from None
    return value


def check_body(spec: dict[str, Param], body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise Invalid("the body is a JSON object")
    unknown = sorted(set(body) - set(spec))
    if unknown:
        raise Invalid(f"unknown properties: {', '.join(unknown)}")
    out = {}
    for name, p in spec.items():
        if name not in body:
            if p.required:
                raise Invalid(f"{name} is required")
            continue
        out[name] = check_value(name, p, body[name])
    return out


def check_query(spec: dict[str, Param], query: dict[str, str]) -> dict[str, Any]:
    unknown = sorted(set(query) - set(spec))
    if unknown:
        raise Invalid(f"unknown query parameters: {', '.join(unknown)}")
    out: dict[str, Any] = {}
    for name, text in query.items():
        p = spec[name]
        if p.kind is int:
            if not re.fullmatch(r"-?[0-9]{1,12}", text):
                raise Invalid(f"{name} is an integer")
            out[name] = check_value(name, p, int(text))
        else:
            out[name] = check_value(name, p, text)
    return out


__all__ = ["JSON", "Call", "Handler", "Invalid", "Param", "Route", "check_body",
           "check_query"]
