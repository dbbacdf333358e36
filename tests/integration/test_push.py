"""XEP-0357 Push Notifications through the front door. The app server is a real second XMPP
entity: a slixmpp client logged in as ``pushsvc@localhost/app`` that answers pubsub publishes
with a result, an error, or nothing. Alice enables push (from a slixmpp client, or from a raw
stream when her stream-management session must hibernate); Bob writes to her."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from typing import Any

from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from hongyan.modules.events import OfflineStored, QueuedForResumption
from hongyan.modules.push import Push
from hongyan.xmpp.jid import JID
from tests.integration.clients import TIMEOUT, Client
from tests.integration.conftest import Harness
from tests.integration.rawstream import authed_stream
from tests.integration.test_im import wait_presence
from tests.integration.test_sm import SM, authed_only, bodies, cut, enable
from tests.integration.waiting import quiet, until

PUSH = "urn:xmpp:push:0"
PUBSUB = "http://jabber.org/protocol/pubsub"
XDATA = "jabber:x:data"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
APP = "pushsvc@localhost/app"
ALICE = JID.parse("alice@localhost")
OPTIONS = (f"<x xmlns='{XDATA}' type='submit'>"
           "<field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options"
           "</value></field><field var='secret'><value>s3cr&amp;t</value></field></x>")


class Notification:
    """What the app server received, read from the IQ like an app server would."""

    def __init__(self, xml: ET.Element) -> None:
        self.xml = xml
        self.id = xml.get("id", "")
        self.sender = xml.get("from", "")
        ps = xml.find(f"{{{PUBSUB}}}pubsub")
        assert ps is not None, ET.tostring(xml)
        publish = ps.find(f"{{{PUBSUB}}}publish")
        assert publish is not None
        self.node = publish.get("node")
        note = publish.find(f"{{{PUBSUB}}}item/{{{PUSH}}}notification")
        assert note is not None, ET.tostring(xml)
        self.summary = _fields(note.find(f"{{{XDATA}}}x"))
        self.options = _fields(ps.find(f"{{{PUBSUB}}}publish-options/{{{XDATA}}}x"))


def _fields(x: ET.Element | None) -> dict[str, str] | None:
    if x is None:
        return None
    return {f.get("var", ""): f.findtext(f"{{{XDATA}}}value", "")
            for f in x.findall(f"{{{XDATA}}}field")}


class AppServer:
    """A slixmpp client acting as a XEP-0357 app server. ``answer`` decides the reply to each
    publish: ``None`` a result, ``(type, condition)`` an error, ``"silent"`` nothing."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.got: asyncio.Queue[Notification] = asyncio.Queue()
        self.answers: list[tuple[str, str] | str | None] = []  # consumed first, one per publish
        self.answer: tuple[str, str] | str | None = None
        client.register_handler(Callback(
            "push publish", MatchXPath(f"{{jabber:client}}iq/{{{PUBSUB}}}pubsub"),
            self._on_publish))

    def _on_publish(self, iq: Any) -> None:
        n = Notification(iq.xml)
        answer = self.answers.pop(0) if self.answers else self.answer
        if answer is None:
            self.client.send_raw(f"<iq type='result' id='{n.id}' to='{n.sender}'/>")
        elif isinstance(answer, tuple):
            etype, condition = answer
            self.client.send_raw(
                f"<iq type='error' id='{n.id}' to='{n.sender}'><error type='{etype}'>"
                f"<{condition} xmlns='{STANZAS}'/></error></iq>")
        self.got.put_nowait(n)

    async def next(self, timeout: float = TIMEOUT) -> Notification:
        return await asyncio.wait_for(self.got.get(), timeout)

    async def nothing(self, wait: float = 0.5) -> None:
        """Nothing arrives within ``wait`` seconds (only after an event that would have come
        first: a bounded wait for an absence)."""
        await quiet(self.got.get(), wait, "notification")


async def app_server(harness: Harness, name: str = "pushsvc") -> AppServer:
    return AppServer(await harness.logged_in(name, resource="app"))


