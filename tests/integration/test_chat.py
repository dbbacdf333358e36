"""The thin end-to-end path: real clients log in over TLS and chat."""

from __future__ import annotations

from tests.integration.conftest import Harness


async def test_two_users_chat_over_starttls(harness: Harness) -> None:
    alice = await harness.logged_in("alice")
    bob = await harness.logged_in("bob")
    alice.send_message(mto="bob@localhost", mbody="hello bob", mtype="chat")
    msg = await bob.next_message()
    assert msg["body"] == "hello bob"
    assert str(msg["from"]) == "alice@localhost/test"
    assert msg["type"] == "chat"
    bob.send_message(mto="alice@localhost/test", mbody="hi alice", mtype="chat")
    reply = await alice.next_message()
    assert reply["body"] == "hi alice"
    assert str(reply["from"]) == "bob@localhost/test"


async def test_direct_tls_login_and_chat(harness: Harness) -> None:
    alice = await harness.logged_in("alice", direct_tls=True)
    bob = await harness.logged_in("bob")
    bob.send_message(mto="alice@localhost", mbody="over direct TLS", mtype="chat")
    msg = await alice.next_message()
    assert msg["body"] == "over direct TLS"
