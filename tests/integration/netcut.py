"""A TCP relay between a client and the server that a test can break the way a phone's network
breaks: the client's side dies at once, while the server's side stays open and silent (the
server has not noticed anything; what it writes is lost on the way), or both die.

TLS passes through untouched (the relay moves bytes), so clients negotiate with the real server.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable


class Link:
    """One relayed connection."""

    def __init__(self, client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                 server: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        self.client_reader, self.client_writer = client
        self.server_reader, self.server_writer = server
        self.upstream_open = True  # client -> server bytes are relayed
        self.downstream_open = True  # server -> client bytes are relayed
        self.tasks = [asyncio.ensure_future(self._pump(self.client_reader, self._up)),
                      asyncio.ensure_future(self._pump(self.server_reader, self._down))]

    def _up(self, data: bytes) -> None:
        if self.upstream_open:
            self.server_writer.write(data)

    def _down(self, data: bytes) -> None:
        if self.downstream_open:
            self.client_writer.write(data)

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, out: Callable[[bytes], None]) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                out(data)

    def blackhole_upstream(self) -> None:
        """What the client sends from now on never reaches the server (lost in the network)."""
        self.upstream_open = False

    def cut(self, server_notices: bool = False) -> None:
        """The network is gone: the client's TCP connection is reset (no </stream:stream>).
        Unless ``server_notices``, the server's side stays open: what the server writes is
        read and dropped, and it sees no end of the connection."""
        self.upstream_open = self.downstream_open = False
        self.client_writer.transport.abort()
        if server_notices:
            self.server_writer.transport.abort()

    def close(self) -> None:
        for t in self.tasks:
            t.cancel()
        for w in (self.client_writer, self.server_writer):
            w.transport.abort()


class NetCut:
    """Listens on a free local port and relays every connection to ``target_port``."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.links: list[Link] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.links.append(Link((reader, writer), upstream))

    @property
    def last(self) -> Link:
        return self.links[-1]

    async def close(self) -> None:
        for link in self.links:
            link.close()
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)
