"""Offline messages, registration, profiles and the small services, through real clients."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import time
from typing import Any

from slixmpp.xmlstream import ET

from hongyan.xmpp.element import Element
from tests.integration.clients import Client
from tests.integration.conftest import PASSWORD, Harness
from tests.integration.rawstream import SASL, b64, tls_stream

DELAY = "urn:xmpp:delay"


async def raw_iq(c: Client, xml: str, itype: str = "get", to: str | None = None) -> Any:
    iq = c.make_iq_set() if itype == "set" else c.make_iq_get()
    if to:
        iq["to"] = to
    return await c.send_raw_iq(iq, xml, 10)


def condition(iq: Any) -> str | None:
    return iq["error"]["condition"] if iq["type"] == "error" else None


# ---- offline messages (XEP-0160) --------------------------------------------------------


async def test_offline_messages_in_order_with_delay(harness: Harness) -> None:
    await harness.user("juliet")
    romeo = await harness.logged_in("romeo")
    nurse = await harness.logged_in("nurse")
    # Two connections race on the network, so let each message reach the server first.
    romeo.send_message(mto="juliet@localhost", mbody="one", mtype="chat")
    await asyncio.sleep(0.1)
    nurse.send_message(mto="juliet@localhost", mbody="two", mtype="chat")
    await asyncio.sleep(0.1)
    romeo.send_message(mto="juliet@localhost", mbody="three", mtype="normal")
    romeo.send_message(mto="juliet@localhost", mbody="news", mtype="headline")  # not stored
    await asyncio.sleep(0.3)
    juliet = await harness.client("juliet@localhost/phone")
    got = [await juliet.next_message() for _ in range(3)]
    assert [m["body"] for m in got] == ["one", "two", "three"]
    assert [str(m["from"]) for m in got] == ["romeo@localhost/test", "nurse@localhost/test",
                                             "romeo@localhost/test"]
    for m in got:
        delay = m.xml.find(f"{{{DELAY}}}delay")
        assert delay is not None and delay.get("from") == "localhost"
        assert delay.get("stamp", "").endswith("Z")
    await asyncio.sleep(0.3)
    assert juliet.messages.empty()
    # a second resource later gets nothing twice
    juliet2 = await harness.client("juliet@localhost/laptop")
    await asyncio.sleep(0.3)
    assert juliet2.messages.empty()


async def test_server_routed_message_to_offline_user_is_stored(harness: Harness) -> None:
    """A module routing a message (ModuleAPI.route) to a user who is offline: the store step
    is asynchronous and must run, not be dropped with an unawaited result."""
    await harness.user("juliet")
    assert harness.node is not None
    api = harness.node.modules["ping"].api
    api.route(Element("message", attrs={"from": "localhost", "to": "juliet@localhost",
                                        "type": "chat"}, children=[
        Element("body", children=["from the server"])]))
    await asyncio.sleep(0.3)
    juliet = await harness.client("juliet@localhost/phone")
    got = await juliet.next_message()
    assert got["body"] == "from the server" and str(got["from"]) == "localhost"


async def test_offline_messages_survive_restart(harness: Harness) -> None:
    await harness.user("juliet")
    romeo = await harness.logged_in("romeo")
    for i in range(5):
        romeo.send_message(mto="juliet@localhost", mbody=f"m{i}", mtype="chat")
    await asyncio.sleep(0.3)
    await harness.restart()
    juliet = await harness.client("juliet@localhost/phone")
    assert [(await juliet.next_message())["body"] for _ in range(5)] == \
        [f"m{i}" for i in range(5)]


async def test_not_stored_kinds(harness: Harness) -> None:
    await harness.user("juliet")
    romeo = await harness.logged_in("romeo")
    m = romeo.make_message(mto="juliet@localhost", mtype="chat")
    m.append(ET.fromstring("<composing xmlns='http://jabber.org/protocol/chatstates'/>"))
    m.send()
    m = romeo.make_message(mto="juliet@localhost", mbody="secret", mtype="chat")
    m.append(ET.fromstring("<no-store xmlns='urn:xmpp:hints'/>"))
    m.send()
    romeo.send_message(mto="juliet@localhost", mbody="kept", mtype="chat")
    # <no-store/> is not stored, so romeo is told (RFC 6121 §8.5.2.2.1: store or return an
    # error; ejabberd does the same); the chat state alone vanishes without an error
    err = await romeo.next_message()
    assert err["type"] == "error" and err["body"] == "secret"
    assert err["error"]["condition"] == "service-unavailable"
    await asyncio.sleep(0.3)
    juliet = await harness.client("juliet@localhost/phone")
    assert (await juliet.next_message())["body"] == "kept"
    await asyncio.sleep(0.3)
    assert juliet.messages.empty()
    assert romeo.messages.empty()  # nothing else bounced


async def test_quota_bounces_with_a_clear_error(harness: Harness) -> None:
    await harness.stop_node()
    await harness.start(extra="[offline]\nquota = 2\n")
    await harness.user("juliet")
    romeo = await harness.logged_in("romeo")
    for i in range(3):
        romeo.send_message(mto="juliet@localhost", mbody=f"m{i}", mtype="chat")
    err = await romeo.next_message()
    assert err["type"] == "error" and err["body"] == "m2"
    assert err["error"]["condition"] == "service-unavailable"
    assert "full" in err["error"]["text"]
    juliet = await harness.client("juliet@localhost/phone")
    assert [(await juliet.next_message())["body"] for _ in range(2)] == ["m0", "m1"]


async def test_bound_but_not_available_gets_them_at_initial_presence(harness: Harness) -> None:
    await harness.user("juliet")
    juliet = await harness.client("juliet@localhost/phone", presence=False)
    romeo = await harness.logged_in("romeo")
    romeo.send_message(mto="juliet@localhost", mbody="wait for me", mtype="chat")
    await asyncio.sleep(0.3)
    assert juliet.messages.empty()
    juliet.send_presence()
    assert (await juliet.next_message())["body"] == "wait for me"


# ---- registration and account deletion (XEP-0077) ---------------------------------------


async def register(harness: Harness, user: str, password: str) -> bytes:
    s = await tls_stream(harness)
    feats = await s.header()
    assert b"iq-register" in feats
    s.send("<iq type='get' id='g1'><query xmlns='jabber:iq:register'/></iq>")
    form = await s.read_until(b"</iq>")
    assert b"<username/>" in form and b"<password/>" in form
    s.send(f"<iq type='set' id='r1'><query xmlns='jabber:iq:register'><username>{user}"
           f"</username><password>{password}</password></query></iq>")
    out = await s.read_element(b"id='r1'")
    s.close()
    return out


async def test_in_band_registration_then_login(harness: Harness) -> None:
    out = await register(harness, "benvolio", "peace-keeper")
    assert b"type='result'" in out
    c = await harness.client("benvolio@localhost/r", "peace-keeper")
    assert c.boundjid.bare == "benvolio@localhost"
    again = await register(harness, "benvolio", "other-pw")
    assert b"<conflict" in again


async def test_change_password_and_delete_account(harness: Harness) -> None:
    juliet = await harness.logged_in("juliet")
    romeo = await harness.logged_in("romeo")
    await raw_iq(romeo, "<query xmlns='jabber:iq:roster'><item jid='juliet@localhost'/>"
                        "</query>", "set")
    await juliet.close()
    romeo.send_message(mto="juliet@localhost", mbody="stored", mtype="chat")
    res = await raw_iq(romeo, "<query xmlns='jabber:iq:register'><username>romeo</username>"
                              "<password>new-password</password></query>", "set",
                       to="localhost")
    assert res["type"] == "result"
    await romeo.close()
    romeo = await harness.client("romeo@localhost/x", "new-password")
    res = await raw_iq(romeo, "<vCard xmlns='vcard-temp'><FN>Romeo</FN></vCard>", "set")
    assert res["type"] == "result"
    # now juliet deletes her account
    juliet = await harness.client("juliet@localhost/y", presence=False)
    res = await raw_iq(juliet, "<query xmlns='jabber:iq:register'><remove/></query>", "set",
                       to="localhost")
    assert res["type"] == "result"
    await asyncio.wait_for(juliet.gone.wait(), 5)
    assert harness.node is not None
    db = harness.node.db
    for table in ("accounts", "offline_messages", "roster_items", "kv_store"):
        n = await db.fetchval(f"SELECT COUNT(*) FROM {table} WHERE username=?", "juliet")
        assert n == 0, table
    bad = Client("juliet@localhost/z", PASSWORD)
    harness.clients.append(bad)
    assert not await bad.login(harness.port)


# ---- service discovery and the small services -------------------------------------------


async def test_disco_lists_exactly_the_loaded_features(harness: Harness) -> None:
    c = await harness.logged_in("romeo")
    info = await c.plugin["xep_0030"].get_info(jid="localhost")
    features = set(info["disco_info"]["features"])
    assert harness.node is not None
    expected: set[str] = set()
    for mod in harness.node.modules.values():
        expected |= mod.features
    assert features == expected
    assert ("server", "im", None, "Hongyan") in info["disco_info"]["identities"]
    items = await c.plugin["xep_0030"].get_items(jid="localhost")
    assert items["type"] == "result"
    account = await c.plugin["xep_0030"].get_info(jid="romeo@localhost")
    assert any(i[0] == "account" for i in account["disco_info"]["identities"])
    # the account answers disco#items, so it says so (XEP-0030 §3.1)
    assert {"http://jabber.org/protocol/disco#info", "http://jabber.org/protocol/disco#items"
            } <= set(account["disco_info"]["features"])
    account_items = await c.plugin["xep_0030"].get_items(jid="romeo@localhost")
    assert account_items["type"] == "result"


async def test_caps_in_stream_features_match_disco(harness: Harness) -> None:
    c = await harness.logged_in("romeo")
    info = await c.plugin["xep_0030"].get_info(jid="localhost")
    # slixmpp's identity tuples are (category, type, lang, name)
    ids = sorted((i[0], i[1], i[2] or "", i[3] or "") for i in info["disco_info"]["identities"])
    text = "".join(f"{cat}/{typ}/{lang}/{name}<" for cat, typ, lang, name in ids)
    text += "".join(f + "<" for f in sorted(info["disco_info"]["features"]))
    ver = base64.b64encode(hashlib.sha1(text.encode()).digest()).decode()
    raw = await tls_stream(harness)
    await raw.header()
    raw.send(f"<auth xmlns='{SASL}' mechanism='PLAIN'>"
             f"{b64(chr(0) + 'romeo' + chr(0) + PASSWORD)}</auth>")
    await raw.read_until(b"success>")
    feats_xml = await raw.header()
    assert f"<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' " \
           f"node='https://hongyan.im' ver='{ver}'/>".encode() in feats_xml
    raw.close()


async def test_ping_version_time(harness: Harness) -> None:
    c = await harness.logged_in("romeo")
    res = await raw_iq(c, "<ping xmlns='urn:xmpp:ping'/>", to="localhost")
    assert res["type"] == "result"
    res = await raw_iq(c, "<query xmlns='jabber:iq:version'/>", to="localhost")
    q = res.xml.find("{jabber:iq:version}query")
    assert q.find("{jabber:iq:version}name").text == "Hongyan"
    res = await raw_iq(c, "<time xmlns='urn:xmpp:time'/>", to="localhost")
    t = res.xml.find("{urn:xmpp:time}time")
    from hongyan.xmpp.stamps import parse_xmpp_datetime
    utc = parse_xmpp_datetime(t.find("{urn:xmpp:time}utc").text)
    assert abs(utc - time.time()) < 60
    assert t.find("{urn:xmpp:time}tzo").text == "+00:00"


async def test_vcard_profile_with_avatar(harness: Harness) -> None:
    romeo = await harness.logged_in("romeo")
    juliet = await harness.logged_in("juliet")
    photo = base64.b64encode(b"\x89PNG fake avatar bytes").decode()
    res = await raw_iq(romeo, "<vCard xmlns='vcard-temp'><FN>Romeo Montague</FN>"
                              f"<PHOTO><TYPE>image/png</TYPE><BINVAL>{photo}</BINVAL></PHOTO>"
                              "</vCard>", "set")
    assert res["type"] == "result"
    res = await raw_iq(juliet, "<vCard xmlns='vcard-temp'/>", to="romeo@localhost")
    v = res.xml.find("{vcard-temp}vCard")
    assert v.find("{vcard-temp}FN").text == "Romeo Montague"
    assert v.find("{vcard-temp}PHOTO/{vcard-temp}BINVAL").text == photo
    res = await raw_iq(romeo, "<vCard xmlns='vcard-temp'/>")
    assert res.xml.find("{vcard-temp}vCard/{vcard-temp}FN").text == "Romeo Montague"
    res = await raw_iq(juliet, "<vCard xmlns='vcard-temp'><FN>Hacked</FN></vCard>", "set",
                       to="romeo@localhost")
    assert condition(res) == "forbidden"


async def test_private_storage(harness: Harness) -> None:
    romeo = await harness.logged_in("romeo")
    juliet = await harness.logged_in("juliet")
    res = await raw_iq(romeo, "<query xmlns='jabber:iq:private'><notes xmlns='urn:x:notes'>"
                              "<note>buy poison</note></notes></query>", "set")
    assert res["type"] == "result"
    res = await raw_iq(romeo, "<query xmlns='jabber:iq:private'><notes xmlns='urn:x:notes'/>"
                              "</query>")
    assert res.xml.find(".//{urn:x:notes}note").text == "buy poison"
    res = await raw_iq(romeo, "<query xmlns='jabber:iq:private'><x xmlns='jabber:client'/>"
                              "</query>", "set")
    assert condition(res) == "not-acceptable"
    res = await raw_iq(juliet, "<query xmlns='jabber:iq:private'><notes xmlns='urn:x:notes'/>"
                               "</query>", to="romeo@localhost")
    assert condition(res) == "forbidden"


async def test_last_activity(harness: Harness) -> None:
    romeo = await harness.logged_in("romeo", manual=True)
    juliet = await harness.logged_in("juliet", manual=True)
    stranger = await harness.logged_in("stranger")
    res = await raw_iq(romeo, "<query xmlns='jabber:iq:last'/>", to="localhost")
    up = int(res.xml.find("{jabber:iq:last}query").get("seconds"))
    await harness.clock.advance(120)  # the server's uptime runs on the node's clock
    res = await raw_iq(romeo, "<query xmlns='jabber:iq:last'/>", to="localhost")
    assert int(res.xml.find("{jabber:iq:last}query").get("seconds")) >= up + 120
    juliet.send_presence(pto="romeo@localhost", ptype="subscribe")
    await asyncio.sleep(0.2)
    romeo.send_presence(pto="juliet@localhost", ptype="subscribed")
    await asyncio.sleep(0.2)
    res = await raw_iq(juliet, "<query xmlns='jabber:iq:last'/>", to="romeo@localhost")
    assert res.xml.find("{jabber:iq:last}query").get("seconds") == "0"
    romeo.send_presence(pstatus="gone to Mantua")
    await asyncio.sleep(0.1)
    await romeo.close()
    await asyncio.sleep(0.3)
    res = await raw_iq(juliet, "<query xmlns='jabber:iq:last'/>", to="romeo@localhost")
    q = res.xml.find("{jabber:iq:last}query")
    assert int(q.get("seconds")) < 30 and q.text == "gone to Mantua"
    res = await raw_iq(stranger, "<query xmlns='jabber:iq:last'/>", to="romeo@localhost")
    assert condition(res) == "forbidden"


async def test_blocking(harness: Harness) -> None:
    await harness.user("juliet")
    juliet = await harness.client("juliet@localhost/a")
    juliet2 = await harness.client("juliet@localhost/b")
    tybalt = await harness.logged_in("tybalt")
    res = await raw_iq(juliet2, "<blocklist xmlns='urn:xmpp:blocking'/>")
    assert len(res.xml.find("{urn:xmpp:blocking}blocklist")) == 0
    pushes: asyncio.Queue[Any] = asyncio.Queue()
    from slixmpp.xmlstream.handler import Callback
    from slixmpp.xmlstream.matcher import MatchXPath
    juliet2.register_handler(Callback("block push", MatchXPath(
        "{jabber:client}iq/{urn:xmpp:blocking}block"), pushes.put_nowait))
    res = await raw_iq(juliet, "<block xmlns='urn:xmpp:blocking'><item jid='tybalt@localhost'/>"
                               "</block>", "set")
    assert res["type"] == "result"
    push = await asyncio.wait_for(pushes.get(), 5)
    assert push.xml.find(".//{urn:xmpp:blocking}item").get("jid") == "tybalt@localhost"
    tybalt.send_message(mto="juliet@localhost", mbody="draw!", mtype="chat")
    err = await tybalt.next_message()
    assert err["type"] == "error" and err["error"]["condition"] == "service-unavailable"
    juliet.send_message(mto="tybalt@localhost", mbody="never", mtype="chat")
    err = await juliet.next_message()
    assert err["error"]["condition"] == "not-acceptable"
    assert err.xml.find(".//{urn:xmpp:blocking:errors}blocked") is not None
    await harness.restart()
    juliet = await harness.client("juliet@localhost/a")
    tybalt = await harness.client("tybalt@localhost/test")
    res = await raw_iq(juliet, "<blocklist xmlns='urn:xmpp:blocking'/>")
    items = res.xml.findall(".//{urn:xmpp:blocking}item")
    assert [i.get("jid") for i in items] == ["tybalt@localhost"]
    res = await raw_iq(juliet, "<unblock xmlns='urn:xmpp:blocking'/>", "set")
    assert res["type"] == "result"
    tybalt.send_message(mto="juliet@localhost", mbody="truce", mtype="chat")
    assert (await juliet.next_message())["body"] == "truce"


async def test_disabled_module_is_gone(harness: Harness) -> None:
    await harness.stop_node()
    await harness.start(extra="[modules]\ndisabled = [\"vcard\"]\n")
    c = await harness.logged_in("romeo")
    info = await c.plugin["xep_0030"].get_info(jid="localhost")
    assert "vcard-temp" not in info["disco_info"]["features"]
    res = await raw_iq(c, "<vCard xmlns='vcard-temp'/>")
    assert condition(res) == "service-unavailable"


async def test_a_task_deaf_to_its_cancel_does_not_hold_the_stop(
        harness: Harness, monkeypatch: Any, caplog: Any) -> None:
    """A module's background task that loses its cancel (Python 3.11's wait_for swallows one
    that arrives as the awaited call fails) is cancelled again; one deaf to every cancel is
    left behind with an error naming it, and the node stops all the same."""
    import hongyan.server.module

    monkeypatch.setattr(hongyan.server.module, "RELEASE_TIMEOUT", 0.2)
    assert harness.node is not None
    cancels = {"once": 0, "deaf": 0}
    release = asyncio.Event()

    async def deaf_to(name: str, times: int) -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancels[name] += 1
                if cancels[name] > times:
                    raise

    once = harness.node.modules["ping"].api.spawn(deaf_to("once", 1))
    deaf = harness.node.modules["ping"].api.spawn(deaf_to("deaf", 1000))
    await asyncio.sleep(0)
    caplog.set_level("ERROR", logger="hongyan.mod.ping")
    await asyncio.wait_for(harness.stop_node(), 5)
    assert once.cancelled() and cancels["once"] == 2  # the second cancel ended it
    assert not deaf.done() and cancels["deaf"] == 2
    assert [r.getMessage() for r in caplog.records if "left behind" in r.getMessage()] == [
        f"background task {deaf.get_coro()} did not end when cancelled; left behind"]
    release.set()
    deaf.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(deaf, 1)