async def iq_set(c: Client, payload: str, to: str | None = None) -> Any:
    iq = c.make_iq_set(ito=to)
    return await c.send_raw_iq(iq, payload, TIMEOUT)


def enable_xml(jid: str = APP, node: str = "n1", form: str = OPTIONS) -> str:
    return f"<enable xmlns='{PUSH}' jid='{jid}' node='{node}'>{form}</enable>"


def push_module(harness: Harness) -> Push:
    assert harness.node is not None
    mod = harness.node.modules["push"]
    assert isinstance(mod, Push)
    return mod


async def alice_enables_then_leaves(harness: Harness, *enables: str) -> None:
    alice = await harness.logged_in("alice")
    for xml in enables or (enable_xml(),):
        res = await iq_set(alice, xml)
        assert res["type"] == "result", res
    await alice.close()
    node = harness.node
    assert node is not None
    await until(lambda: not node.sessions.resources(ALICE))


# ---- tests ----------------------------------------------------------------------------------


async def test_disco_advertises_push_on_the_account(harness: Harness) -> None:
    alice = await harness.logged_in("alice")
    info = await alice.plugin["xep_0030"].get_info(jid="alice@localhost")
    assert PUSH in set(info["disco_info"]["features"])
    server = await alice.plugin["xep_0030"].get_info(jid="localhost")
    assert PUSH not in set(server["disco_info"]["features"])


async def test_offline_user_gets_notified(harness: Harness) -> None:
    app = await app_server(harness)
    node = harness.node
    assert node is not None
    assert not node.hooks.has(OfflineStored)  # nobody enabled push: no hook on the path
    await alice_enables_then_leaves(harness)
    assert node.hooks.has(OfflineStored) and node.hooks.has(QueuedForResumption)
    bob = await harness.logged_in("bob")
    bob.send_message(mto="alice@localhost", mbody="secret words", mtype="chat")
    n = await app.next()
    assert n.sender == "alice@localhost" and n.node == "n1"
    assert n.summary == {"FORM_TYPE": "urn:xmpp:push:summary", "message-count": "1",
                         "last-message-sender": "bob@localhost/test"}  # no body by default
    assert n.options == {"FORM_TYPE": "http://jabber.org/protocol/pubsub#publish-options",
                         "secret": "s3cr&t"}
    # a chat state alone is not worth a notification; the next message counts 2
    bob.send_raw("<message to='alice@localhost' type='chat'>"
                 "<composing xmlns='http://jabber.org/protocol/chatstates'/></message>")
    bob.send_message(mto="alice@localhost", mbody="again", mtype="chat")
    n = await app.next()
    assert n.summary is not None and n.summary["message-count"] == "2"
    # Alice comes back: she gets the messages, the count starts again
    alice = await harness.client("alice@localhost/phone")
    assert [(await alice.next_message())["body"] for _ in range(2)] == ["secret words", "again"]
    await alice.close()
    await until(lambda: push_module(harness).counts.get("alice") is None)
    bob.send_message(mto="alice@localhost", mbody="third", mtype="chat")
    n = await app.next()
    assert n.summary is not None and n.summary["message-count"] == "1"
    push = push_module(harness)
    await until(lambda: push.sent == 3)  # each result reached the server


async def test_body_only_when_configured(harness: Harness) -> None:
    await harness.stop_node()
    await harness.start(extra="[push]\ninclude_body = true\n")
    app = await app_server(harness)
    await alice_enables_then_leaves(harness, enable_xml(form=""))
    bob = await harness.logged_in("bob")
    bob.send_message(mto="alice@localhost", mbody="Wherefore art thou?", mtype="chat")
    n = await app.next()
    assert n.summary is not None and n.summary["last-message-body"] == "Wherefore art thou?"
    assert n.options is None  # enabled without a form: no publish-options
    # an encrypted message notifies, but its body is only a fallback text: not shown
    bob.send_raw("<message to='alice@localhost' type='chat'><body>I sent you an OMEMO "
                 "message</body><encrypted xmlns='eu.siacs.conversations.axolotl'>"
                 "<header sid='1'/></encrypted></message>")
    n = await app.next()
    assert n.summary is not None and "last-message-body" not in n.summary
    assert n.summary["message-count"] == "2"


