"""A raw XML-over-TCP peer for the bad-input tests: we send exact bytes and read what comes back."""

from __future__ import annotations

import asyncio
import base64
import ssl
from typing import TYPE_CHECKING

from tests.integration.clients import insecure_context

if TYPE_CHECKING:
    from tests.integration.conftest import Harness

PASSWORD = "secret-password"  # the harness's default password

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

    async def more(self) -> bytes:
        """The next bytes that arrive (b"" once the connection closed)."""
        return await self.reader.read(65536)

    async def read_until(self, marker: bytes, timeout: float = 5.0) -> bytes:
        async def loop() -> bytes:
            while marker not in self.buffer:
                chunk = await self.more()
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

    async def read_element(self, marker: bytes, timeout: float = 5.0) -> bytes:
        """Read up to and including the end of the top-level element that contains
        ``marker``: ``/>`` when it closes itself, else its end tag."""
        head = await self.read_until(marker, timeout)
        head += await self.read_until(b">", timeout)
        if head.endswith(b"/>"):
            return head
        start = head.rfind(b"<", 0, head.rfind(marker))
        name = head[start + 1:].split(None, 1)[0]
        return head + await self.read_until(b"</" + name + b">", timeout)

    async def read_to_close(self, timeout: float = 5.0) -> bytes:
        async def loop() -> bytes:
            while True:
                chunk = await self.more()
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


SASL = "urn:ietf:params:xml:ns:xmpp-sasl"


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


async def tls_stream(harness: Harness) -> RawStream:
    """A raw stream after STARTTLS, before the restarted stream's header."""
    s = await RawStream.open(harness.port)
    await s.header()
    await s.starttls()
    return s


async def authed_stream(harness: Harness, user: str) -> RawStream:
    """A raw stream logged in as ``user`` (created here) with resource ``raw``."""
    await harness.user(user)
    s = await tls_stream(harness)
    await s.header()
    s.send(f"<auth xmlns='{SASL}' mechanism='PLAIN'>{b64(chr(0) + user + chr(0) + PASSWORD)}"
           "</auth>")
    await s.read_until(b"success>")
    await s.header()
    s.send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
           "<resource>raw</resource></bind></iq>")
    await s.read_until(b"</iq>")
    return s
