"""SASL2 (XEP-0388) beside RFC 6120 SASL, with FAST tokens (XEP-0484) and XEP-0474 downgrade
protection.

:class:`Sasl2Exchange` is :class:`~hongyan.server.auth.SaslExchange` with the SASL2 wire
format: ``<authenticate mechanism><initial-response/>…</authenticate>``, challenges and
responses in ``urn:xmpp:sasl:2``, ``<failure>`` carrying the RFC 6120 condition and a
``<text/>``. The mechanisms are those of classic SASL (same checks, same guard against password
guessing, same failure limit); SCRAM's server-first-message carries the XEP-0474 ``h``
attribute, the hash of the mechanisms and channel binding types this stream advertised. The
HT-SHA-256 mechanisms check a FAST token (:mod:`hongyan.server.fast`) in one round trip.
No task ever follows (no second factor, no SCRAM upgrade: every account has both hashes), so
the outcome is ``<success/>`` or ``<failure/>``, never ``<continue/>``.

On success the exchange hands a :class:`Outcome` to the stream (``authenticated2``): the
stream resumes a XEP-0198 session or binds one (Bind2, XEP-0386) with what the
``<authenticate/>`` asked inline, and answers with one ``<success/>``.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

from hongyan.server.auth import Negotiating, SaslExchange, Service, _b64, channel_bindings
from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element
from hongyan.xmpp.errors import StreamError
from hongyan.xmpp.sasl import (
    HT_MECHANISMS,
    SaslFailure,
    ht_responder,
    parse_ht,
    ssdp_string,
)

if TYPE_CHECKING:
    from hongyan.config.schema import AuthSection
    from hongyan.server.fast import FastTokens, Used

SASL2 = "urn:xmpp:sasl:2"
BIND2 = "urn:xmpp:bind:0"
FAST = "urn:xmpp:fast:0"
LIMITS = "urn:xmpp:stream-limits:0"
MAX_AGENT_ID = 256


@dataclass(slots=True)
class Outcome:
    """A successful SASL2 authentication, for the stream to finish."""

    username: str
    additional: bytes  # the mechanism's last data (SCRAM's v=, HT's responder hash)
    request: Element  # the <authenticate/>, with what it asks inline
    agent: str  # the <user-agent id/>, "" when none
    mechanism: str
    used: Used | None = None  # the FAST token that authenticated it


class Negotiating2(Negotiating, Protocol):
    def authenticated2(self, outcome: Outcome) -> Awaitable[None]: ...


class FastService(Service, Protocol):
    @property
    def fast(self) -> FastTokens | None: ...


def user_agent(request: Element) -> str:
    ua = request.find("user-agent", SASL2)
    agent = "" if ua is None else ua.attrs.get("id", "").strip()
    return agent[:MAX_AGENT_ID]


class Sasl2Exchange(SaslExchange):
    """One SASL2 negotiation, from ``<authenticate/>`` to ``<success/>``."""

    __slots__ = ("_cb_types", "_mech", "_request", "_used")

    def __init__(self, stream: Negotiating2, node: FastService, cfg: AuthSection, *,
                 allow_plaintext: bool, cb_types: list[str] | None) -> None:
        super().__init__(stream, node, cfg, allow_plaintext=allow_plaintext)
        self._cb_types = cb_types
        self._request: Element | None = None
        self._mech = ""
        self._used: Used | None = None

    def element(self, el: Element) -> Awaitable[object] | None:
        if el.name == "authenticate":
            if self._request is not None and self._scram is not None:
                raise StreamError("policy-violation", "an authentication is under way")
            self._request = el
            self._used = None
            mech = self._mech = el.attrs.get("mechanism", "")
            text = el.find_text("initial-response", SASL2) or ""
            if mech in HT_MECHANISMS:
                return self._ht(mech, text)
            return self._start(mech, text)
        if el.name in ("response", "abort"):
            return super().element(el)
        raise StreamError("unsupported-stanza-type", f"unexpected SASL2 element <{el.name}/>")

    # -- what differs from RFC 6120 SASL ----------------------------------------------------------
    def _ssdp(self, offered: list[str]) -> str | None:
        return ssdp_string(offered, self._cb_types)

    def _challenge(self, data: bytes) -> None:
        self._stream.send(f"<challenge xmlns='{SASL2}'>".encode() + base64.b64encode(data)
                          + b"</challenge>", raw=True)

    def _failure(self, exc: SaslFailure) -> Element:
        fail = Element("failure", SASL2)
        fail.add(exc.condition, NS.SASL)
        if exc.text:
            fail.add("text", text=exc.text)
        return fail

    def _succeed(self, username: str, final: bytes) -> Awaitable[None]:
        request = self._request
        assert request is not None
        stream = cast("Negotiating2", self._stream)
        return stream.authenticated2(Outcome(username, final, request, user_agent(request),
                                             self._mech, self._used))

    # -- FAST: the Hashed Token mechanisms ------------------------------------------------------
    async def _ht(self, mech: str, text: str) -> None:
        node = self._node
        tokens = cast("FastService", node).fast
        transport = self._stream.transport
        if node.guard.banned(transport.peer_host):
            await self._banned()
            return
        if tokens is None or not transport.secure:
            await self._fail(SaslFailure("invalid-mechanism", f"{mech!r} not offered"))
            return
        cb_type = HT_MECHANISMS[mech]
        cb_data = b""
        if cb_type:
            found = channel_bindings(transport).get(cb_type)
            if found is None:
                await self._fail(SaslFailure("invalid-mechanism",
                                             f"no {cb_type} channel binding here"))
                return
            cb_data = found
        request = self._request
        assert request is not None
        agent = user_agent(request)
        try:
            authcid, proof = parse_ht(_b64(text))
            username = node.accounts.prepare(authcid)
        except SaslFailure as exc:
            await self._fail(exc)
            return
        except Exception:
            await self._fail(SaslFailure("not-authorized", "unknown user or bad token"))
            return
        if not agent:
            await self._fail(SaslFailure("not-authorized", "FAST needs a <user-agent id/>"))
            return
        used = await tokens.check(username, agent, mech, proof, cb_data)
        if used is None:
            await self._fail(SaslFailure("not-authorized", "unknown, expired or wrong token"))
            return
        self._used = used
        await self._authenticated(username, "", ht_responder(used.token, cb_data))


def fast_feature(transport_secure: bool, cb_types: list[str]) -> Element | None:
    """The ``<fast/>`` SASL2 inline feature: HT-SHA-256-NONE, and -ENDP/-EXPR where the
    connection has that channel binding (never in the clear)."""
    if not transport_secure:
        return None
    fast = Element("fast", FAST)
    for mech, cb in HT_MECHANISMS.items():
        if not cb or cb in cb_types:
            fast.add("mechanism", text=mech)
    return fast


def outcome_to_json(o: Outcome) -> dict[str, object]:
    """An outcome as JSON, for the account's home worker (which finishes the login)."""
    used = None
    if o.used is not None:
        used = [base64.b64encode(o.used.token).decode(), o.used.expires_at, o.used.slot]
    return {"u": o.username, "a": base64.b64encode(o.additional).decode(),
            "r": o.request.to_str(""), "g": o.agent, "m": o.mechanism, "t": used}


def outcome_from_json(d: dict[str, Any]) -> Outcome:
    from hongyan.server.fast import Used
    from hongyan.xmpp.parser import parse_element

    t = d.get("t")
    used = None if not t else Used(base64.b64decode(t[0]), int(t[1]), str(t[2]))
    request = parse_element(str(d["r"]).encode())
    return Outcome(str(d["u"]), base64.b64decode(d["a"]), request, str(d["g"]), str(d["m"]),
                   used)