async def test_hibernated_session_gets_notified(harness: Harness) -> None:
    app = await app_server(harness)
    s = await authed_stream(harness, "alice")
    sid = await enable(s)
    s.send(f"<iq type='set' id='e1'>{enable_xml(node='phone')}</iq>")
    assert b"type='result'" in await s.read_element(b"id='e1'")
    s.send("<presence/>")
    bob = await harness.logged_in("bob")
    bob.send_message(mto="alice@localhost", mbody="while online", mtype="chat")
    assert await bodies(s, 1) == ["while online"]  # online: no notification
    cut(s)
    assert harness.node is not None
    session = harness.node.sessions.resources(ALICE)[0]
    await until(lambda: session.sm is not None and session.sm.timer is not None)
    bob.send_message(mto="alice@localhost", mbody="wake up", mtype="chat")
    n = await app.next()
    assert n.node == "phone" and n.summary is not None
    assert n.summary["message-count"] == "1"
    assert n.summary["last-message-sender"] == "bob@localhost/test"
    # a subscription request queued to the hibernated session notifies too
    bob.send_presence(pto="alice@localhost", ptype="subscribe")
    n = await app.next()
    assert n.summary == {"FORM_TYPE": "urn:xmpp:push:summary", "message-count": "1",
                         "pending-subscription-count": "1"}
    # the session is still there for the phone to resume, with the message
    s2 = await authed_only(harness, "alice")
    s2.send(f"<resume xmlns='{SM}' previd='{sid}' h='0'/>")  # nothing acknowledged
    await s2.read_element(b"<resumed")
    assert await bodies(s2, 2) == ["while online", "wake up"]
    await s2.read_until(b"<presence type='subscribe'")  # and the request
    s2.close()


async def test_disable(harness: Harness) -> None:
    app = await app_server(harness)
    sentinel = await app_server(harness, "pushsvc2")
    await alice_enables_then_leaves(
        harness, enable_xml(node="a"), enable_xml(node="b"),
        enable_xml(jid="pushsvc2@localhost/app", node="c", form=""))
    alice = await harness.client("alice@localhost/desk", presence=False)
    # disable one node of the app server
    assert (await iq_set(alice, f"<disable xmlns='{PUSH}' jid='{APP}' node='a'/>"))["type"] \
        == "result"
    bob = await harness.logged_in("bob")
    bob.send_message(mto="alice@localhost", mbody="one", mtype="chat")
    assert (await sentinel.next()).node == "c"
    assert (await app.next()).node == "b"
    await app.nothing()
    # disable every node of the app server
    assert (await iq_set(alice, f"<disable xmlns='{PUSH}' jid='{APP}'/>"))["type"] == "result"
    bob.send_message(mto="alice@localhost", mbody="two", mtype="chat")
    assert (await sentinel.next()).node == "c"
    await app.nothing()
    # and the last one: the hooks are gone from the message path
    assert (await iq_set(alice, f"<disable xmlns='{PUSH}' jid='pushsvc2@localhost/app'/>")
            )["type"] == "result"
    assert harness.node is not None and not harness.node.hooks.has(OfflineStored)
    assert harness.storage_url and not await harness.node.db.fetchall(
        "SELECT * FROM push_registrations")


