"""XMPP over BOSH (XEP-0206): the transport between a BOSH session (the sans-I/O
:class:`~hongyan.xmpp.bosh.BoshSession`) and a client session, and the relay that carries such
a session's stream to the account's home worker.

XEP-0206's framing is close to RFC 7395's: no stream header per restart (``xmpp:restart``
instead), whole elements, each declaring its namespace. So the client session under a
:class:`BoshTransport` runs on the WebSocket profile (``Node.ws_streams``): the transport
turns the session's creation and each restart into an ``<open/>``, the client's terminate into
a ``<close/>`` and every payload into one message; what the session writes it cuts into
elements (:func:`~hongyan.xmpp.stream.websocket_messages`), drops the ``<open/>`` answers
(the BOSH session's attributes say what they would), and gives the rest to the BOSH session
to answer requests with; ``<close/>`` (after a stream error: ``remote-stream-error`` with the
error) ends the BOSH session. Everything above the transport (SASL, bind, SM, CSI, carbons,
MAM, MUC, push) is the same as over TCP and WebSocket.

With several workers a BOSH session stays in the process that created it (its ``sid`` says
which) and, once the client authenticated as an account homed elsewhere, its messages travel
to the home as a WebSocket's do (:class:`BoshRelay` here, ``LinkTransport`` there).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from hongyan.transport.relay import Relay
from hongyan.transport.websocket import LinkReader, link_frames
from hongyan.xmpp import ns as NS
from hongyan.xmpp.bosh import Answer, Body, BoshSession, Limits
from hongyan.xmpp.element import escape_attr
from hongyan.xmpp.stream import websocket_messages

if TYPE_CHECKING:
    from hongyan.server.clock import Clock, Handle

#: how long a client's terminate waits for the session to end its stream, before the
#: connection is taken as lost
TERMINATE_GRACE = 5.0
_CLOSE = f"<close xmlns='{NS.FRAMING}'/>".encode()


class Session(Protocol):
    """What the transport drives (a client session, or the relay to its home)."""

    def data_received(self, data: bytes) -> None: ...
    def connection_lost(self) -> None: ...


class BoshTransport:
    """One client's BOSH session as its XMPP session sees it (``c2s.Transport``), and the
    BOSH session's :class:`~hongyan.xmpp.bosh.Owner`."""

    __slots__ = ("_cb", "_clock", "_closed", "_due", "_ended_cb", "_grace", "_lang", "_queue",
                 "_terminating", "_timer", "_to", "core", "peer_host", "secure", "session")

    #: TLS is HTTPS's, never STARTTLS
    can_start_tls = False

    def __init__(self, sid: str, first: Body, limits: Limits, clock: Clock, *, domain: str,
                 peer_host: str, secure: bool, channel_binding: tuple[str, bytes] | None,
                 ended: Callable[[BoshTransport], None]) -> None:
        self.peer_host = peer_host
        self.secure = secure
        self._cb = channel_binding
        self._clock = clock
        self._ended_cb = ended
        self._to = first.attrs.get("to") or domain
        self._lang = first.attrs.get(f"{{{NS.XML}}}lang", "en")
        self._closed = False
        self._terminating = False
        self._queue: list[bytes] | None = None  # set while reading is paused
        self._timer: Handle | None = None
        self._due: float | None = None
        self._grace: Handle | None = None
        self.session: Session | None = None
        self.core = BoshSession(sid, first, limits, self, clock.monotonic, domain=domain,
                                secure=secure)

    # -- requests (from the HTTP side) ----------------------------------------------------------
    def open(self, first: Body, answer: Answer) -> None:
        self.core.open(first, answer)
        self._arm()

    def request(self, body: Body, answer: Answer) -> None:
        self.core.request(body, answer)
        self._arm()

    # -- the BOSH session's owner ---------------------------------------------------------------
    def payloads(self, payloads: list[bytes]) -> None:
        self._feed(payloads)

    def restart(self, body: Body) -> None:
        to = body.attrs.get("to") or self._to
        lang = body.attrs.get(f"{{{NS.XML}}}lang") or self._lang
        version = body.attrs.get("{urn:xmpp:xbosh}version", "1.0")
        self._feed([f"<open xmlns='{NS.FRAMING}' to='{escape_attr(to)}' "
                    f"version='{escape_attr(version)}' xml:lang='{escape_attr(lang)}'/>"
                    .encode()])

    def terminate(self) -> None:
        self._terminating = True  # (what the session answers is for nobody now)
        self._feed([_CLOSE])

    def ended(self) -> None:
        self._cancel_timer()
        self._ended_cb(self)
        if self._closed:
            return
        if self._terminating:
            self._grace = self._clock.call_later(TERMINATE_GRACE, self._lost)
            return
        self._closed = True
        asyncio.get_running_loop().call_soon(self._lost)

    def _feed(self, messages: list[bytes]) -> None:
        for i, m in enumerate(messages):
            if self._queue is not None:
                self._queue.extend(messages[i:])
                return
            session = self.session
            if session is None or self._closed:
                return
            session.data_received(m)

    def _lost(self) -> None:
        self._closed = True
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        session, self.session = self.session, None
        if session is not None:
            session.connection_lost()

    # -- timers ---------------------------------------------------------------------------------
    def _arm(self) -> None:
        due = self.core.deadline()
        if due == self._due:
            return
        self._cancel_timer()
        if due is not None:
            self._due = due
            self._timer = self._clock.call_later(max(0.0, due - self._clock.monotonic()),
                                                 self._fire)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._due = None

    def _fire(self) -> None:
        self._timer = None
        self._due = None
        self.core.tick()
        self._arm()

    # -- what a session uses --------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        """What the session wrote in one pass."""
        self.send_messages(websocket_messages(data))

    def send_messages(self, messages: list[bytes]) -> None:
        """RFC 7395 messages from the session (or from its home), for the client."""
        if self._closed or self._terminating:
            return
        payloads: list[bytes] = []
        error = b""
        for m in messages:
            if m.startswith(b"<open "):
                continue
            if m.startswith(b"<close "):
                self.core.push(payloads)
                payloads = []
                self.core.close("remote-stream-error" if error else None, error)
                continue
            if m.startswith(b"<stream:error"):
                error = m
                continue
            payloads.append(m)
        if payloads:
            self.core.push(payloads)
        if error and not self.core.ended and self.core.closing is None:
            self.core.close("remote-stream-error", error)
        self._arm()

    def close(self) -> None:
        """The session (or its home) ended the stream."""
        if self._closed:
            return
        self._closed = True
        if not self._terminating:
            self.core.close()
            self._arm()
        asyncio.get_running_loop().call_soon(self._lost)

    def pause_reading(self) -> None:
        if self._queue is None:
            self._queue = []
        self.core.paused = True

    def resume_reading(self) -> None:
        queue, self._queue = self._queue, None
        self.core.paused = False
        if queue:
            self._feed(queue)
        if self._queue is None:
            self.core.resume()
            self._arm()

    async def start_tls(self) -> None:
        pass

    def channel_binding(self) -> tuple[str, bytes] | None:
        return self._cb if self.secure else None


class BoshRelay(Relay):
    """In the worker that keeps a client's BOSH session: its messages to the account's home
    and the home's back, each ``[4-byte length][message]`` on the socket pair (as a
    WebSocket's: the home sees a WebSocket stream)."""

    def __init__(self, client: BoshTransport) -> None:
        super().__init__(client)
        self._bosh = client
        self._reader = LinkReader()

    def to_client(self, data: bytes) -> None:
        self._bosh.send_messages(self._reader.feed(data))

    def to_home(self, data: bytes) -> bytes:
        return link_frames([data])


__all__ = ["BoshRelay", "BoshTransport"]
