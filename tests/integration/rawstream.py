"""A raw XML-over-TCP peer for the bad-input tests: we send exact bytes and read what comes back."""

from __future__ import annotations

import asyncio
import ssl

from tests.integration.clients import insecure_context

HEADER = ("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
          "xmlns:stream='http://etherx.jabber.org/streams' to='{to}' version='1.0'>")


class RawStream:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.buffer = b""

    @classmethod
    async def open(cls, port: int, tls: bool = False) -> RawStream:
        ctx: ssl.SSLContext | None = insecure_context() if tls else None
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
        return cls(reader, writer)

    def send(self, data: str | bytes) -> None:
        self.writer.write(data.encode() if isinstance(data, str) else data)

    async def header(self, to: str = "localhost") -> bytes:
        self.send(HEADER.format(to=to))
        return await self.read_until(b"</stream:features>")

    async def read_until(self, marker: bytes, timeout: float = 5.0) -> bytes:
        async def loop() -> bytes:
            while marker not in self.buffer:
                chunk = await self.reader.read(65536)
                if not chunk:
                    break
                self.buffer += chunk
            idx = self.buffer.find(marker)
            if idx < 0:
                out, self.buffer = self.buffer, b""
                return out
            end = idx + len(marker)
            out, self.buffer = self.buffer[:end], self.buffer[end:]
            return out

        return await asyncio.wait_for(loop(), timeout)

    async def read_to_close(self, timeout: float = 5.0) -> bytes:
        async def loop() -> bytes:
            while True:
                chunk = await self.reader.read(65536)
                if not chunk:
                    return self.buffer
                self.buffer += chunk

        try:
            return await asyncio.wait_for(loop(), timeout)
        finally:
            self.buffer = b""

    async def starttls(self) -> None:
        self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        await self.read_until(b"<proceed")
        await self.writer.start_tls(insecure_context())

    def close(self) -> None:
        self.writer.close()