async def test_app_server_error_removes_registration(harness: Harness) -> None:
    app = await app_server(harness)
    sentinel = await app_server(harness, "pushsvc2")
    await alice_enables_then_leaves(
        harness, enable_xml(node="gone"), enable_xml(jid="pushsvc2@localhost/app", node="c"))
    app.answer = ("cancel", "item-not-found")
    bob = await harness.logged_in("bob")
    bob.send_message(mto="alice@localhost", mbody="one", mtype="chat")
    assert (await app.next()).node == "gone"
    await sentinel.next()
    push = push_module(harness)
    await until(lambda: list(push.users.get("alice", {})) == [("pushsvc2@localhost/app", "c")])
    assert harness.node is not None
    # the row goes right after the in-memory entry (its DELETE is awaited after it): wait for it
    rows: list[tuple[Any, ...]] = []
    for _ in range(100):
        rows = [tuple(r) for r in
                await harness.node.db.fetchall("SELECT jid, node FROM push_registrations")]
        if rows == [("pushsvc2@localhost/app", "c")]:
            break
        await asyncio.sleep(0.05)
    assert rows == [("pushsvc2@localhost/app", "c")]
    bob.send_message(mto="alice@localhost", mbody="two", mtype="chat")
    await sentinel.next()
    await app.nothing()


async def test_wait_error_is_retried(harness: Harness) -> None:
    await harness.stop_node()
    await harness.start(extra="[push]\nretry_delay = 0.05\n")
    app = await app_server(harness)
    await alice_enables_then_leaves(harness)
    app.answers = [("wait", "resource-constraint")]  # then a result
    bob = await harness.logged_in("bob")
    bob.send_message(mto="alice@localhost", mbody="one", mtype="chat")
    first, second = await app.next(), await app.next()
    assert first.id != second.id and first.summary == second.summary
    push = push_module(harness)
    await until(lambda: push.sent == 1)
    assert ("alice" in push.users) and push.given_up == 0


async def test_silent_app_server_bounded_retries(harness: Harness) -> None:
    await harness.stop_node()
    await harness.start(extra="[push]\ntimeout = 0.3\nretries = 2\nretry_delay = 0.05\n")
    app = await app_server(harness)
    app.answer = "silent"
    await alice_enables_then_leaves(harness)
    bob = await harness.logged_in("bob")
    bob.send_message(mto="alice@localhost", mbody="one", mtype="chat")
    got = [await app.next() for _ in range(3)]  # the first try and two retries
    assert len({n.id for n in got}) == 3
    push = push_module(harness)
    await until(lambda: push.given_up == 1)
    await app.nothing(0.6)  # no fourth try
    assert list(push.users["alice"]) == [(APP, "n1")]  # a silent server is not a refusal


async def test_unreachable_app_server(harness: Harness) -> None:
    # a remote app server (no federation yet): this notification is given up, nothing retried,
    # and the registration stays (the server is unreachable, not wrong)
    await alice_enables_then_leaves(harness, enable_xml(jid="push.example.org", node="x"))
    bob = await harness.logged_in("bob")
    bob.send_message(mto="alice@localhost", mbody="one", mtype="chat")
    push = push_module(harness)
    await until(lambda: push.given_up == 1)
    assert list(push.users["alice"]) == [("push.example.org", "x")]


async def test_enable_bad_input(harness: Harness) -> None:
    alice = await harness.logged_in("alice")
    await harness.user("bob")

    async def error(payload: str, to: str | None = None) -> tuple[str, str]:
        res = await iq_set(alice, payload, to)
        assert res["type"] == "error", res
        return res["error"]["type"], res["error"]["condition"]

    assert await error(f"<enable xmlns='{PUSH}' node='n'/>") == ("modify", "bad-request")
    assert await error(f"<enable xmlns='{PUSH}' jid='{APP}'/>") == ("modify", "bad-request")
    assert await error(f"<enable xmlns='{PUSH}' jid='a@b@c' node='n'/>") == \
        ("modify", "jid-malformed")
    wrong_form = (f"<enable xmlns='{PUSH}' jid='{APP}' node='n'><x xmlns='{XDATA}' "
                  "type='submit'><field var='FORM_TYPE'><value>urn:example</value></field>"
                  "</x></enable>")
    assert await error(wrong_form) == ("modify", "bad-request")
    assert await error(enable_xml(), to="bob@localhost") == ("auth", "forbidden")
    assert await error(f"<disable xmlns='{PUSH}'/>") == ("modify", "bad-request")
    assert "alice" not in push_module(harness).users
    # enabling twice keeps one registration, with the latest form
    for _ in range(2):
        assert (await iq_set(alice, enable_xml()))["type"] == "result"
    assert list(push_module(harness).users["alice"]) == [(APP, "n1")]


