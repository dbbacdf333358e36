"""Offline messages by e-mail (issue 24, item 2) end to end: the real server with
``[emaildigest]`` on, slixmpp users, and a real SMTP server (aiosmtpd, started here, STARTTLS
with a certificate made for the test, AUTH required) that receives the digests; the test
parses what it received. Time moves on the node's clock (SteppedClock)."""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from hongyan.server.tls import ensure_self_signed, server_context
from tests.integration.conftest import Harness
from tests.integration.waiting import until
from tests.ports import free_port

NS = "urn:hongyan:email-digest:0"
PRIVATE = "jabber:iq:private"
OMEMO = "eu.siacs.conversations.axolotl"


@dataclass
class Received:
    mail: EmailMessage
    rcpt: list[str]
    mail_from: str
    tls: bool
    login: str | None


class Mailbox:
    """The SMTP server's handler: what it accepted, in order."""

    def __init__(self) -> None:
        self.got: list[Received] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        mail = email.message_from_bytes(envelope.original_content, _class=EmailMessage,
                                        policy=email.policy.default)
        assert isinstance(mail, EmailMessage)
        self.got.append(Received(mail, list(envelope.rcpt_tos), envelope.mail_from,
                                 session.ssl is not None,
                                 session.auth_data.login.decode()
                                 if session.authenticated and
                                 isinstance(session.auth_data, LoginPassword) else None))
        return "250 OK"


def _authenticate(server: Any, session: Any, envelope: Any, mechanism: str,
                  auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == b"hongyan" and \
        auth_data.password == b"smtp-secret"
    return AuthResult(success=ok, handled=False, auth_data=auth_data)


@dataclass
class Smtp:
    mailbox: Mailbox
    port: int
    ca_file: Path


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[Smtp]:
    cert, key = ensure_self_signed(tmp_path / "smtp", "127.0.0.1")
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port,
                            tls_context=server_context(cert, key), require_starttls=True,
                            authenticator=_authenticate, auth_required=True,
                            server_hostname="127.0.0.1")
    controller.start()
    try:
        yield Smtp(box, port, cert)
    finally:
        controller.stop()


def config(smtp: Smtp, extra: str = "") -> str:
    return f"""
[emaildigest]
enabled = true
delay = 600
min_interval = 3600
smtp_host = "127.0.0.1"
smtp_port = {smtp.port}
smtp_ca_file = "{smtp.ca_file}"
smtp_username = "hongyan"
smtp_password = "smtp-secret"
from_address = "noreply@chat.test"
reply_to = "support@chat.test"
{extra}
"""


async def offline_rows(harness: Harness, username: str) -> int:
    assert harness.node is not None
    n = await harness.node.db.fetchval(
        "SELECT COUNT(*) FROM offline_messages WHERE username=?", username)
    return int(n or 0)


async def stored(harness: Harness, username: str, want: int) -> None:
    for _ in range(500):
        if await offline_rows(harness, username) >= want:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{username} has not {want} offline messages")


def digest(harness: Harness) -> Any:
    assert harness.node is not None
    return harness.node.modules["emaildigest"]


async def armed(harness: Harness, *users: str) -> None:
    """The digest timers of ``users`` are armed (the hook runs after the message is stored:
    moving the clock before it would leave the timer in the future)."""
    mod = digest(harness)
    await until(lambda: all(mod.armed(u) for u in users))


async def set_digest(client: Any, attrs: str) -> Any:
    return await client.iq(f"<query xmlns='{PRIVATE}' type='set'><digest xmlns='{NS}' "
                           f"{attrs}/></query>")


async def mails(smtp: Smtp, n: int) -> list[Received]:
    await until(lambda: len(smtp.mailbox.got) >= n)
    return smtp.mailbox.got


async def no_new_mail(smtp: Smtp, have: int) -> None:
    await asyncio.sleep(0.4)
    assert len(smtp.mailbox.got) == have, [m.mail["To"] for m in smtp.mailbox.got[have:]]


