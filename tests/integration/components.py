"""External components (XEP-0114) for the integration tests: slixmpp's ``ComponentXMPP`` over
real sockets, recording what reaches it, and the config that declares them."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import slixmpp
from slixmpp.exceptions import IqError

from tests.integration.clients import TIMEOUT

COMP = "comp.localhost"
SECRET = "component-secret-4d1f"


def components_config(port: int = 0, *names: tuple[str, str]) -> str:
    """The config lines for the component listener on ``port`` and each (name, secret)."""
    entries = names or ((COMP, SECRET),)
    lines = [f"[component_listener]\nbind = [\"127.0.0.1\"]\nport = {port}\n"]
    for name, secret in entries:
        lines.append(f"[[components]]\nname = \"{name}\"\nsecret = \"{secret}\"\n")
    return "\n".join(lines)


class Component(slixmpp.ComponentXMPP):  # type: ignore[misc]
    """A component that records the messages and presences it gets and answers IQs the
    plugins (disco, ping) answer."""

    def __init__(self, name: str = COMP, secret: str = SECRET) -> None:
        super().__init__(name, secret)
        self.messages: asyncio.Queue[Any] = asyncio.Queue()
        self.presences: asyncio.Queue[Any] = asyncio.Queue()
        self.stream_errors: list[Any] = []
        self._started: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        for p in ("xep_0030", "xep_0199"):
            self.register_plugin(p)
        self.add_event_handler("session_start", self._on_start)
        self.add_event_handler("stream_error", self.stream_errors.append)
        self.add_event_handler("message", self.messages.put_nowait)
        self.add_event_handler("presence", self.presences.put_nowait)
        self.add_event_handler("disconnected", self._on_disconnected)

    def _on_start(self, _event: Any) -> None:
        if not self._started.done():
            self._started.set_result(True)

    def _on_disconnected(self, _event: Any) -> None:
        if not self._started.done():
            self._started.set_result(False)

    async def start(self, port: int, host: str = "127.0.0.1") -> bool:
        """Connect and handshake; True once the server accepted it."""
        self.connect(host, port)
        return await asyncio.wait_for(self._started, TIMEOUT)

    async def next_message(self, timeout: float = TIMEOUT) -> Any:
        return await asyncio.wait_for(self.messages.get(), timeout)

    async def request(self, iq: Any, timeout: float = TIMEOUT) -> Any:
        """Send ``iq`` and return the answer, error answers included."""
        try:
            return await iq.send(timeout=timeout)
        except IqError as exc:
            return exc.iq

    async def close(self) -> None:
        if self.transport is not None:
            self.disconnect()
            with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                await asyncio.wait_for(self.disconnected, 5)
