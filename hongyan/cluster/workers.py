"""Several worker processes in one node (config ``server.workers``).

One event loop is one core. To use more cores a node runs several worker processes that share
the listening sockets (the kernel hands each new connection to one of them) and talk over Unix
sockets. The rule that keeps the design correct: **every account has a home worker**
(``crc32(username) % workers``), and all of an account's sessions live there. A connection
accepted by another worker is moved to the home right after SASL succeeds:

* plain TCP: the socket itself is passed (``SCM_RIGHTS``); the accepting worker keeps nothing;
* TLS: the TLS state cannot move between processes, so the accepting worker keeps the TLS
  connection and relays its bytes over a socket pair whose other end the home adopts.
* WebSocket (RFC 7395): the same as TLS, for the same reason (aiohttp holds the WebSocket's
  state): the accepting worker keeps the connection and relays its messages, each
  length-prefixed, over a socket pair; the home's session sees a WebSocket stream.
* BOSH (XEP-0206): the same as WebSocket; the BOSH session (its rid window, its held
  requests) stays in the worker that created it, which its sid names (``<random>.<index>``),
  and an HTTP request of it that another worker accepted is passed there over the links
  (notices ``bosh``/``bosh-reply``, see ``hongyan.server.bosh``).

HTTP requests are served by whichever worker accepted their connection (the listening sockets
are shared like c2s's), but for a BOSH session's, which go to the worker that has it.

So everything about one user — its sessions and resource conflicts, XEP-0198 resumption,
rosters, blocklists, carbons, offline storage, its archive writes — is handled by one process,
exactly as with a single worker. What crosses workers is what would cross servers: a stanza for
another user is handed to that user's home (``R`` frame) after the sender's side ran, and the home
runs the recipient's side (the server-to-server model of RFC 6120 inside one node). A service
(MUC, pubsub) lives on the home of its domain. Peers also exchange small notices (``N``: cache
invalidations, a session that ended; ``Q``, answered by ``A`` once handled: a change every
worker must apply before the sender goes on, such as a blocklist) and direct deliveries to a
session (``D``; ``E``: one room message for several occupants homed on the same worker).

Links are ordered byte streams, one per direction and pair, so a sender's stanzas to a
recipient keep their order. Frames are ``[4-byte length][kind][body]``; a ``R`` frame's body is
``sender\\0to\\0stanza`` with the stanza serialized inside a ``jabber:client`` stream that the
receiving side parses with one long-lived parser per link. A message travels in a ``M`` frame
(the same, with its type), after the sender's worker ran the inbound handlers every worker can
run (the blocklist check, the archive: see ``hooks.anywhere``); when no other handler needs to
see it on the recipient's side (no carbons in use there) the home writes its bytes to the
recipient's sessions without parsing them again.
"""

from __future__ import annotations

import array
import asyncio
import base64
import collections
import itertools
import json
import logging
import os
import socket
import zlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from hongyan.server.c2s import C2SSession, Host, Transport
from hongyan.server.component import ComponentSession
from hongyan.server.irc import IrcSession
from hongyan.server.sasl2 import Outcome, outcome_from_json, outcome_to_json
from hongyan.server.session import Session
from hongyan.server.settle import retrieved
from hongyan.transport.bosh import BoshRelay, BoshTransport
from hongyan.transport.relay import Relay
from hongyan.transport.tcp import StreamTransport
from hongyan.transport.websocket import LinkTransport, WebSocketRelay, WebSocketTransport
from hongyan.transport.wsfront import LeanWebSocket
from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element
from hongyan.xmpp.jid import JID
from hongyan.xmpp.parser import StreamParser

if TYPE_CHECKING:
    from hongyan.transport.tcp import Connections, TLSConfig

log = logging.getLogger("hongyan.workers")


class Node(Host, Protocol):
    """What the workers use of their process's node (besides what its sessions use)."""

    #: the client connections this process holds open
    connections: Connections

    @property
    def tls_config(self) -> TLSConfig | None: ...
    def adopted_session(self, transport: Transport, username: str, websocket: bool = False,
                        sasl2: Outcome | None = None) -> C2SSession: ...
    def adopted_component(self, transport: StreamTransport, received: bytes
                          ) -> ComponentSession: ...
    def adopted_websocket(self, username: str, peer_host: str, secure: bool
                          ) -> asyncio.Protocol | None: ...
    def adopted_irc(self, transport: StreamTransport, state: dict[str, Any]) -> IrcSession: ...

