"""External components (XEP-0114) for the integration tests: slixmpp's ``ComponentXMPP`` over
real sockets, recording what reaches it, and the config that declares them."""

from __future__ import annotations

import asyncio
from typing import Any

import slixmpp
from slixmpp.exceptions import IqError

from tests.integration.clients import TIMEOUT, Recording

COMP = "comp.localhost"
SECRET = "component-secret-4d1f"


def components_config(port: int = 0, *names: tuple[str, str]) -> str:
    """The config lines for the component listener on ``port`` and each (name, secret)."""
    entries = names or ((COMP, SECRET),)
    lines = [f"[component_listener]\nbind = [\"127.0.0.1\"]\nport = {port}\n"]
    for name, secret in entries:
        lines.append(f"[[components]]\nname = \"{name}\"\nsecret = \"{secret}\"\n")
    return "\n".join(lines)


class Component(Recording, slixmpp.ComponentXMPP):  # type: ignore[misc]
    """A component that records the messages and presences it gets; its disco and ping
    plugins answer IQs."""

    def __init__(self, name: str = COMP, secret: str = SECRET) -> None:
        super().__init__(name, secret)
        self._record(self, ())

    async def start(self, port: int, host: str = "127.0.0.1") -> bool:
        """Connect and handshake; True once the server accepted it."""
        self.connect(host, port)
        return await asyncio.wait_for(self._started, TIMEOUT)

    async def request(self, iq: Any, timeout: float = TIMEOUT) -> Any:
        """Send ``iq`` and return the answer, error answers included."""
        try:
            return await iq.send(timeout=timeout)
        except IqError as exc:
            return exc.iq
