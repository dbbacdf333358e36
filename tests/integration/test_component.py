"""External components (XEP-0114): slixmpp's ComponentXMPP and raw component streams against
the real server, with slixmpp users on the other side."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from slixmpp.exceptions import IqError

from hongyan.config.loader import ConfigError, load_config
from tests.integration.components import COMP, SECRET, Component, components_config
from tests.integration.conftest import Harness, write_config
from tests.integration.rawstream import RawStream
from tests.integration.test_carbons import C, device, forwarded

STREAMS = "urn:ietf:params:xml:ns:xmpp-streams"
HEADER = ("<stream:stream xmlns='jabber:component:accept' "
          "xmlns:stream='http://etherx.jabber.org/streams' to='{to}'>")


@pytest.fixture
async def comp_harness(harness: Harness) -> AsyncIterator[Harness]:
    """The harness's node, restarted with one component configured: comp.localhost."""
    await harness.stop_node()
    await harness.start(extra=components_config())
    yield harness


def port(h: Harness) -> int:
    assert h.node is not None
    return h.node.component_port


async def component(h: Harness, name: str = COMP, secret: str = SECRET) -> Component:
    c = Component(name, secret)
    assert await c.start(port(h)), "the component was not accepted"
    return c


async def raw(h: Harness, to: str = COMP) -> tuple[RawStream, str]:
    """A raw component stream whose header was answered: the stream and its id."""
    s = await RawStream.open(port(h))
    s.send(HEADER.format(to=to))
    head = await s.read_until(b">", 5)
    if head.startswith(b"<?xml"):
        head += await s.read_until(b">", 5)
    m = re.search(rb"id='([^']+)'", head)
    assert m is not None, head
    return s, m.group(1).decode()


def handshake(stream_id: str, secret: str = SECRET) -> str:
    return f"<handshake>{hashlib.sha1((stream_id + secret).encode()).hexdigest()}</handshake>"


async def shaken(h: Harness) -> RawStream:
    s, sid = await raw(h)
    s.send(handshake(sid))
    assert (await s.read_until(b"<handshake/>")).endswith(b"<handshake/>")
    return s


def stream_error(out: bytes) -> str:
    m = re.search(rb"<stream:error><([a-z-]+) xmlns='" + STREAMS.encode() + rb"'", out)
    assert m is not None, out
    assert out.rstrip().endswith(b"</stream:stream>"), out
    return m.group(1).decode()


# ---- a component serving its domain ---------------------------------------------------------


async def test_the_header_answers_from_the_components_name(comp_harness: Harness) -> None:
    s = await RawStream.open(port(comp_harness))
    s.send(HEADER.format(to="COMP.localhost"))
    head = await s.read_until(b"id='")
    head += await s.read_until(b">")
    assert b"xmlns='jabber:component:accept'" in head
    assert b"from='comp.localhost'" in head
    assert b" version=" not in head.split(b"?>")[-1]  # XEP-0114: no features, no version
    s.close()


async def test_chat_through_a_component_both_ways(comp_harness: Harness) -> None:
    comp = await component(comp_harness)
    alice = await comp_harness.logged_in("alice")
    alice.send_message(mto=f"x@{COMP}", mbody="hello gateway", mtype="chat")
    m = await comp.next_message()
    assert (m["body"], str(m["from"]), str(m["to"])) == (
        "hello gateway", str(alice.boundjid), f"x@{COMP}")
    comp.send_message(mto=str(alice.boundjid), mfrom=f"x@{COMP}/irc", mbody="hi alice",
                      mtype="chat")
    back = await alice.next_message()
    assert (back["body"], str(back["from"])) == ("hi alice", f"x@{COMP}/irc")
    await comp.close()


async def test_a_gateway_contacts_messages_are_carbon_copied(comp_harness: Harness) -> None:
    """A message from a gateway's user (an IRC nick, an SMS number) to one of alice's
    resources reaches her other carbons-enabled resource as a <received/> copy (XEP-0280 §6
    exempts rooms, not contacts behind a component); what she sends it is copied as <sent/>."""
    comp = await component(comp_harness)
    await comp_harness.user("alice")
    a = await device(comp_harness, "alice", "a")
    b = await device(comp_harness, "alice", "b")
    comp.send_message(mto="alice@localhost/a", mfrom=f"+123@{COMP}", mbody="sms in",
                      mtype="chat")
    assert (await a.next()).findtext(C + "body") == "sms in"
    copy = forwarded(await b.next(), "received")
    assert (copy.findtext(C + "body"), copy.get("from")) == ("sms in", f"+123@{COMP}")
    a.send(f"+123@{COMP}", "sms out")
    assert (await comp.next_message())["body"] == "sms out"
    sent = forwarded(await b.next(), "sent")
    assert (sent.findtext(C + "body"), sent.get("to")) == ("sms out", f"+123@{COMP}")
    await comp.close()


