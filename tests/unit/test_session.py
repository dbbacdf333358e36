"""One write verb and the send filters (hongyan.server.session), without sockets: what reaches
the transport, in which order, with client state indication and stream management as the real
filters they are in a running server."""

from __future__ import annotations

from typing import ClassVar

from hongyan.modules.csi.state import CSIState
from hongyan.modules.sm.state import REQUEST, SMState
from hongyan.server.metrics import Counters
from hongyan.server.session import BOUND, CLOSED, Session
from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element


class Node:
    def __init__(self) -> None:
        self.dirty: list[Session] = []
        self.counters = Counters()

    def schedule_flush(self, session: Session) -> None:
        self.dirty.append(session)


class Sink:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)


class Mgr:
    max_unacked = 100
    request_every = 3

    def __init__(self) -> None:
        self.overflowed = 0

    def overflow(self, session: Session) -> None:
        self.overflowed += 1
        session.state = CLOSED

    def hibernate(self, session: Session) -> None:
        pass

    def queued_hibernated(self, session: Session, data: bytes) -> None:
        pass

    def ended(self, session: Session) -> None:
        pass


def session() -> tuple[Session, Sink, Node]:
    s = Session()
    node, sink = Node(), Sink()
    s.node, s.transport = node, sink
    s.state = BOUND
    return s, sink, node


def out(s: Session) -> bytes:
    s.flush()
    return b"".join(s.transport.writes)  # type: ignore[attr-defined]


def presence(sender: str) -> Element:
    return Element("presence", attrs={"from": sender})


def message(body: str) -> Element:
    m = Element("message", attrs={"from": "a@localhost/r", "type": "chat"})
    m.add("body", text=body)
    return m


def test_one_flush_per_batch_whatever_the_verb() -> None:
    s, sink, node = session()
    s.send(message("1"))
    s.send(b"<message><body>2</body></message>")
    s.send(b"<r xmlns='urn:xmpp:sm:3'/>", raw=True)
    assert node.dirty == [s] and sink.writes == []
    s.flush()
    assert sink.writes == [b"<message from='a@localhost/r' type='chat'><body>1</body></message>"
                           b"<message><body>2</body></message><r xmlns='urn:xmpp:sm:3'/>"]


def test_a_closed_session_sends_nothing() -> None:
    s, _, node = session()
    s.state = CLOSED
    s.send(message("x"))
    s.send(b"<a/>", raw=True)
    assert node.dirty == [] and out(s) == b""


def test_filters_run_in_their_order_whatever_the_order_added() -> None:
    seen: list[str] = []

    class Tag:
        order: ClassVar[int] = 0

        def __init__(self, name: str) -> None:
            self.name = name

        def outgoing(self, session: Session, data: bytes, el: Element | None) -> bytes | None:
            seen.append(self.name)
            return data + self.name.encode()

        def drain(self) -> list[bytes]:
            return []

    class Late(Tag):
        order = 20

    class Early(Tag):
        order = 10

    s, _, _ = session()
    late, early = Late("L"), Early("E")
    s.add_filter(late)
    s.add_filter(early)
    s.send(b"<x/>")
    assert seen == ["E", "L"] and out(s) == b"<x/>EL"
    seen.clear()
    s.send(b"<y/>", after=early)  # already passed early: only what comes after it
    s.send(b"<z/>", raw=True)  # a nonza: no filter at all
    assert seen == ["L"] and out(s).endswith(b"<y/>L<z/>")
    s.remove_filter(early)
    s.send(b"<w/>", after=early)  # a filter that left the chain still marks the place
    assert seen == ["L", "L"]


def test_sm_counts_what_is_sent_and_asks_for_acks() -> None:
    s, _, _ = session()
    sm = SMState(Mgr())
    s.sm = sm
    s.add_filter(sm)
    for i in range(4):
        s.send(message(str(i)))
    s.send(f"<a xmlns='{NS.SM}' h='0'/>".encode(), raw=True)  # nonzas are not counted
    assert sm.pending == 4
    assert out(s).count(REQUEST) == 1  # request_every = 3


def test_sm_overflow_ends_the_stream_and_keeps_the_stanza() -> None:
    s, _, _ = session()
    mgr = Mgr()
    mgr.max_unacked = 2
    sm = SMState(mgr)
    s.sm = sm
    s.add_filter(sm)
    for i in range(4):
        s.send(message(str(i)))
    assert mgr.overflowed == 1 and sm.pending == 3  # the third stays queued (offline later)
    assert out(s).count(b"<message") == 2


def test_csi_holds_presence_and_chat_states_then_sm_counts_them_when_sent() -> None:
    s, _, _ = session()
    sm = SMState(Mgr())
    s.sm = sm
    s.add_filter(sm)
    csi = CSIState()
    s.add_filter(csi)
    s.send(presence("b@localhost/1"))
    s.send(presence("b@localhost/1"))  # supersedes the first
    state = Element("message", attrs={"from": "b@localhost/1"})
    state.add("composing", NS.CHATSTATES)
    s.send(state)
    s.send(b"<presence from='room@muc/x'/>")  # a fan-out's presence, held in order
    assert sm.pending == 0 and out(s) == b""
    s.send(message("urgent"))  # urgent: what is held goes first, counted, in order
    sent = out(s)
    assert sm.pending == 4
    assert sent.index(b"<presence from='b@localhost/1'") < sent.index(b"composing") \
        < sent.index(b"room@muc") < sent.index(b"urgent")
    assert sent.count(b"<presence") == 2
    s.send(presence("c@localhost/1"))
    s.remove_filter(csi)  # <active/>: the filter leaves, then lets go of what it holds
    csi.flush(s)
    assert sm.pending == 5 and b"c@localhost/1" in out(s)


def test_a_drained_csi_holds_nothing() -> None:
    s, _, _ = session()
    csi = CSIState()
    s.add_filter(csi)
    s.send(presence("b@localhost/1"))
    assert csi.drain() == [b"<presence from='b@localhost/1'/>"] and csi.drain() == []
