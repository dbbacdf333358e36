"""A client connection kept in this process and relayed to the worker where its session lives
(the account's home), over a socket pair: used where the connection's state cannot move with
its socket (TLS; a WebSocket). :class:`Relay` is the pair's side here; :attr:`Relay.client_side`
stands in for the session on the client's transport. Flow control crosses in both directions.
A subclass changes what crosses (``to_client``, ``to_home``): a TLS connection's bytes as they
are, a WebSocket's messages each with its length."""

from __future__ import annotations

import asyncio
from typing import Protocol, cast


class Client(Protocol):
    """The client's transport, as the relay uses it."""

    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...


class Relay(asyncio.Protocol):
    def __init__(self, client: Client) -> None:
        self._client = client
        self.home: asyncio.Transport | None = None
        self.client_side = ClientSide(self)

    def to_client(self, data: bytes) -> None:
        """Bytes from the home, for the client."""
        self._client.write(data)

    def to_home(self, data: bytes) -> bytes:
        """What the client sent, as it crosses to the home."""
        return data

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.home = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.to_client(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.home = None
        self._client.close()

    def pause_writing(self) -> None:
        self._client.pause_reading()

    def resume_writing(self) -> None:
        self._client.resume_reading()


class ClientSide:
    """What the client's transport calls (its ``session``) once its connection is relayed."""

    __slots__ = ("_relay",)

    def __init__(self, relay: Relay) -> None:
        self._relay = relay

    def data_received(self, data: bytes) -> None:
        home = self._relay.home
        if home is not None:
            home.write(self._relay.to_home(data))

    def connection_lost(self) -> None:
        home = self._relay.home
        if home is not None:
            home.close()

    def pause_writing(self) -> None:
        home = self._relay.home
        if home is not None:
            home.pause_reading()

    def resume_writing(self) -> None:
        home = self._relay.home
        if home is not None:
            home.resume_reading()


__all__ = ["Client", "ClientSide", "Relay"]
