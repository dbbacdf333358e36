"""Per-session XEP-0198 state: the two counters and the queue of unacknowledged stanzas.

Kept apart from the module so the counting rules are testable without sockets
(``tests/unit/test_sm_state.py``). A session that never enabled stream management has no
``SMState`` at all (``session.sm is None``); the queue itself is made on the first stanza sent.
The state is the session's last send filter (:class:`hongyan.server.session.SendFilter`): it
sees every stanza that leaves, after client state indication let it go.
"""

from __future__ import annotations

import asyncio
import collections
from typing import TYPE_CHECKING, ClassVar, Protocol

from hongyan.xmpp import ns as NS

if TYPE_CHECKING:
    from hongyan.server.clock import Handle
    from hongyan.server.session import Session
    from hongyan.xmpp.element import Element

MOD = 1 << 32  # XEP-0198 §4: h wraps at 2^32
REQUEST = f"<r xmlns='{NS.SM}'/>".encode()


class HandledCountTooHigh(Exception):
    """The client acknowledged more stanzas than were sent (or its counter went backwards)."""

    def __init__(self, h: int, send_count: int) -> None:
        super().__init__(f"h={h} send-count={send_count}")
        self.h = h
        self.send_count = send_count


class Manager(Protocol):
    """What the state needs from the module (kept abstract for the unit tests)."""

    max_unacked: int
    request_every: int

    def overflow(self, session: Session) -> None: ...
    def hibernate(self, session: Session) -> None: ...
    def queued_hibernated(self, session: Session, data: bytes) -> None: ...
    def ended(self, session: Session) -> None: ...


class SMState:
    __slots__ = ("acked", "acks", "h_in", "id", "mgr", "queue", "timer", "unrequested")

    order: ClassVar[int] = 20  # after client state indication: it counts what is sent

    def __init__(self, mgr: Manager, resume_id: str = "") -> None:
        self.mgr = mgr
        self.id = resume_id  # "" = acks without resumption
        self.h_in = 0  # stanzas received from the client and handled, mod 2^32
        self.acked = 0  # the client's last h: stanzas it acknowledged, mod 2^32
        self.queue: collections.deque[bytes] | None = None  # sent, not yet acknowledged
        self.unrequested = 0  # queued since our last <r/>
        self.timer: Handle | None = None  # while hibernated
        #: answers to the client's <r/> not sent yet, in order: (what each waits for, its h)
        self.acks: collections.deque[tuple[asyncio.Future[None], int]] | None = None

    @property
    def resumable(self) -> bool:
        return bool(self.id)

    @property
    def hibernated(self) -> bool:
        """The connection dropped and the session waits for a resumption."""
        return self.timer is not None

    @property
    def send_count(self) -> int:
        """Stanzas sent since <enabled/>, mod 2^32."""
        return (self.acked + self.pending) % MOD

    @property
    def pending(self) -> int:
        q = self.queue
        return 0 if q is None else len(q)

    # -- inbound --------------------------------------------------------------------------------
    def handled(self) -> None:
        self.h_in = (self.h_in + 1) % MOD

    # -- outbound -------------------------------------------------------------------------------
    def push(self, data: bytes) -> bool:
        """Queue a stanza that was just sent; True when it is time to ask for an ack."""
        q = self.queue
        if q is None:
            q = self.queue = collections.deque()
        q.append(data)
        self.unrequested += 1
        if self.unrequested >= self.mgr.request_every:
            self.unrequested = 0
            return True
        return False

    def outgoing(self, session: Session, data: bytes, el: Element | None) -> bytes | None:
        """A stanza leaves: keep it until acknowledged, ask for an ack every so often."""
        ask = self.push(data)
        if len(self.queue or ()) > self.mgr.max_unacked:
            self.mgr.overflow(session)  # the stream ends; the queue goes to offline storage
            return None
        if self.timer is not None:  # hibernated: the client sees it only once it resumes
            self.mgr.queued_hibernated(session, data)
        return data + REQUEST if ask else data

    def drain(self) -> list[bytes]:
        return []  # the queue is sent again by the resumption itself

    def ack(self, h: int) -> int:
        """The client's <a h/> (or <resume h/>): drop what it acknowledged, return how many.
        h counts every stanza since <enabled/> mod 2^32, so the newly acknowledged number is
        (h - acked) mod 2^32; more than is queued means the client counted wrong (or its counter
        went backwards, which wraps to a huge number)."""
        if not 0 <= h < MOD:
            raise HandledCountTooHigh(h, self.send_count)
        n = (h - self.acked) % MOD
        pending = self.pending
        if n > pending:
            raise HandledCountTooHigh(h, self.send_count)
        q = self.queue
        if q is not None:
            if n == pending:
                q.clear()
            else:
                for _ in range(n):
                    q.popleft()
            if not q:
                self.queue = None
                self.unrequested = 0
        self.acked = h
        return n

    def take_queue(self) -> list[bytes]:
        q = self.queue
        self.queue = None
        return [] if q is None else list(q)

    def hibernate(self, session: Session) -> None:
        self.mgr.hibernate(session)

    def ended(self, session: Session) -> None:
        self.mgr.ended(session)
