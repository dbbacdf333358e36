"""A raw XMPP-over-WebSocket peer (RFC 7395) on aiohttp's client: exact messages out, and what
comes back both as the messages themselves and as one byte stream (so that the helpers of
:class:`RawStream`, such as ``read_element`` and the SCRAM client of test_auth, work on it)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiohttp

from tests.integration.clients import insecure_context
from tests.integration.rawstream import PASSWORD, SASL, RawStream, b64

FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
OPEN = f"<open xmlns='{FRAMING}' to='localhost' version='1.0'/>"
CLOSE = f"<close xmlns='{FRAMING}'/>"


def ws_url(port: int, tls: bool = False, path: str = "/xmpp-websocket") -> str:
    return f"{'wss' if tls else 'ws'}://127.0.0.1:{port}{path}"


class WsStream(RawStream):
    def __init__(self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.http = http
        self.ws = ws
        self.buffer = b""
        #: every text message received, in order
        self.messages: list[str] = []
        self._sending: list[asyncio.Future[None]] = []

    @classmethod
    async def connect(cls, url: str, *, protocols: tuple[str, ...] = ("xmpp",),
                      headers: dict[str, str] | None = None, **kw: Any) -> WsStream:
        http = aiohttp.ClientSession()
        try:
            ws = await http.ws_connect(url, protocols=protocols, headers=headers,
                                       ssl=insecure_context() if url.startswith("wss") else False,
                                       **{"autoping": True, **kw})
        except BaseException:
            await http.close()
            raise
        return cls(http, ws)

    def send(self, data: str | bytes) -> None:
        """One message (sent in order with the others)."""
        text = data.decode() if isinstance(data, bytes) else data
        self._sending.append(asyncio.ensure_future(self.ws.send_str(text)))

    async def message(self, timeout: float = 5.0) -> str:
        """The next text message (AssertionError when the connection closes instead)."""
        msg = await asyncio.wait_for(self.ws.receive(), timeout)
        assert msg.type == aiohttp.WSMsgType.TEXT, (msg.type, msg.data)
        self.messages.append(msg.data)
        return str(msg.data)

    async def until(self, text: str, timeout: float = 5.0) -> str:
        """The next message that contains ``text`` (the ones before it are skipped)."""
        async def loop() -> str:
            while True:
                msg = await self.message(timeout)
                if text in msg:
                    return msg

        return await asyncio.wait_for(loop(), timeout)

    async def more(self) -> bytes:
        """The next message's bytes (b"" once the connection closed: see :attr:`close_code`),
        for the byte-stream helpers of RawStream (read_until, read_element, read_to_close)."""
        msg = await self.ws.receive()
        if msg.type != aiohttp.WSMsgType.TEXT:
            return b""
        self.messages.append(msg.data)
        return str(msg.data).encode()

    @property
    def close_code(self) -> int | None:
        return self.ws.close_code

    async def header(self, to: str = "localhost") -> bytes:
        """Open the stream (or restart it): our <open/>, then up to the features."""
        self.send(OPEN.replace("'localhost'", f"'{to}'"))
        return await self.read_until(b"</stream:features>")

    async def authenticate(self, user: str, password: str = PASSWORD) -> bytes:
        """Open, PLAIN, restart: returns the restarted stream's features."""
        await self.header()
        self.send(f"<auth xmlns='{SASL}' mechanism='PLAIN'>"
                  f"{b64(chr(0) + user + chr(0) + password)}</auth>")
        assert b"<success" in await self.read_element(b"success")
        return await self.header()

    async def login(self, user: str, resource: str = "ws", password: str = PASSWORD) -> str:
        """PLAIN, restart, bind: returns the bind result."""
        await self.authenticate(user, password)
        return await self.bind(resource)

    async def bind(self, resource: str = "ws") -> str:
        self.send("<iq xmlns='jabber:client' type='set' id='bind'>"
                  "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                  f"<resource>{resource}</resource></bind></iq>")
        return (await self.read_element(b"id='bind'")).decode()

    async def drop(self) -> None:
        """Close the WebSocket without an XMPP <close/> (as a browser tab that goes away)."""
        await self.ws.close()

    async def close(self) -> None:  # type: ignore[override]
        with contextlib.suppress(Exception):
            await self.ws.close()
        await self.http.close()