async def test_registration_limit_replaces_oldest(harness: Harness) -> None:
    await harness.stop_node()
    await harness.start(extra="[push]\nmax_per_user = 2\n")
    alice = await harness.logged_in("alice")
    for node in ("a", "b", "c"):
        assert (await iq_set(alice, enable_xml(node=node)))["type"] == "result"
    assert [k[1] for k in push_module(harness).users["alice"]] == ["b", "c"]
    assert harness.node is not None
    rows = await harness.node.db.fetchall("SELECT node FROM push_registrations ORDER BY node")
    assert [r[0] for r in rows] == ["b", "c"]


async def test_registration_survives_restart(harness: Harness) -> None:
    await alice_enables_then_leaves(harness)
    await harness.restart()
    app = await app_server(harness)
    bob = await harness.logged_in("bob")
    bob.send_message(mto="alice@localhost", mbody="after restart", mtype="chat")
    n = await app.next()
    assert n.node == "n1" and n.options is not None and n.options["secret"] == "s3cr&t"


async def test_account_deletion_removes_registrations(harness: Harness) -> None:
    await alice_enables_then_leaves(harness)
    assert harness.node is not None
    assert await harness.node.delete_account("alice")
    assert "alice" not in push_module(harness).users
    assert not await harness.node.db.fetchall("SELECT * FROM push_registrations")


async def test_expired_hibernation_does_not_notify_twice(harness: Harness) -> None:
    await harness.stop_node()
    await harness.start(extra="[sm]\nresume_timeout = 1\n")
    app = await app_server(harness)
    s = await authed_stream(harness, "alice")
    await enable(s)
    s.send(f"<iq type='set' id='e1'>{enable_xml()}</iq>")
    assert b"type='result'" in await s.read_element(b"id='e1'")
    cut(s)
    assert harness.node is not None
    session = harness.node.sessions.resources(ALICE)[0]
    await until(lambda: session.sm is not None and session.sm.timer is not None)
    bob = await harness.logged_in("bob")
    bob.send_message(mto="alice@localhost/raw", mbody="queued", mtype="chat")
    assert (await app.next()).summary == {"FORM_TYPE": "urn:xmpp:push:summary",
                                          "message-count": "1",
                                          "last-message-sender": "bob@localhost/test"}
    # the session expires: its message goes to offline storage without a second notification
    node = harness.node
    await until(lambda: not node.sessions.resources(ALICE), timeout=5)
    await until(lambda: session.sm is None)
    await app.nothing(0.5)
    alice = await harness.client("alice@localhost/phone")
    assert (await alice.next_message())["body"] == "queued"


async def test_subscription_request_to_offline_user(harness: Harness) -> None:
    app = await app_server(harness)
    await alice_enables_then_leaves(harness)
    bob = await harness.logged_in("bob")
    bob.send_presence(pto="alice@localhost", ptype="subscribe")
    n = await app.next()
    assert n.summary == {"FORM_TYPE": "urn:xmpp:push:summary",
                         "pending-subscription-count": "1"}
    bob.send_message(mto="alice@localhost", mbody="hi, add me", mtype="chat")
    n = await app.next()
    assert n.summary == {"FORM_TYPE": "urn:xmpp:push:summary", "message-count": "1",
                         "pending-subscription-count": "1",
                         "last-message-sender": "bob@localhost/test"}
    # Alice sees the request when she logs in
    alice = await harness.client("alice@localhost/phone", manual=True)
    assert (await wait_presence(alice, "bob@localhost", "subscribe"))["type"] == "subscribe"
