"""The XEP-0198 counters without sockets: h counts handled inbound stanzas and acknowledged
outbound ones, mod 2^32; an ack past what was sent (or going backwards) is refused."""

from __future__ import annotations

import pytest

from hongyan.modules.sm.state import MOD, HandledCountTooHigh, SMState


class Mgr:
    max_unacked = 100
    request_every = 3

    def overflow(self, session: object) -> None:
        raise AssertionError("no overflow expected")

    def hibernate(self, session: object) -> None:
        pass

    def queued_hibernated(self, session: object, data: bytes) -> None:
        pass

    def ended(self, session: object) -> None:
        pass


def test_fresh_state_holds_no_queue() -> None:
    st = SMState(Mgr())
    assert st.queue is None and st.pending == 0 and st.send_count == 0
    assert not st.resumable and SMState(Mgr(), "x").resumable


def test_inbound_counter_wraps() -> None:
    st = SMState(Mgr())
    st.h_in = MOD - 1
    st.handled()
    assert st.h_in == 0
    st.handled()
    assert st.h_in == 1


def test_push_requests_every_n_and_ack_drops_in_order() -> None:
    st = SMState(Mgr())
    asks = [st.push(b"s%d" % i) for i in range(7)]
    assert asks == [False, False, True, False, False, True, False]
    assert st.ack(2) == 2
    assert list(st.queue or ()) == [b"s2", b"s3", b"s4", b"s5", b"s6"]
    assert st.ack(2) == 0  # the same h again: nothing new, no error
    assert st.ack(7) == 5
    assert st.queue is None and st.send_count == 7


def test_ack_too_high_and_backwards() -> None:
    st = SMState(Mgr())
    for i in range(3):
        st.push(b"%d" % i)
    with pytest.raises(HandledCountTooHigh) as exc:
        st.ack(4)
    assert (exc.value.h, exc.value.send_count) == (4, 3)
    st.ack(2)
    with pytest.raises(HandledCountTooHigh):
        st.ack(1)  # backwards: (1 - 2) mod 2^32 is far more than one pending stanza
    with pytest.raises(HandledCountTooHigh):
        st.ack(MOD)


def test_ack_across_the_wrap() -> None:
    st = SMState(Mgr())
    st.acked = MOD - 2  # 2^32 - 2 stanzas were sent and acknowledged before
    for i in range(4):
        st.push(b"%d" % i)
    assert st.send_count == 2
    assert st.ack(1) == 3  # h wrapped: 2^32-2 -> 1 acknowledges three
    assert list(st.queue or ()) == [b"3"]
    assert st.ack(2) == 1