async def test_iq_both_ways(comp_harness: Harness) -> None:
    comp = await component(comp_harness)
    alice = await comp_harness.logged_in("alice")
    # user -> component: slixmpp's disco plugin answers for the component's domain
    iq = alice.make_iq_get(queryxmlns="http://jabber.org/protocol/disco#info", ito=COMP)
    got = await iq.send(timeout=10)
    assert got["type"] == "result" and str(got["from"]) == COMP
    # component -> user's full JID (slixmpp answers pings) and -> the server
    ping = comp.make_iq_get(ito=str(alice.boundjid), ifrom=f"bot@{COMP}")
    ping.enable("ping")
    pong = await comp.request(ping)
    assert pong["type"] == "result" and str(pong["from"]) == str(alice.boundjid)
    disco = comp.make_iq_get(queryxmlns="http://jabber.org/protocol/disco#info",
                             ito="localhost", ifrom=COMP)
    answer = await comp.request(disco)
    assert answer["type"] == "result"
    assert "urn:xmpp:ping" in answer["disco_info"]["features"]
    await comp.close()


async def test_a_message_to_an_offline_user_is_stored(comp_harness: Harness) -> None:
    comp = await component(comp_harness)
    bob = await comp_harness.user("bob")
    for i in range(3):
        comp.send_message(mto=bob, mfrom=f"x@{COMP}", mbody=f"while away {i}", mtype="chat")
    await asyncio.sleep(0.3)
    b = await comp_harness.client(bob + "/phone")
    got = [(await b.next_message())["body"] for _ in range(3)]
    assert got == [f"while away {i}" for i in range(3)]
    await comp.close()


async def test_disco_items_lists_it_while_it_is_connected(comp_harness: Harness) -> None:
    alice = await comp_harness.logged_in("alice")

    async def items() -> set[str]:
        iq = alice.make_iq_get(queryxmlns="http://jabber.org/protocol/disco#items",
                               ito="localhost")
        res = await iq.send(timeout=10)
        return {str(i[0]) for i in res["disco_items"]["items"]}

    assert COMP not in await items()
    comp = await component(comp_harness)
    assert COMP in await items()
    assert "conference.localhost" in await items()
    await comp.close()
    for _ in range(50):
        if COMP not in await items():
            break
        await asyncio.sleep(0.05)
    assert COMP not in await items()


async def test_stanzas_to_a_component_that_is_not_connected_bounce(comp_harness: Harness
                                                                   ) -> None:
    alice = await comp_harness.logged_in("alice")
    alice.send_message(mto=f"x@{COMP}", mbody="anyone?", mtype="chat")
    err = await alice.next_message()
    assert err["type"] == "error" and err["error"]["condition"] == "service-unavailable"
    iq = alice.make_iq_get(queryxmlns="http://jabber.org/protocol/disco#info", ito=COMP)
    with pytest.raises(IqError) as exc:
        await iq.send(timeout=10)
    assert exc.value.iq["error"]["condition"] == "service-unavailable"
    # and once it connects, the same address works
    comp = await component(comp_harness)
    alice.send_message(mto=f"x@{COMP}", mbody="now?", mtype="chat")
    assert (await comp.next_message())["body"] == "now?"
    await comp.close()


# ---- what the server refuses ----------------------------------------------------------------


