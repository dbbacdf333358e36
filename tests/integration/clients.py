"""slixmpp clients for the integration tests, talking to the real server over real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any

import slixmpp
from slixmpp.exceptions import IqError

TIMEOUT = 10.0


def insecure_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Recording:
    """What the tests' slixmpp streams (clients, components) record: the messages and
    presences they get, stream errors, whether their session started, when they are gone."""

    def _record(self, stream: Any, plugins: tuple[str, ...]) -> None:
        self.messages: asyncio.Queue[Any] = asyncio.Queue()
        self.presences: asyncio.Queue[Any] = asyncio.Queue()
        self.stream_errors: list[Any] = []
        self.gone = asyncio.Event()
        self._started: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        for p in ("xep_0030", "xep_0199", *plugins):
            stream.register_plugin(p)
        stream.add_event_handler("session_start", self._on_start)
        stream.add_event_handler("stream_error", self.stream_errors.append)
        stream.add_event_handler("message", self.messages.put_nowait)
        stream.add_event_handler("presence", self.presences.put_nowait)
        stream.add_event_handler("disconnected", self._on_disconnected)

    def _on_start(self, _event: Any) -> None:
        if not self._started.done():
            self._started.set_result(True)

    def _on_failed(self, _event: Any) -> None:
        if not self._started.done():
            self._started.set_result(False)

    def _on_disconnected(self, _event: Any) -> None:
        self.gone.set()
        if not self._started.done():
            self._started.set_result(False)

    async def next_message(self, timeout: float = TIMEOUT) -> Any:
        return await asyncio.wait_for(self.messages.get(), timeout)

    async def next_presence(self, timeout: float = TIMEOUT) -> Any:
        return await asyncio.wait_for(self.presences.get(), timeout)

    async def close(self) -> None:
        stream: Any = self
        if stream.transport is not None:
            stream.disconnect()
            with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                await asyncio.wait_for(stream.disconnected, 5)


class Client(Recording, slixmpp.ClientXMPP):  # type: ignore[misc]
    """A slixmpp client that records what it receives."""

    def __init__(self, jid: str, password: str, plugins: tuple[str, ...] = ()) -> None:
        super().__init__(jid, password)
        self.ssl_context = insecure_context()
        self.auth_failures: list[Any] = []
        self._record(self, plugins)
        self.add_event_handler("failed_all_auth", self._on_failed)
        self.add_event_handler("failed_auth", lambda e: self.auth_failures.append(e))

    async def login(self, port: int, direct_tls: bool = False, presence: bool = True,
                    host: str = "127.0.0.1") -> bool:
        self.enable_direct_tls = direct_tls
        self.enable_starttls = not direct_tls
        self.enable_plaintext = False
        self.connect(host, port)
        ok = await asyncio.wait_for(self._started, TIMEOUT)
        if ok and presence:
            self.send_presence()
            await asyncio.wait_for(self.get_roster(), TIMEOUT)
        return ok

    async def iq(self, xml: str, timeout: float = TIMEOUT) -> Any:
        """Send a raw IQ (``xml`` is its payload and attributes) and return the answer, error
        answers included."""
        iq = self.make_iq_get() if " type='set'" not in xml else self.make_iq_set()
        return await self.send_raw_iq(iq, xml, timeout)

    async def send_raw_iq(self, iq: Any, payload: str, timeout: float) -> Any:
        from slixmpp.xmlstream import ET

        iq.append(ET.fromstring(payload))
        try:
            return await iq.send(timeout=timeout)
        except IqError as exc:
            return exc.iq
