"""The brokers events go to, behind one small interface: connect, send a batch, close.

A backend raises on any failure (the broker is down, refused the batch, took too long); the
module's sender then closes it, counts the batch as dropped and connects again after a
bounded backoff. The client libraries (redis-py, nats-py) are imported only when a backend is
configured, so the server runs without them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Sequence

#: one event: field -> value, all text (a Redis stream entry's shape; JSON for NATS)
Event = dict[str, str]


class Backend(Protocol):
    name: str

    async def connect(self) -> None: ...

    async def send(self, batch: Sequence[Event]) -> None: ...

    async def close(self) -> None: ...


class RedisStreams:
    """``XADD <stream> MAXLEN ~ <maxlen> * field value ...``, one pipeline per batch."""

    name = "redis"

    def __init__(self, url: str, stream: str, maxlen: int, timeout: float) -> None:
        self._url = url
        self._stream = stream
        self._maxlen = maxlen
        self._timeout = timeout
        self._client: Any = None

    async def connect(self) -> None:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(
            self._url, socket_connect_timeout=self._timeout, socket_timeout=self._timeout,
            retry_on_timeout=False)
        try:
            await client.ping()
        except BaseException:
            await client.aclose()
            raise
        self._client = client

    async def send(self, batch: Sequence[Event]) -> None:
        assert self._client is not None
        pipe = self._client.pipeline(transaction=False)
        for ev in batch:
            pipe.xadd(self._stream, ev, maxlen=self._maxlen, approximate=True)
        await pipe.execute()

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):  # a broker gone away: nothing to close
                await asyncio.wait_for(client.aclose(), self._timeout)


class NatsJetStream:
    """A JetStream publish (acknowledged by the stream) per event on
    ``<prefix>.<event type>``, the batch's publishes in flight together."""

    name = "nats"

    def __init__(self, url: str, prefix: str, timeout: float) -> None:
        self._url = url
        self._prefix = prefix
        self._timeout = timeout
        self._nc: Any = None
        self._js: Any = None

    async def connect(self) -> None:
        import nats

        # the module reconnects itself, with its own backoff: nats-py must not retry forever
        nc = await nats.connect(self._url, connect_timeout=self._timeout,
                                allow_reconnect=False, max_reconnect_attempts=0)
        self._nc = nc
        self._js = nc.jetstream(timeout=self._timeout)

    async def send(self, batch: Sequence[Event]) -> None:
        js = self._js
        assert js is not None
        prefix = self._prefix
        await asyncio.gather(*(js.publish(f"{prefix}.{ev['type']}",
                                          json.dumps(ev, separators=(",", ":")).encode())
                               for ev in batch))

    async def close(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.close(), self._timeout)