async def test_a_wrong_secret_is_not_authorized(comp_harness: Harness,
                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    s, sid = await raw(comp_harness)
    s.send(handshake(sid, "not-the-secret"))
    assert stream_error(await s.read_to_close()) == "not-authorized"
    s.close()
    good = await component(comp_harness)  # the right one still gets in
    await good.close()
    assert SECRET not in caplog.text
    assert hashlib.sha1((sid + SECRET).encode()).hexdigest() not in caplog.text
    assert "wrong handshake" in caplog.text


async def test_an_unconfigured_name_is_host_unknown(comp_harness: Harness,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "hongyan.component")
    s = await RawStream.open(port(comp_harness))
    s.send(HEADER.format(to="nobody.localhost"))
    assert stream_error(await s.read_to_close()) == "host-unknown"
    s.close()
    unknown = Component("other.localhost", SECRET)
    assert not await unknown.start(port(comp_harness))
    # each refusal is a log line naming what was asked and from where
    assert "'nobody.localhost' from 127.0.0.1 ended: host-unknown" in caplog.text


async def test_a_second_connection_for_a_connected_name_is_refused(comp_harness: Harness
                                                                    ) -> None:
    first = await component(comp_harness)
    s, sid = await raw(comp_harness)
    s.send(handshake(sid))
    assert stream_error(await s.read_to_close()) == "conflict"
    s.close()
    # the first one still serves the domain
    alice = await comp_harness.logged_in("alice")
    alice.send_message(mto=f"x@{COMP}", mbody="still you?", mtype="chat")
    assert (await first.next_message())["body"] == "still you?"
    await first.close()


async def test_a_stanza_from_another_domain_is_invalid_from(comp_harness: Harness) -> None:
    await comp_harness.user("alice")
    for frm in ("alice@localhost", "x@conference.localhost", "x@comp.localhost.evil"):
        s = await shaken(comp_harness)
        s.send(f"<message from='{frm}' to='alice@localhost'><body>forged</body></message>")
        assert stream_error(await s.read_to_close()) == "invalid-from"
        s.close()


async def test_a_stanza_without_from_or_to_is_improper_addressing(comp_harness: Harness
                                                                  ) -> None:
    for stanza in ("<message to='alice@localhost'><body>x</body></message>",
                   f"<message from='x@{COMP}'><body>x</body></message>"):
        s = await shaken(comp_harness)
        s.send(stanza)
        assert stream_error(await s.read_to_close()) == "improper-addressing"
        s.close()


@pytest.mark.parametrize("before", [
    "<message from='x@comp.localhost' to='alice@localhost'><body>early</body></message>",
    "<iq type='get' id='1' from='comp.localhost' to='localhost'>"
    "<ping xmlns='urn:xmpp:ping'/></iq>",
])
async def test_a_stanza_before_the_handshake_is_not_authorized(comp_harness: Harness,
                                                               before: str) -> None:
    s, _ = await raw(comp_harness)
    s.send(before)
    assert stream_error(await s.read_to_close()) == "not-authorized"
    s.close()
    # pipelined with the header, before the server said anything
    s = await RawStream.open(port(comp_harness))
    s.send(HEADER.format(to=COMP) + before)
    assert stream_error(await s.read_to_close()) == "not-authorized"
    s.close()


async def test_a_stanza_over_the_size_limit_is_policy_violation(comp_harness: Harness
                                                                ) -> None:
    s = await shaken(comp_harness)
    s.send(f"<message from='x@{COMP}' to='alice@localhost'><body>" + "a" * 300_000 +
           "</body></message>")
    assert stream_error(await s.read_to_close()) == "policy-violation"
    s.close()


async def test_a_silent_component_stream_times_out(comp_harness: Harness) -> None:
    s, _ = await raw(comp_harness)
    await comp_harness.clock.advance(31)
    assert stream_error(await s.read_to_close()) == "connection-timeout"
    s.close()


async def test_a_malformed_to_is_answered_jid_malformed(comp_harness: Harness) -> None:
    s = await shaken(comp_harness)
    s.send(f"<message from='x@{COMP}' to='a@b@c' id='m1'><body>x</body></message>")
    out = await s.read_element(b"id='m1'")
    assert b"type='error'" in out and b"jid-malformed" in out, out
    assert b"from='localhost'" in out
    s.send(f"<iq type='get' id='p' from='{COMP}' to='localhost'>"
           "<ping xmlns='urn:xmpp:ping'/></iq>")
    assert b"type='result'" in await s.read_element(b"id='p'")
    s.close()


# ---- config -----------------------------------------------------------------------------


@pytest.mark.parametrize(("entries", "wanted"), [
    ([("irc.localhost", "a1"), ("IRC.localhost", "b2")], "irc.localhost is configured twice"),
    ([("localhost", "a1")], "must be a domain of its own, not server.domain"),
    ([("conference.localhost", "a1")], "conference.localhost is muc.host already"),
    ([("pubsub.localhost", "a1")], "pubsub.localhost is pubsub.host already"),
])
def test_config_errors_name_the_key_and_the_file(tmp_path: Path,
                                                 entries: list[tuple[str, str]],
                                                 wanted: str) -> None:
    path = write_config(tmp_path, "sqlite:///x.db", components_config(0, *entries))
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    [problem] = exc.value.problems
    assert problem.key == "components.name" and problem.message == wanted
    assert problem.file == str(path)
    text = path.read_text().splitlines()
    assert problem.line is not None
    assert text[problem.line - 1].startswith("name = ")
    for _, secret in entries:
        assert secret not in str(exc.value)


def test_a_secret_is_required_and_never_shown(tmp_path: Path) -> None:
    path = write_config(tmp_path, "sqlite:///x.db", components_config(0, ("a.localhost", "")))
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert [p.key for p in exc.value.problems] == ["components.secret"]
    good = write_config(tmp_path, "sqlite:///x.db",
                        components_config(0, ("a.localhost", "hunter2-secret")))
    cfg = load_config(good)
    assert "hunter2-secret" not in repr(cfg) and "hunter2-secret" not in str(cfg.components)


async def test_a_client_cannot_be_a_component(comp_harness: Harness) -> None:
    """The c2s port speaks jabber:client only; a component header there is refused."""
    s = await RawStream.open(comp_harness.port)
    s.send(HEADER.format(to="localhost"))
    assert stream_error(await s.read_to_close()) == "invalid-namespace"
    s.close()


def test_hongyan_check_names_the_component_key_and_hides_the_secret(tmp_path: Path) -> None:
    from tests.integration.test_process import hongyan

    bad = tmp_path / "bad.toml"
    bad.write_text('[server]\ndomain = "example.org"\n\n[[components]]\n'
                   'name = "example.org"\nsecret = "do-not-print-me"\n')
    r = hongyan("check", config=bad)
    assert r.returncode == 1
    assert f"{bad}:5: components.name: must be a domain of its own, not server.domain" \
        in r.stderr
    assert "do-not-print-me" not in r.stdout + r.stderr
