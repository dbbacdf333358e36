"""The sans-I/O BOSH core (XEP-0124 as XEP-0206 uses it): bodies parsed, the rid window,
holding, retransmission, deadlines on a clock the test moves, and how a session ends."""

from __future__ import annotations

import pytest

from hongyan.xmpp.bosh import (
    EMPTY,
    HTTPBIND,
    Body,
    BoshError,
    BoshSession,
    Limits,
    parse_body,
    terminate_body,
)

HB = f"xmlns='{HTTPBIND}'"


def body(text: str) -> Body:
    return parse_body(text.encode(), max_size=65536, max_depth=16)


class Owner:
    def __init__(self) -> None:
        self.got: list[bytes] = []
        self.restarts = 0
        self.terminated = False
        self.ends = 0

    def payloads(self, payloads: list[bytes]) -> None:
        self.got.extend(payloads)

    def restart(self, body: Body) -> None:
        self.restarts += 1

    def terminate(self) -> None:
        self.terminated = True

    def ended(self) -> None:
        self.ends += 1


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Answers:
    def __init__(self) -> None:
        self.by_rid: dict[int, list[bytes]] = {}

    def of(self, rid: int):  # type: ignore[no-untyped-def]
        def answer(data: bytes) -> None:
            self.by_rid.setdefault(rid, []).append(data)
        return answer


def session(hold: int = 1, wait: int = 30, **kw: int
            ) -> tuple[BoshSession, Owner, Clock, Answers]:
    owner, clock, answers = Owner(), Clock(), Answers()
    first = body(f"<body {HB} rid='100' to='localhost' wait='{wait}' hold='{hold}'/>")
    s = BoshSession("sid.0", first, Limits(**kw), owner, clock, domain="localhost",
                    secure=True)
    s.open(first, answers.of(100))
    return s, owner, clock, answers


def req(s: BoshSession, answers: Answers, rid: int, inner: str = "", **attrs: str) -> None:
    extra = "".join(f" {k}='{v}'" for k, v in attrs.items())
    text = (f"<body {HB} sid='sid.0' rid='{rid}'{extra}>{inner}</body>" if inner
            else f"<body {HB} sid='sid.0' rid='{rid}'{extra}/>")
    s.request(body(text), answers.of(rid))


def test_payloads_declare_their_namespace_and_bad_bodies_are_bad_request() -> None:
    b = body(f"<?xml version='1.0'?><body {HB} rid='7'><message to='a@b'><body>hi</body>"
             "</message><r xmlns='urn:xmpp:sm:3'/></body>")
    assert b.rid == 7
    assert b.payloads == [b"<message xmlns='jabber:client' to='a@b'><body>hi</body></message>",
                          b"<r xmlns='urn:xmpp:sm:3'/>"]
    for bad in ("<body/>", f"<body {HB}/>", f"<body {HB} rid='-1'/>", f"<x {HB} rid='1'/>",
                f"<body {HB} rid='1'>text</body>", f"<body {HB} rid='99999999999999999'/>",
                f"<body {HB} rid='1'><!-- c --></body>", f"<body {HB} rid='1'><a>"):
        with pytest.raises(BoshError) as e:
            body(bad)
        assert e.value.condition == "bad-request", bad


def test_creation_is_bounded_by_the_limits() -> None:
    s, owner, _, answers = session(hold=5, wait=600)
    assert (s.wait, s.hold, s.requests) == (60, 1, 2)
    assert owner.restarts == 1 and 100 not in answers.by_rid  # held: nothing to say yet
    s.push([b"<stream:features/>"])
    (resp,) = answers.by_rid[100]
    assert b"sid='sid.0'" in resp and b"requests='2'" in resp and b"<stream:features/>" in resp


def test_rid_order_window_and_retransmission() -> None:
    s, owner, _, answers = session()
    s.push([b"<f/>"])
    req(s, answers, 102, "<message/>")  # ahead of 101: waits
    assert owner.got == [] and 102 not in answers.by_rid
    req(s, answers, 101, "<iq/>")
    assert owner.got == [b"<iq xmlns='jabber:client'/>", b"<message xmlns='jabber:client'/>"]
    assert answers.by_rid[101] == [EMPTY]  # released by 102 (hold=1), which is held
    s.push([b"<m/>"])
    (resp,) = answers.by_rid[102]
    req(s, answers, 102)  # repeated: the same again
    assert answers.by_rid[102] == [resp, resp]
    req(s, answers, 101)
    assert answers.by_rid[101] == [EMPTY, EMPTY]
    req(s, answers, 105)  # beyond the window (102 + 2)
    assert answers.by_rid[105] == [terminate_body("item-not-found")]
    assert s.ended and owner.ends == 1


def test_an_old_rid_is_item_not_found() -> None:
    s, _, _, answers = session()
    s.push([b"<f/>"])
    for rid in (101, 102, 103):
        req(s, answers, rid)
    req(s, answers, 100)  # answered long ago, no longer buffered
    assert answers.by_rid[100][-1] == terminate_body("item-not-found") and s.ended


def test_wait_inactivity_and_pause() -> None:
    s, owner, clock, answers = session(wait=10, inactivity=30, max_pause=100)
    s.push([b"<f/>"])
    req(s, answers, 101)
    assert s.deadline() == clock.t + 10
    clock.t += 10
    s.tick()
    assert answers.by_rid[101] == [EMPTY]
    assert s.deadline() == clock.t + 30
    clock.t += 29
    s.tick()
    assert not s.ended
    req(s, answers, 102, pause="100")
    assert answers.by_rid[102] == [EMPTY]
    clock.t += 99
    s.tick()
    assert not s.ended
    clock.t += 2
    s.tick()
    assert s.ended and owner.ends == 1


def test_pause_beyond_maxpause_and_overactivity() -> None:
    s, _, _, answers = session(max_pause=100)
    s.push([b"<f/>"])
    req(s, answers, 101, pause="101")
    assert answers.by_rid[101] == [terminate_body("policy-violation")] and s.ended
    s, _, _, answers = session()
    s.push([b"<f/>"])
    req(s, answers, 101)
    req(s, answers, 103)
    req(s, answers, 102)
    assert answers.by_rid[102] == [terminate_body("policy-violation")]
    assert answers.by_rid[101] == [terminate_body("policy-violation")]


def test_the_stream_ends_with_or_without_a_held_request() -> None:
    s, _, _, answers = session()
    s.push([b"<f/>"])
    req(s, answers, 101)
    s.close("remote-stream-error", b"<stream:error><conflict/></stream:error>")
    (resp,) = answers.by_rid[101]
    assert b"condition='remote-stream-error'" in resp and b"<conflict/>" in resp and s.ended
    s, owner, _, answers = session()
    s.push([b"<f/>"])
    s.close()
    assert owner.ends == 0
    assert not s.ended  # the next request is told
    req(s, answers, 101)
    assert answers.by_rid[101] == [terminate_body()] and s.ended


def test_terminate_hands_over_its_payloads_first() -> None:
    s, owner, _, answers = session()
    s.push([b"<f/>"])
    req(s, answers, 101)
    req(s, answers, 102, "<presence type='unavailable'/>", type="terminate")
    assert owner.got == [b"<presence xmlns='jabber:client' type='unavailable'/>"]
    assert owner.terminated and answers.by_rid[101] == [EMPTY]
    assert answers.by_rid[102] == [terminate_body()] and s.ended