#: how long a starting worker waits for its peers' sockets
CONNECT_TIMEOUT = 30.0
#: the notice topic of :meth:`Workers.unanswered`'s pings (answered, nothing else done)
PING = "ping"
#: how long notify_all waits for every peer to answer
ACK_TIMEOUT = 10.0
_LINK_OPEN = ("<stream:stream xmlns='jabber:client' "
              "xmlns:stream='" + NS.STREAM + "'>").encode()
NoticeHandler = Callable[[bytes], "Awaitable[object] | None"]


def _both(a: asyncio.Future[None], b: asyncio.Future[None]) -> asyncio.Future[None]:
    """A future done when ``a`` and ``b`` are (failed when either failed)."""
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    done.add_done_callback(retrieved)

    def one(_f: asyncio.Future[None]) -> None:
        if done.done():
            return
        for f in (a, b):
            if f.done() and (f.cancelled() or f.exception() is not None):
                done.set_exception(TimeoutError("a peer worker did not answer"))
                return
        if a.done() and b.done():
            done.set_result(None)

    a.add_done_callback(one)
    b.add_done_callback(one)
    return done


def home_of(key: str, count: int) -> int:
    """The worker that owns ``key`` (a username, or a service's domain)."""
    return zlib.crc32(key.encode()) % count


def _jid(text: str) -> JID:
    """A JID a peer sent (it was prepared where the stanza entered the node)."""
    head, _, resource = text.partition("/")
    local, at, domain = head.partition("@")
    if not at:
        local, domain = "", head
    return JID(local, domain, resource)


class Peer:
    """The link to another worker, for sending. What is sent during one input batch goes out in
    one write at its end (the node flushes it with the sessions)."""

    __slots__ = ("_node", "_out", "_transport", "index")

    def __init__(self, node: Node, index: int, transport: asyncio.Transport) -> None:
        self._node = node
        self.index = index
        self._transport = transport
        self._out: list[bytes] | None = None

    def send(self, kind: bytes, body: bytes) -> None:
        frame = (len(body) + 1).to_bytes(4, "big") + kind + body
        out = self._out
        if out is None:
            self._out = [frame]
            self._node.schedule_flush(self)
        else:
            out.append(frame)

    def flush(self) -> None:
        out = self._out
        if out is not None:
            self._out = None
            self._transport.write(out[0] if len(out) == 1 else b"".join(out))


class _Outbound(asyncio.Protocol):
    def __init__(self, workers: Workers, index: int) -> None:
        self._workers = workers
        self._index = index

    def connection_lost(self, exc: Exception | None) -> None:
        self._workers.peer_lost(self._index)


