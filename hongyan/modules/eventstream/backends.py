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
import marshal
import ssl
import struct
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Sequence

#: one event: field -> value, all text (a Redis stream entry's shape; JSON for NATS)
Event = dict[str, str]
#: a queued event before it is encoded: [type, time, ...] as each hook builds it, texts,
#: numbers and None only (it crosses a pipe to the sender as :mod:`marshal` data)
Item = list[Any]
#: a frame on the pipes between a server process and its sender: this length, then marshal
HEADER = struct.Struct(">I")


def frame(obj: Any) -> bytes:
    """``obj`` (texts, numbers, lists, dicts) as one frame for the sender's pipes."""
    data = marshal.dumps(obj)
    return HEADER.pack(len(data)) + data


class Backend(Protocol):
    """A broker. ``encode`` turns a queued item into what ``send`` takes (off the routing
    path, in the sender's task); ``send`` raises on any failure."""

    name: str

    async def connect(self) -> None: ...

    def encode(self, item: Item) -> Any: ...

    async def send(self, batch: Sequence[Any]) -> None: ...

    async def close(self) -> None: ...


def format_event(item: Item) -> Event:
    """A queued tuple as the event the brokers get (off the routing path)."""
    kind, t = item[0], item[1]
    ev: Event = {"type": kind, "time": f"{t:.6f}"}
    if kind == "message":
        _, _, sender, to, mtype, size, body = item
        ev.update({"from": sender, "to": to, "mtype": mtype, "size": str(size)})
        if body is not None:
            ev["body"] = body
    elif kind == "presence":
        ev.update({"jid": str(item[2]), "available": "1" if item[3] else "0", "show": item[4]})
    elif kind == "login":
        ev["jid"] = str(item[2])
    elif kind == "logout":
        ev.update({"jid": str(item[2]), "was_available": "1" if item[3] else "0"})
    else:
        _, _, action, room, nick, jid, size, body, codes = item
        ev.update({"action": action, "room": room, "nick": nick, "jid": jid})
        if action == "message":
            ev["size"] = str(size)
        if codes:
            ev["codes"] = ",".join(codes)
        if body is not None:
            ev["body"] = body
    return ev


def _json_str(text: str) -> str:
    """``text`` as a JSON string (JIDs seldom need escaping: checked first)."""
    if '"' in text or "\\" in text or not text.isprintable():
        return json.dumps(text)
    return f'"{text}"'


