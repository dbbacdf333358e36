"""What the streams of federation use of their node, their connection and their
:class:`~hongyan.server.s2s.Federation` (Protocols, so that the streams need not import it)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Protocol

from hongyan.server.session import Batcher, Connection

if TYPE_CHECKING:
    from hongyan.config.schema import S2SSection
    from hongyan.server.clock import Clock
    from hongyan.server.limits import Preauth
    from hongyan.server.router import Router
    from hongyan.server.s2s.certs import Trust
    from hongyan.xmpp.element import Element
    from hongyan.xmpp.errors import StanzaError
    from hongyan.xmpp.jid import JID
    from hongyan.xmpp.stream import Profile


class Transport(Connection, Protocol):
    """What an incoming stream needs of its connection."""

    @property
    def secure(self) -> bool: ...
    @property
    def peer_host(self) -> str: ...
    @property
    def can_start_tls(self) -> bool: ...
    def start_tls(self) -> Awaitable[None]: ...
    def peer_certificates(self) -> list[bytes]: ...


class Host(Batcher, Protocol):
    """What federation uses of its node."""

    router: Router
    clock: Clock

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]: ...


class Peers(Protocol):
    """The federation as its streams see it."""

    node: Host
    config: S2SSection
    streams: Profile
    client_context: ssl.SSLContext
    per_ip: Preauth
    trust: Trust

    def key(self, receiving: str, originating: str, stream_id: str) -> str: ...
    def key_valid(self, receiving: str, originating: str, stream_id: str, given: str
                  ) -> bool: ...
    async def verify(self, local: str, remote: str, stream_id: str, key: str) -> bool: ...
    async def addresses(self, domain: str) -> list[tuple[str, int, bool]]: ...
    def bounce(self, item: Element | bytes, error: StanzaError) -> None: ...
    def remote_presence(self, el: Element, sender: JID, to: JID) -> None: ...
    def authenticated(self, stream: Any, remote: str) -> None: ...
    def incoming_ended(self, stream: Any) -> None: ...
    def outgoing_ended(self, out: Any) -> None: ...
