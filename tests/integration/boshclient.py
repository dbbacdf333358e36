"""A small BOSH client (XEP-0124/XEP-0206) at the byte level, on aiohttp's HTTP client: each
request is a ``<body/>`` of our own making with the ``rid`` we choose, so that a test can send
them out of order, repeat one, or skip ahead; answers are the response bodies as text.

slixmpp has no BOSH client; this one is what the tests need and no more: create a session,
authenticate with SASL PLAIN, restart, bind, send stanzas and poll for what comes back."""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from tests.integration.clients import insecure_context
from tests.integration.rawstream import PASSWORD, SASL, b64

HTTPBIND = "http://jabber.org/protocol/httpbind"
XBOSH = "urn:xmpp:xbosh"
BIND = "urn:ietf:params:xml:ns:xmpp-bind"
TIMEOUT = 10.0
EMPTY = f"<body xmlns='{HTTPBIND}'/>"
Between = Callable[[], Awaitable[object]]


def bosh_url(port: int, tls: bool = False) -> str:
    return f"{'https' if tls else 'http'}://127.0.0.1:{port}/http-bind"


def attr(body: str, name: str) -> str | None:
    """An attribute of the response's <body> tag."""
    head = body[:body.find(">") + 1]
    m = re.search(rf"\s{re.escape(name)}=(['\"])(.*?)\1", head)
    return m.group(2) if m else None


class Bosh:
    """One BOSH session's client side."""

    def __init__(self, url: str, http: aiohttp.ClientSession | None = None) -> None:
        self.url = url
        self._own = http is None
        self.http = http or aiohttp.ClientSession()
        self.rid = secrets.randbelow(1 << 40) + 1_000_000
        self.sid = ""
        #: every response body, in the order they came
        self.responses: list[str] = []
        self.status = 0
        self.headers: Any = None

    async def close(self) -> None:
        if self._own:
            await self.http.close()

    def next_rid(self) -> int:
        self.rid += 1
        return self.rid

    def body(self, payload: str = "", rid: int | None = None, **attrs: str) -> str:
        """A request body of this session (``rid`` None: the next one)."""
        rid = self.next_rid() if rid is None else rid
        parts = [f"rid='{rid}'"]
        if self.sid:
            parts.append(f"sid='{self.sid}'")
        parts += [f"{k.replace('__', ':')}='{v}'" for k, v in attrs.items()]
        head = f"<body xmlns='{HTTPBIND}' xmlns:xmpp='{XBOSH}' {' '.join(parts)}"
        return f"{head}/>" if not payload else f"{head}>{payload}</body>"

    async def post(self, data: str | bytes, timeout: float = 70.0,
                   headers: dict[str, str] | None = None) -> str:
        """POST raw bytes; the response body."""
        async with self.http.post(
                self.url, data=data.encode() if isinstance(data, str) else data,
                headers={"Content-Type": "text/xml; charset=utf-8", **(headers or {})},
                ssl=insecure_context() if self.url.startswith("https") else False,
                timeout=aiohttp.ClientTimeout(total=timeout)) as r:
            text = await r.text()
            self.status = r.status
            self.headers = r.headers
        self.responses.append(text)
        return text

    def send(self, payload: str = "", rid: int | None = None, **attrs: str
             ) -> asyncio.Task[str]:
        """A request of the session, under way (its rid taken now, in this order)."""
        return asyncio.ensure_future(self.post(self.body(payload, rid, **attrs)))

    async def request(self, payload: str = "", rid: int | None = None,
                      timeout: float = TIMEOUT, **attrs: str) -> str:
        return await asyncio.wait_for(self.send(payload, rid, **attrs), timeout)

    async def create(self, wait: int = 60, hold: int = 1, to: str = "localhost",
                     **attrs: str) -> str:
        """The session creation request (XEP-0206 §3); its response (sid taken)."""
        self.sid = ""
        got = await self.request(rid=self.next_rid(), wait=str(wait), hold=str(hold), to=to,
                                 ver="1.11", xmpp__version="1.0",
                                 content="text/xml; charset=utf-8", **attrs)
        self.sid = attr(got, "sid") or ""
        return got

    async def ask(self, payload: str = "", between: Between | None = None,
                  **attrs: str) -> str:
        """A request, and (a polling session: it was answered before the server had
        anything to say) empty ones after it, ``between`` awaited before each, until a
        response says something."""
        got = await self.request(payload, **attrs)
        for _ in range(20):
            if got != EMPTY or between is None:
                break
            await between()
            got = await self.request()
        return got

    async def login(self, user: str, resource: str = "bosh", password: str = PASSWORD,
                    between: Between | None = None, **create: Any) -> str:
        """Create, authenticate (PLAIN), restart, bind; the bound JID. ``between``: what to
        await between polls (a polling session)."""
        got = await self.create(**create)
        assert ">PLAIN<" in got, got
        ok = await self.ask(f"<auth xmlns='{SASL}' mechanism='PLAIN'>"
                            f"{b64(chr(0) + user.split('@')[0] + chr(0) + password)}</auth>",
                            between)
        assert "<success" in ok, ok
        feats = await self.ask("", between, to="localhost", xmpp__restart="true")
        assert f"<bind xmlns='{BIND}'/>" in feats, feats
        bound = await self.ask(f"<iq xmlns='jabber:client' type='set' id='b1'>"
                               f"<bind xmlns='{BIND}'><resource>{resource}</resource>"
                               "</bind></iq>", between)
        m = re.search(r"<jid>([^<]+)</jid>", bound)
        assert m, bound
        return m.group(1)

    async def until(self, text: str, timeout: float = TIMEOUT) -> str:
        """Poll (empty requests, one at a time) until a response contains ``text``."""
        async def loop() -> str:
            while True:
                got = await self.post(self.body())
                if text in got:
                    return got
                assert "type='terminate'" not in got, got

        return await asyncio.wait_for(loop(), timeout)


__all__ = ["BIND", "EMPTY", "HTTPBIND", "XBOSH", "Bosh", "attr", "bosh_url"]