class RedisStreams:
    """``XADD <stream> MAXLEN ~ <maxlen> * field value ...``, a batch's commands written at
    once (pipelined) and their replies counted.

    It speaks RESP itself, over one asyncio connection: redis-py's pipeline spent ~22 µs of
    the event loop per XADD here (packing each command, parsing each reply), more than
    routing the message the event is about; this packs one in ~2 µs and reads a reply in
    ~1 µs. redis-py's URL parser reads ``redis_url`` (host, port, password, database;
    ``rediss://`` for TLS)."""

    name = "redis"

    def __init__(self, url: str, stream: str, maxlen: int, timeout: float) -> None:
        self._url = url
        self._timeout = timeout
        key = stream.encode()
        cap = str(maxlen).encode()
        #: every XADD's start, without the array length (6 + 2 per field)
        self._head = (b"$4\r\nXADD\r\n$%d\r\n%s\r\n$6\r\nMAXLEN\r\n$1\r\n~\r\n"
                      b"$%d\r\n%s\r\n$1\r\n*\r\n" % (len(key), key, len(cap), cap))
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._buf = b""

    async def connect(self) -> None:
        from redis.asyncio.connection import parse_url

        kw = parse_url(self._url)
        tls: ssl.SSLContext | None = None
        if self._url.startswith("rediss://"):
            tls = ssl.create_default_context()
        if "path" in kw:
            self._reader, self._writer = await asyncio.open_unix_connection(kw["path"])
        else:
            self._reader, self._writer = await asyncio.open_connection(
                kw.get("host", "127.0.0.1"), int(kw.get("port", 6379)), ssl=tls)
        self._buf = b""
        hello: list[list[str]] = []
        if kw.get("password"):
            hello.append(["AUTH", *([kw["username"]] if kw.get("username") else []),
                          kw["password"]])
        if int(kw.get("db", 0) or 0):
            hello.append(["SELECT", str(kw["db"])])
        hello.append(["PING"])
        self._writer.write(b"".join(_command(c) for c in hello))
        errors = await self._replies(len(hello))
        if errors:
            raise ConnectionError(f"redis refused the connection: {errors[0]}")

    def encode(self, item: Item) -> bytes:
        """One XADD command; a message event (the frequent one) packed in one step."""
        if item[0] == "message" and item[6] is None:
            _, t, sender, to, mtype, size, _ = item
            f = b"%.6f" % t
            s = sender.encode()
            r = to.encode()
            m = mtype.encode()
            z = b"%d" % size
            return (b"*18\r\n%s$4\r\ntype\r\n$7\r\nmessage\r\n$4\r\ntime\r\n$%d\r\n%s\r\n"
                    b"$4\r\nfrom\r\n$%d\r\n%s\r\n$2\r\nto\r\n$%d\r\n%s\r\n"
                    b"$5\r\nmtype\r\n$%d\r\n%s\r\n$4\r\nsize\r\n$%d\r\n%s\r\n"
                    % (self._head, len(f), f, len(s), s, len(r), r, len(m), m, len(z), z))
        ev = format_event(item)
        parts = [b"*%d\r\n" % (6 + 2 * len(ev)), self._head]
        for k, v in ev.items():
            kb = k.encode()
            vb = v.encode()
            parts.append(b"$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(kb), kb, len(vb), vb))
        return b"".join(parts)

    async def send(self, batch: Sequence[bytes]) -> None:
        writer = self._writer
        assert writer is not None
        writer.write(b"".join(batch))
        errors = await self._replies(len(batch))
        if errors:
            raise RuntimeError(f"redis refused {len(errors)} of {len(batch)}: {errors[0]}")

    async def _replies(self, n: int) -> list[str]:
        """Read ``n`` replies (simple strings, integers, bulk strings, errors; no arrays):
        the errors' texts."""
        reader = self._reader
        assert reader is not None
        buf, pos, errors = self._buf, 0, []
        while n:
            nl = buf.find(b"\r\n", pos)
            if nl >= 0:
                kind = buf[pos]
                if kind == 36:  # $: a bulk string (or -1: nil)
                    size = int(buf[pos + 1:nl])
                    end = nl + 2 + size + 2 if size >= 0 else nl + 2
                    if len(buf) >= end:
                        pos, n = end, n - 1
                        continue
                else:
                    if kind == 45:  # -: an error
                        errors.append(buf[pos + 1:nl].decode(errors="replace"))
                    elif kind not in (43, 58):  # neither + nor :
                        raise ConnectionError("redis sent an unexpected reply")
                    pos, n = nl + 2, n - 1
                    continue
            data = await reader.read(65536)
            if not data:
                raise ConnectionError("redis closed the connection")
            buf = buf[pos:] + data
            pos = 0
        self._buf = buf[pos:]
        return errors

    async def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):  # a broker gone away: nothing to close
                async with asyncio.timeout(self._timeout):  # (not wait_for: see _send_loop)
                    await writer.wait_closed()


def _command(args: list[str]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


class NatsJetStream:
    """Events on ``<prefix>.<event type>``, stored by the JetStream stream that binds those
    subjects. A batch is published on the connection without waiting, then its last event
    as a JetStream publish whose acknowledgement covers the batch: the server handles one
    connection's messages in order, so the stream has stored the others by then (the
    acknowledged publish of every event cost ~52 µs of the event loop per event here, with
    ``publish`` ~3 µs). No acknowledgement (no stream binds the subjects, the stream refused
    it, the server is gone) fails the batch."""

    name = "nats"

    def __init__(self, url: str, prefix: str, timeout: float) -> None:
        self._url = url
        self._prefix = prefix
        self._timeout = timeout
        self._nc: Any = None
        self._js: Any = None
        self._dumps = json.JSONEncoder(separators=(",", ":")).encode

    async def connect(self) -> None:
        import nats

        # the module reconnects itself, with its own backoff: nats-py must not retry forever
        nc = await nats.connect(self._url, connect_timeout=self._timeout,
                                allow_reconnect=False, max_reconnect_attempts=0)
        self._nc = nc
        self._js = nc.jetstream(timeout=self._timeout)

    def encode(self, item: Item) -> tuple[str, bytes]:
        """(subject, JSON); a message event (the frequent one) written in one step, with the
        same fields in the same order as :func:`format_event` gives."""
        kind = item[0]
        if kind == "message" and item[6] is None:
            _, t, sender, to, mtype, size, _ = item
            return (f"{self._prefix}.message",
                    f'{{"type":"message","time":"{t:.6f}","from":{_json_str(sender)},'
                    f'"to":{_json_str(to)},"mtype":{_json_str(mtype)},'
                    f'"size":"{size}"}}'.encode())
        return f"{self._prefix}.{kind}", self._dumps(format_event(item)).encode()

    async def send(self, batch: Sequence[tuple[str, bytes]]) -> None:
        nc, js = self._nc, self._js
        assert nc is not None and js is not None
        publish = nc.publish
        last = len(batch) - 1
        for i, (subject, data) in enumerate(batch):
            if i < last:
                await publish(subject, data)
            else:
                await js.publish(subject, data)

    async def close(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._timeout):  # (not wait_for: see _send_loop)
                    await nc.close()
