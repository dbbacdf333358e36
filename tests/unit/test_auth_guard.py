"""The node's guard against password guessing and the mechanisms a stream is offered
(hongyan.server.auth), without sockets."""

from __future__ import annotations

import time

import pytest

from hongyan.config.schema import AuthSection
from hongyan.server.auth import Guard, mechanisms


class Transport:
    def __init__(self, secure: bool, cb: bool) -> None:
        self.secure = secure
        self.peer_host = "192.0.2.1"
        self._cb = cb

    def channel_binding(self) -> tuple[str, bytes] | None:
        return ("tls-server-end-point", b"x" * 32) if self._cb else None


ALL = ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-1", "PLAIN"]


@pytest.mark.parametrize(("secure", "cb", "plaintext", "offered"), [
    (True, True, False, ALL),
    (True, False, False, ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]),
    (False, False, False, []),  # nothing in the clear
    (False, False, True, ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]),
])
def test_mechanisms_follow_the_transport(secure: bool, cb: bool, plaintext: bool,
                                         offered: list[str]) -> None:
    cfg = AuthSection()
    assert mechanisms(cfg, Transport(secure, cb), allow_plaintext=plaintext) == offered


def test_the_delay_doubles_per_failure_up_to_the_cap_and_a_success_resets_it() -> None:
    told: list[tuple[str, bytes]] = []
    guard = Guard(AuthSection(failure_delay=1.0, failure_delay_max=5.0),
                  lambda: None, lambda: b"")  # type: ignore[arg-type,return-value]
    guard.notify = lambda topic, body: told.append((topic, body))
    assert [guard.failed("h") for _ in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert guard.failed("other") == 1.0
    guard.succeeded("h")
    assert guard.failed("h") == 1.0
    assert told.count(("auth-failed", b"h")) == 6 and told.count(("auth-ok", b"h")) == 1
    guard.succeeded("nobody")  # no failures there: no notice to the other workers
    assert ("auth-ok", b"nobody") not in told


def test_failures_another_worker_saw_count_here() -> None:
    guard = Guard(AuthSection(failure_delay=1.0), lambda: None,  # type: ignore[arg-type,return-value]
                  lambda: b"")
    guard.peer_failed(b"h")
    guard.peer_failed(b"h")
    assert guard.failed("h") == 4.0
    guard.peer_ok(b"h")
    assert guard.failed("h") == 1.0


def test_an_address_is_banned_after_max_failures_then_forgiven() -> None:
    guard = Guard(AuthSection(failure_delay=0, max_failures_per_ip=3, ban_seconds=0.05),
                  lambda: None, lambda: b"")  # type: ignore[arg-type,return-value]
    for _ in range(2):
        guard.failed("h")
    assert not guard.banned("h")
    guard.peer_failed(b"h")  # another worker's failure counts the same
    assert guard.banned("h") and not guard.banned("other")
    time.sleep(0.06)
    assert not guard.banned("h")
    guard.failed("h")  # the count started afresh with the ban's end
    assert not guard.banned("h")
    never = Guard(AuthSection(failure_delay=0, max_failures_per_ip=0), lambda: None,
                  lambda: b"")  # type: ignore[arg-type,return-value]
    for _ in range(100):
        never.failed("h")
    assert not never.banned("h")