class _Inbound(asyncio.Protocol):
    """Frames from one peer, handled in order: a frame whose handling must wait (offline
    storage) holds the ones after it, as a client's session does."""

    def __init__(self, workers: Workers) -> None:
        self._workers = workers
        self._node = workers.node
        self._buf = b""
        self._parser = StreamParser(max_stanza_size=1 << 26, max_depth=1024)
        self._parser.feed(_LINK_OPEN)
        self._pending: collections.deque[bytes] | None = None

    def data_received(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        off, end = 0, len(buf)
        node = self._node
        node.in_batch = True
        try:
            while end - off >= 4:
                n = int.from_bytes(buf[off:off + 4], "big")
                if end - off - 4 < n:
                    break
                frame = buf[off + 4:off + 4 + n]
                off += 4 + n
                if self._pending is not None:
                    self._pending.append(frame)
                    continue
                pending = self._handle(frame)
                if pending is not None:
                    self._pending = collections.deque()
                    node.spawn(self._drain(pending))
        finally:
            node.end_batch()
        self._buf = buf[off:]

    async def _drain(self, first: Awaitable[object]) -> None:
        pending = self._pending
        assert pending is not None
        nxt: Awaitable[object] | None = first
        try:
            while True:
                if nxt is not None:
                    try:
                        await nxt
                    except Exception:  # one stanza's failure must not lose the ones after it
                        log.exception("handling a frame from a peer worker failed")
                if not pending:
                    break
                nxt = self._handle(pending.popleft())
        finally:
            self._pending = None

    def _handle(self, frame: bytes) -> Awaitable[object] | None:
        kind = frame[:1]
        try:
            if kind == b"R":
                sender, to, xml = frame[1:].split(b"\0", 2)
                events = self._parser.feed(xml)
                el = events[0]
                assert isinstance(el, Element) and len(events) == 1
                return self._node.router.route(el, _jid(sender.decode()), _jid(to.decode()))
            if kind == b"M":
                sender, to, mtype, xml = frame[1:].split(b"\0", 3)
                router = self._node.router
                to_text = to.decode()
                if router.deliver_serialized(xml, to_text, mtype):
                    return None
                events = self._parser.feed(xml)
                el = events[0]
                assert isinstance(el, Element) and len(events) == 1
                return router.message(el, _jid(sender.decode()), _jid(to_text), True)
            if kind == b"D":
                full, data = frame[1:].split(b"\0", 1)
                self._workers.deliver_here(full.decode(), data)
                return None
            if kind == b"E":
                self._workers.multicast_here(frame[1:])
                return None
            if kind == b"N":
                topic, body = frame[1:].split(b"\0", 1)
                return self._workers.notice(topic.decode(), body)
            if kind == b"Q":
                origin, token, topic, body = frame[1:].split(b"\0", 3)
                if topic == b"settle":  # every frame before it was handled: answer now
                    self._workers.answer(int(origin), token)
                    return None
                return self._workers.acknowledge(int(origin), token, topic.decode(), body)
            if kind == b"A":
                self._workers.acknowledged(frame[1:])
                return None
        except Exception:
            log.exception("bad frame from a peer worker: %r", frame[:200])
            return None
        log.error("unknown frame kind from a peer worker: %r", kind)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._parser.close()


class Workers:
    """This process's place among the node's workers: the links to its peers, who is home
    where, and moving a freshly authenticated connection to its home."""

    def __init__(self, node: Node, index: int, count: int, run_dir: str) -> None:
        self.node = node
        self.index = index
        self.count = count
        self._run = Path(run_dir)
        self.peers: dict[int, Peer] = {}
        self._homes: dict[str, int] = {}
        self._handlers: dict[str, NoticeHandler] = {}
        #: notify_all's notices still waiting for answers: token -> (done, peers yet to answer)
        self._acks: dict[int, tuple[asyncio.Future[None], set[int]]] = {}
        self._ack_tokens = itertools.count(1)
        #: peers handed stanzas since the last settle(), and the last settle's future
        self._handed: set[int] = set()
        self._settling: asyncio.Future[None] | None = None
        self._server: asyncio.AbstractServer | None = None
        self._fd_in: socket.socket | None = None
        self._fd_out: dict[int, socket.socket] = {}
        self._fd_queue: dict[int, collections.deque[tuple[bytes, int]]] = {}
        self._stopping = False
        #: peers whose link went down
        self._lost: set[int] = set()
        self.on_peer_lost: Callable[[int], None] | None = None
        self._handlers[PING] = lambda _body: None

    # -- where things live ----------------------------------------------------------------------
    def home(self, username: str) -> int:
        k = self._homes.get(username)
        if k is None:
            if len(self._homes) >= 100_000:
                self._homes.clear()
            k = self._homes[username] = home_of(username, self.count)
        return k

    def service_home(self, domain: str) -> int:
        return home_of("service:" + domain, self.count)

    # -- start and stop -------------------------------------------------------------------------
    def _path(self, index: int, what: str) -> str:
        return str(self._run / f"w{index}.{what}")

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(lambda: _Inbound(self),
                                                     self._path(self.index, "link"))
        fd_in = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        fd_in.bind(self._path(self.index, "fd"))
        fd_in.setblocking(False)
        self._fd_in = fd_in
        loop.add_reader(fd_in.fileno(), self._fds_ready)
        deadline = loop.time() + CONNECT_TIMEOUT
        for k in range(self.count):
            if k == self.index:
                continue
            while True:
                try:
                    transport, _ = await loop.create_unix_connection(
                        lambda k=k: _Outbound(self, k), self._path(k, "link"))  # type: ignore[misc]
                    out = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                    out.connect(self._path(k, "fd"))
                    out.setblocking(False)
                    break
                except (FileNotFoundError, ConnectionRefusedError):
                    if loop.time() > deadline:
                        raise RuntimeError(f"worker {k} did not come up within "
                                           f"{CONNECT_TIMEOUT:.0f} s") from None
                    await asyncio.sleep(0.05)
            self.peers[k] = Peer(self.node, k, transport)
            self._fd_out[k] = out
            self._fd_queue[k] = collections.deque()

    async def stop(self) -> None:
        self._stopping = True
        loop = asyncio.get_running_loop()
        for peer in self.peers.values():
            peer.flush()
        if self._fd_in is not None:
            loop.remove_reader(self._fd_in.fileno())
            self._fd_in.close()
        for k, out in self._fd_out.items():
            for _, fd in self._fd_queue[k]:
                os.close(fd)
            loop.remove_writer(out.fileno())
            out.close()
        if self._server is not None:
            self._server.close()

    def peer_lost(self, index: int) -> None:
        self._lost.add(index)
        if self._stopping:
            return
        log.error("lost the link to worker %d", index)
        if self.on_peer_lost is not None:
            self.on_peer_lost(index)

    # -- frames ---------------------------------------------------------------------------------
    def forward(self, el: Element, sender: JID, to: JID, home: int,
                wire: bytes | None = None) -> bool:
        """Hand a stanza to worker ``home``, which routes it as if it had arrived there; False
        (nothing sent) when ``home`` is this worker. A message's type travels beside it, so
        that the home can often deliver its bytes as they are, without parsing them again
        (``wire``: the message already serialized as on a client stream, if it was)."""
        if home == self.index:
            return False
        self._handed.add(home)
        if el.name == "message":
            self.peers[home].send(b"M", b"%s\0%s\0%s\0%s" % (
                sender.text.encode(), to.text.encode(), el.attrs.get("type", "normal").encode(),
                el.to_bytes(NS.CLIENT) if wire is None else wire))
        else:
            self.peers[home].send(b"R", b"%s\0%s\0%s" % (
                sender.text.encode(), to.text.encode(), el.to_bytes(NS.CLIENT)))
        return True

    def deliver(self, index: int, full: str, data: bytes) -> None:
        """Write a serialized stanza to the session ``full`` on worker ``index``."""
        self._handed.add(index)
        self.peers[index].send(b"D", full.encode() + b"\0" + data)

    def multicast(self, index: int, head: bytes, tail: bytes,
                  recipients: list[tuple[str, bytes]]) -> None:
        """One frame (``E``) for a room message's copies to sessions homed on worker
        ``index``: each copy is ``head + esc + tail`` (copies differ only in the recipient's
        JID, ``esc``), so the message crosses once and the home makes the copies, instead of
        one ``D`` frame per occupant resource. Neither XML nor a JID holds NUL or U+0001,
        which separate the parts."""
        self._handed.add(index)
        parts = [head, tail]
        for full, esc in recipients:
            parts.append(full.encode() + b"\1" + esc)
        self.peers[index].send(b"E", b"\0".join(parts))

    def multicast_here(self, body: bytes) -> None:
        head, tail, *recipients = body.split(b"\0")
        for r in recipients:
            full, _, esc = r.partition(b"\1")
            self.deliver_here(full.decode(), head + esc + tail)

    def deliver_here(self, full: str, data: bytes) -> None:
        bare, _, resource = full.partition("/")
        s = self.node.sessions.get_str(bare, resource)
        if s is not None:
            s.send(data)

    def notify(self, topic: str, body: bytes = b"", index: int | None = None) -> None:
        """A notice to one peer or (``index`` None) to all of them."""
        payload = topic.encode() + b"\0" + body
        for k, peer in self.peers.items():
            if index is None or k == index:
                peer.send(b"N", payload)

    async def notify_all(self, topic: str, body: bytes = b"") -> None:
        """A notice to every peer that returns once each has handled it (``Q`` frames, answered
        by ``A``): what this worker does next, such as answering the IQ that changed a
        blocklist, happens after every worker applies the change. A peer that does not answer
        within ACK_TIMEOUT is logged and not waited for."""
        if not self.peers:
            return
        token = next(self._ack_tokens)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiting = set(self.peers)
        self._acks[token] = (fut, waiting)
        payload = b"%d\0%d\0%s\0%s" % (self.index, token, topic.encode(), body)
        for peer in self.peers.values():
            peer.send(b"Q", payload)
        try:
            await asyncio.wait_for(fut, ACK_TIMEOUT)
        except TimeoutError:
            log.warning("workers %s did not acknowledge the notice %r within %.0f s",
                        sorted(waiting), topic, ACK_TIMEOUT)
        finally:
            self._acks.pop(token, None)

    async def unanswered(self, timeout: float) -> list[int]:
        """The workers that are not up, as far as this one can tell: those whose link went
        down, and those that do not answer a ping (a ``Q`` frame, answered by ``A`` when the
        peer's loop gets to it) within ``timeout`` seconds: a hung or stopped process."""
        missing = {k for k in range(self.count)
                   if k != self.index and (k in self._lost or k not in self.peers)}
        live = [k for k in self.peers if k not in missing]
        if not live:
            return sorted(missing)
        token = next(self._ack_tokens)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiting = set(live)
        self._acks[token] = (fut, waiting)
        payload = b"%d\0%d\0%s\0" % (self.index, token, PING.encode())
        for k in live:
            self.peers[k].send(b"Q", payload)
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            missing |= waiting
        finally:
            self._acks.pop(token, None)
        return sorted(missing)

    def settle(self) -> asyncio.Future[None] | None:
        """Done once every peer this worker handed stanzas to before the call has handled
        them: a ``Q`` frame on each such link, answered by ``A`` as soon as the frames before
        it were handled (links are ordered, and each handles its frames in order, awaiting
        offline storage). A call with nothing handed over since the last one returns the
        last one's future while it is pending. Fails after ACK_TIMEOUT (a peer that does not
        answer: what waits must not take the stanzas for handled)."""
        prev = self._settling
        if prev is not None and prev.done():
            prev = self._settling = None
        handed = self._handed
        if not handed:
            return prev
        self._handed = set()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        fut.add_done_callback(retrieved)
        token = next(self._ack_tokens)
        waiting = {k for k in handed if k in self.peers}
        if not waiting:
            return prev
        self._acks[token] = (fut, waiting)
        payload = b"%d\0%d\0settle\0" % (self.index, token)
        for k in waiting:
            self.peers[k].send(b"Q", payload)

        def expire() -> None:
            if self._acks.pop(token, None) is not None and not fut.done():
                log.warning("workers %s did not settle within %.0f s", sorted(waiting),
                            ACK_TIMEOUT)
                fut.set_exception(TimeoutError("a peer worker did not answer"))

        timer = loop.call_later(ACK_TIMEOUT, expire)
        fut.add_done_callback(lambda _f: timer.cancel())
        if prev is not None:  # (frames to other peers may still be on their way)
            fut = _both(prev, fut)
        self._settling = fut
        return fut

    def answer(self, origin: int, token: bytes) -> None:
        """Answer a ``Q`` frame of worker ``origin``."""
        peer = self.peers.get(origin)
        if peer is not None:
            peer.send(b"A", b"%d\0%s" % (self.index, token))

    async def acknowledge(self, origin: int, token: bytes, topic: str, body: bytes) -> None:
        """Handle a notice from :meth:`notify_all` on worker ``origin``, then answer it (also
        when the handler failed: the failure is logged, and the sender must not hang)."""
        try:
            pending = self.notice(topic, body)
            if pending is not None:
                await pending
        finally:
            peer = self.peers.get(origin)
            if peer is not None:
                peer.send(b"A", b"%d\0%s" % (self.index, token))

    def acknowledged(self, body: bytes) -> None:
        index, _, token = body.partition(b"\0")
        entry = self._acks.get(int(token))
        if entry is not None:
            fut, waiting = entry
            waiting.discard(int(index))
            if not waiting and not fut.done():
                self._acks.pop(int(token), None)
                fut.set_result(None)

    def on(self, topic: str, handler: NoticeHandler) -> Callable[[], None]:
        """Handle notices on ``topic``; returns what removes the handler."""
        self._handlers[topic] = handler

        def off() -> None:
            if self._handlers.get(topic) is handler:
                del self._handlers[topic]
        return off

    def notice(self, topic: str, body: bytes) -> Awaitable[object] | None:
        handler = self._handlers.get(topic)
        if handler is None:
            log.warning("no handler for the notice %r", topic)
            return None
        return handler(body)

    # -- moving a connection to its home --------------------------------------------------------
    async def hand_over(self, session: Session, index: int, success: bytes,
                        sasl2: Outcome | None = None) -> None:
        """``session`` just authenticated as an account homed on worker ``index``: write SASL
        success and move the connection there; this worker keeps at most a relay (of a TLS
        connection's bytes, or of a WebSocket's messages). After SASL2 (``sasl2``) nothing is
        written here: the home binds or resumes and answers ``<success/>`` itself."""
        assert isinstance(session, C2SSession)
        t = session.transport
        assert isinstance(t, StreamTransport | WebSocketTransport | BoshTransport | LeanWebSocket)
        t.pause_reading()
        if success:
            session.send(success, raw=True)
        session.flush()
        meta: dict[str, Any] = {"u": session.username, "p": t.peer_host, "s": t.secure}
        if sasl2 is not None:
            meta["x"] = outcome_to_json(sasl2)
        if isinstance(t, WebSocketTransport) or (isinstance(t, LeanWebSocket) and (
                not t.movable or sasl2 is not None)):
            # aiohttp's state, or our TLS, stays with the socket; a lean WebSocket after
            # SASL2 is relayed too (its home finishes the login on the relayed stream)
            meta["w"] = True
            await self._relay(session, t, WebSocketRelay(t), index, meta)
            return
        if isinstance(t, BoshTransport):  # (the same: its BOSH session stays here)
            meta["w"] = True
            await self._relay(session, t, BoshRelay(t), index, meta)
            return
        raw = t.raw
        if raw is None:
            return
        if isinstance(t, LeanWebSocket):
            meta["l"] = True  # a plain lean WebSocket moves like a plain TCP socket
        if isinstance(t, LeanWebSocket) or not t.secure:
            # the socket itself moves: wait until SASL success has left this process
            for _ in range(2000):
                if raw.get_write_buffer_size() == 0:
                    break
                await asyncio.sleep(0.001)
            sock = raw.get_extra_info("socket")
            fd = os.dup(sock.fileno())
            session.abandon()
            t.detach()
            self._send_fd(index, json.dumps(meta).encode(), fd)
            return
        await self._relay(session, t, Relay(t), index, meta)

    async def _relay(self, session: C2SSession,
                     client: StreamTransport | WebSocketTransport | BoshTransport | LeanWebSocket,
                     relay: Relay, index: int, meta: dict[str, Any]) -> None:
        """Keep the client's connection here and relay it to worker ``index`` over a socket
        pair whose other end goes there."""
        here, there = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self._send_fd(index, json.dumps(meta).encode(), there.detach())
        session.abandon()
        client.session = relay.client_side
        await asyncio.get_running_loop().connect_accepted_socket(lambda: relay, here)
        client.resume_reading()

    async def hand_over_irc(self, session: Session, index: int, state: dict[str, Any]
                            ) -> None:
        """An IRC connection logged in for an account homed on worker ``index``: it stays
        here (its TLS too) and its bytes are relayed to the home, which makes the session
        again from ``state`` (``IrcSession.adopted``)."""
        t = session.transport
        assert isinstance(t, StreamTransport)
        t.pause_reading()
        session.flush()
        here, there = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self._send_fd(index, json.dumps({"irc": state}).encode(), there.detach())
        abandon = getattr(session, "abandon", None)
        if abandon is not None:
            abandon()
        relay = Relay(t)
        t.session = relay.client_side
        await asyncio.get_running_loop().connect_accepted_socket(lambda: relay, here)
        t.resume_reading()

    def pass_stream(self, session: Session, index: int, received: bytes) -> None:
        """Move a plain TCP connection nothing was written to yet (an external component's,
        whose stream header named a domain homed on worker ``index``) with the bytes read
        from it: the home reads those first, as if they had just arrived there."""
        st: StreamTransport = session.transport  # type: ignore[assignment]
        raw = st.raw
        if raw is None:
            return
        st.pause_reading()
        fd = os.dup(raw.get_extra_info("socket").fileno())
        st.detach()
        meta = {"c": base64.b64encode(received).decode(), "p": st.peer_host}
        self._send_fd(index, json.dumps(meta).encode(), fd)

    def _send_fd(self, index: int, meta: bytes, fd: int) -> None:
        queue = self._fd_queue[index]
        queue.append((meta, fd))
        if len(queue) == 1:
            self._send_fds(index)

    def _send_fds(self, index: int) -> None:
        queue = self._fd_queue[index]
        out = self._fd_out[index]
        loop = asyncio.get_running_loop()
        while queue:
            meta, fd = queue[0]
            try:
                out.sendmsg([meta], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                      array.array("i", [fd]))])
            except BlockingIOError:
                loop.add_writer(out.fileno(), self._send_fds, index)
                return
            except OSError:
                log.exception("could not hand a connection to worker %d", index)
            queue.popleft()
            os.close(fd)
        loop.remove_writer(out.fileno())

    def _fds_ready(self) -> None:
        assert self._fd_in is not None
        while True:
            try:
                msg, fds, _, _ = socket.recv_fds(self._fd_in, 65536, 4)
            except BlockingIOError:
                return
            if not fds:
                return
            try:
                meta = json.loads(msg)
                self._adopt(meta, fds[0])
            except Exception:
                log.exception("could not adopt a connection")
            for fd in fds[1:]:
                os.close(fd)

    def _adopt(self, meta: dict[str, Any], fd: int) -> None:
        sock = socket.socket(fileno=fd)
        sock.setblocking(False)
        node = self.node
        if "c" in meta:  # an external component's stream, for its home (pass_stream)
            received, host = base64.b64decode(meta["c"]), str(meta["p"])

            def component(transport: StreamTransport) -> ComponentSession:
                transport.peer_host = host
                return node.adopted_component(transport, received)

            node.spawn(asyncio.get_running_loop().connect_accepted_socket(
                lambda: StreamTransport(component, None, False), sock))
            return
        if "irc" in meta:  # an IRC connection relayed by the worker that keeps it
            state = meta["irc"]

            def irc(transport: StreamTransport) -> IrcSession:
                transport.peer_host = str(state["p"])
                return node.adopted_irc(transport, state)

            node.spawn(asyncio.get_running_loop().connect_accepted_socket(
                lambda: StreamTransport(irc, None, bool(state["s"])), sock))
            return
        username, peer, secure = str(meta["u"]), str(meta["p"]), bool(meta["s"])
        sasl2 = outcome_from_json(meta["x"]) if "x" in meta else None
        if meta.get("l"):  # a plain lean WebSocket's socket itself (its frames start clean)
            ws = node.adopted_websocket(username, peer, secure)
            if ws is None:
                sock.close()
                return
            node.spawn(asyncio.get_running_loop().connect_accepted_socket(lambda: ws, sock))
            return
        if meta.get("w"):  # a WebSocket's messages, relayed by the worker that keeps it
            def ws_factory(transport: StreamTransport) -> C2SSession:
                transport.peer_host = peer
                return node.adopted_session(transport, username, True, sasl2)

            node.spawn(asyncio.get_running_loop().connect_accepted_socket(
                lambda: LinkTransport(ws_factory, secure), sock))
            return

        def factory(transport: StreamTransport) -> C2SSession:
            transport.peer_host = peer
            return node.adopted_session(transport, username, sasl2=sasl2)

        # a plain TCP socket moved here (counted here now); a TLS connection's relay is
        # counted where the connection is
        conns = None if secure else node.connections
        node.spawn(asyncio.get_running_loop().connect_accepted_socket(
            lambda: StreamTransport(factory, node.tls_config, secure, conns), sock))


__all__ = ["Peer", "Workers", "home_of"]
