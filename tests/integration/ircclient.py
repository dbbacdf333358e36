"""A raw IRC client on an asyncio socket: lines out, lines in, waits bounded."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import ssl

TIMEOUT = 10.0


class IrcClient:
    def __init__(self) -> None:
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        #: every line received, in order
        self.seen: list[str] = []

    async def connect(self, port: int, tls: bool = False) -> None:
        ctx = None
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        self.reader, self.writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=ctx, limit=1 << 20), TIMEOUT)

    def send(self, *lines: str) -> None:
        assert self.writer is not None
        for line in lines:
            self.writer.write(line.encode() + b"\r\n")

    def send_raw(self, data: bytes) -> None:
        assert self.writer is not None
        self.writer.write(data)

    async def line(self, timeout: float = TIMEOUT) -> str:
        assert self.reader is not None
        data = await asyncio.wait_for(self.reader.readline(), timeout)
        if not data:
            raise ConnectionError("the server closed the connection")
        text = data.decode("utf-8", "replace").rstrip("\r\n")
        self.seen.append(text)
        return text

    async def expect(self, pattern: str, timeout: float = TIMEOUT) -> re.Match[str]:
        """The next line that ``pattern`` (a regular expression) finds something in; the
        lines before it are skipped."""
        async def find() -> re.Match[str]:
            while True:
                found = re.search(pattern, await self.line(timeout))
                if found:
                    return found
        try:
            return await asyncio.wait_for(find(), timeout)
        except TimeoutError:
            raise AssertionError(f"no line matching {pattern!r}; the last ones: "
                                 f"{self.seen[-15:]!r}") from None

    async def closed(self, timeout: float = TIMEOUT) -> list[str]:
        """Read until the server closes the connection; the lines read."""
        out: list[str] = []
        async def drain() -> None:
            while True:
                try:
                    out.append(await self.line(timeout))
                except ConnectionError:
                    return
        await asyncio.wait_for(drain(), timeout)
        return out

    async def login_sasl(self, port: int, user: str, password: str, tls: bool = False,
                         caps: str = "") -> None:
        """Log in with SASL PLAIN, asking for server-time, message-tags and ``caps``."""
        await self.connect(port, tls)
        self.send("CAP LS 302", f"NICK {user}", f"USER {user} 0 * :{user}")
        await self.expect(r" CAP \* LS ")
        self.send(f"CAP REQ :sasl server-time message-tags {caps}".rstrip())
        await self.expect(r" CAP \S+ ACK ")
        self.send("AUTHENTICATE PLAIN")
        await self.expect(r"^AUTHENTICATE \+")
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        self.send(f"AUTHENTICATE {token}")
        await self.expect(r" 903 ")
        self.send("CAP END")
        await self.expect(r" 001 ")
        await self.expect(r" 422 ")

    async def login_pass(self, port: int, user: str, password: str, tls: bool = False) -> None:
        await self.connect(port, tls)
        self.send(f"PASS {user}:{password}", f"NICK {user}", f"USER {user} 0 * :{user}")
        await self.expect(r" 001 ")
        await self.expect(r" 422 ")

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
                await asyncio.wait_for(self.writer.wait_closed(), 2)
            self.writer = None