async def test_digest_after_the_delay_with_texts_only_where_allowed(
        harness: Harness, smtp: Smtp) -> None:
    await harness.stop_node()
    await harness.start(extra=config(smtp, 'users = { "dave@localhost" = "dave@mail.test" }'))
    # alice opts in with texts; a bad address is refused and changes nothing
    alice = await harness.logged_in("alice")
    bad = await set_digest(alice, "address='alice@mail.test\nBcc: x@evil.test'")
    assert bad["type"] == "error" and bad["error"]["condition"] == "not-acceptable"
    bad = await set_digest(alice, "address='alice@mail.test' bodies='maybe'")
    assert bad["type"] == "error" and bad["error"]["condition"] == "bad-request"
    ok = await set_digest(alice, "address='alice@mail.test' bodies='true'")
    assert ok["type"] == "result"
    got = await alice.iq(f"<query xmlns='{PRIVATE}'><digest xmlns='{NS}'/></query>")
    d = got.xml.find(f"{{{PRIVATE}}}query/{{{NS}}}digest")
    assert d is not None and d.get("address") == "alice@mail.test" and d.get("bodies") == "true"
    await alice.close()
    await harness.user("carol")  # not opted in
    await harness.user("dave")  # opted in by the administrator (no texts)
    bob = await harness.logged_in("bob")
    for text in ("hello alice", "are you there?\nsecond line"):
        bob.send_message(mto="alice@localhost", mbody=text, mtype="chat")
    # OMEMO: its fallback body is not shown; a receipt alone is not counted
    bob.send_raw(f"<message to='alice@localhost' type='chat'><encrypted xmlns='{OMEMO}'>"
                 "<header sid='1'><iv>AAAA</iv></header><payload>c2VjcmV0</payload>"
                 "</encrypted><body>I sent you an OMEMO encrypted message</body></message>")
    bob.send_raw("<message to='alice@localhost'><received xmlns='urn:xmpp:receipts' "
                 "id='x1'/></message>")
    bob.send_raw("<message to='alice@localhost' type='chat'><body>?OTRv3 secret</body>"
                 "</message>")
    bob.send_message(mto="carol@localhost", mbody="hi carol", mtype="chat")
    bob.send_message(mto="dave@localhost", mbody="for dave only", mtype="chat")
    await stored(harness, "alice", 5)
    await stored(harness, "carol", 1)
    await stored(harness, "dave", 1)
    await armed(harness, "alice", "dave")
    assert not digest(harness).armed("carol")

    await harness.clock.advance(590)
    await no_new_mail(smtp, 0)
    await harness.clock.advance(20)
    got_mail = await mails(smtp, 2)
    await no_new_mail(smtp, 2)  # carol: none
    by_to = {r.mail["To"]: r for r in got_mail}
    assert set(by_to) == {"alice@mail.test", "dave@mail.test"}

    a = by_to["alice@mail.test"]
    assert a.rcpt == ["alice@mail.test"] and a.mail_from == "noreply@chat.test"
    assert a.tls and a.login == "hongyan"  # STARTTLS, then AUTH
    m = a.mail
    assert m["From"] == "noreply@chat.test" and m["Reply-To"] == "support@chat.test"
    assert m["Subject"] == "4 new messages on localhost"
    assert m["Auto-Submitted"] == "auto-generated"
    # nobody else's address in any header
    headers = " ".join(str(v) for _, v in m.items())
    assert "bob" not in headers and "dave" not in headers and "carol" not in headers
    text = m.get_content().replace("\r\n", "\n")
    assert "bob@localhost: 4 messages" in text
    assert "hello alice" in text and "    are you there?\n    second line" in text
    assert "OMEMO encrypted message" not in text and "?OTR" not in text
    assert text.count("(encrypted: read it in your client)") == 2
    assert "carol" not in text and "dave" not in text

    dm = by_to["dave@mail.test"].mail
    assert dm["Subject"] == "1 new message on localhost"
    dtext = dm.get_content()
    assert "bob@localhost: 1 message" in dtext and "for dave only" not in dtext


async def test_rate_limited_and_none_for_who_came_back(harness: Harness, smtp: Smtp) -> None:
    await harness.stop_node()
    await harness.start(extra=config(smtp, 'users = { "alice@localhost" = "alice@mail.test", '
                                           '"eve@localhost" = "eve@mail.test" }'))
    await harness.user("alice")
    await harness.user("eve")
    bob = await harness.logged_in("bob")
    bob.send_message(mto="alice@localhost", mbody="one", mtype="chat")
    bob.send_message(mto="eve@localhost", mbody="for eve", mtype="chat")
    await stored(harness, "alice", 1)
    await stored(harness, "eve", 1)
    await armed(harness, "alice", "eve")
    # eve comes back before the delay: her messages are delivered, nobody mails her
    eve = await harness.client("eve@localhost/phone")
    assert (await eve.next_message())["body"] == "for eve"
    await harness.clock.advance(601)
    first = await mails(smtp, 1)
    await no_new_mail(smtp, 1)
    assert first[0].mail["To"] == "alice@mail.test"
    assert "1 message" in first[0].mail.get_content()
    # a new message: past the delay but within min_interval of the last digest, no mail
    bob.send_message(mto="alice@localhost", mbody="two", mtype="chat")
    await stored(harness, "alice", 2)
    await armed(harness, "alice")
    await harness.clock.advance(601)
    await no_new_mail(smtp, 1)
    await armed(harness, "alice")  # again, for what is left of min_interval
    # once min_interval has passed: one more digest, of the new message only
    await harness.clock.advance(3600 - 601 + 5)
    second = await mails(smtp, 2)
    assert second[1].mail["Subject"] == "1 new message on localhost"
    await no_new_mail(smtp, 2)


async def test_smtp_refusing_auth_is_counted_and_retried(harness: Harness, smtp: Smtp) -> None:
    await harness.stop_node()
    await harness.start(extra=config(smtp, 'users = { "alice@localhost" = "alice@mail.test" }')
                        .replace('smtp_password = "smtp-secret"', 'smtp_password = "wrong"'))
    await harness.user("alice")
    bob = await harness.logged_in("bob")
    bob.send_message(mto="alice@localhost", mbody="one", mtype="chat")
    await stored(harness, "alice", 1)
    await armed(harness, "alice")
    mod = digest(harness)
    await harness.clock.advance(601)
    await until(lambda: mod.failed == 1)
    assert smtp.mailbox.got == [] and mod.sent == 0
    await harness.clock.advance(601)  # tried again after delay
    await until(lambda: mod.failed == 2)
