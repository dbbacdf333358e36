"""XEP-0357 push notifications to an app server at another server, between two Hongyan nodes
(a.test and b.test) federating over real sockets, on SQLite and PostgreSQL: Alice at a.test
registers an app server at b.test (a user there, or a XEP-0114 component, as Conversations'
and Monal's push services are), leaves, and a message for her becomes a publish that crosses
s2s; the app server's answer comes back the same way."""

from __future__ import annotations

from typing import Any

from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from hongyan.xmpp.jid import JID
from tests.integration.components import SECRET, Component, components_config
from tests.integration.federation import Pair, pair
from tests.integration.test_push import (
    PUBSUB,
    AppServer,
    Notification,
    enable_xml,
    iq_set,
    push_module,
)
from tests.integration.waiting import until

__all__ = ["pair"]

APP_USER = "pushsvc@b.test/app"
APP_COMPONENT = "push.b.test"
ALICE = JID.parse("alice@a.test")


class ComponentAppServer(AppServer):
    """The app server as a XEP-0114 component: its stanzas are in the component namespace,
    and what it sends names its domain as ``from``."""

    def __init__(self, comp: Component) -> None:
        super().__init__(comp)  # type: ignore[arg-type]
        comp.register_handler(Callback(
            "push publish (component)",
            MatchXPath(f"{{jabber:component:accept}}iq/{{{PUBSUB}}}pubsub"), self._answer))

    def _answer(self, iq: Any) -> None:
        n = Notification(iq.xml)
        self.client.send_raw(f"<iq type='result' id='{n.id}' to='{n.sender}' "
                             f"from='{APP_COMPONENT}'/>")
        self.got.put_nowait(n)


async def alice_enables_then_leaves(pair: Pair, *enables: str) -> None:
    alice = await pair.a.logged_in("alice")
    for xml in enables:
        res = await iq_set(alice, xml)
        assert res["type"] == "result", res
    await alice.close()
    node = pair.a.node
    assert node is not None
    await until(lambda: not node.sessions.resources(ALICE))


async def test_push_to_an_app_server_user_at_another_server(pair: Pair) -> None:
    app = AppServer(await pair.b.logged_in("pushsvc", resource="app"))
    await alice_enables_then_leaves(pair, enable_xml(jid=APP_USER, node="phone"))
    bob = await pair.b.logged_in("bob")
    bob.send_message(mto="alice@a.test", mbody="wake up", mtype="chat")
    n = await app.next()
    assert n.sender == "alice@a.test" and n.node == "phone"
    assert n.summary == {"FORM_TYPE": "urn:xmpp:push:summary", "message-count": "1",
                         "last-message-sender": "bob@b.test/test"}
    assert n.options is not None and n.options["secret"] == "s3cr&t"
    push = push_module(pair.a)
    await until(lambda: push.sent == 1)  # the app server's result came back over s2s
    # an error from the remote app server removes the registration
    app.answer = ("cancel", "item-not-found")
    bob.send_message(mto="alice@a.test", mbody="again", mtype="chat")
    n = await app.next()
    assert n.summary is not None and n.summary["message-count"] == "2"
    await until(lambda: "alice" not in push.users)


async def test_push_to_an_app_server_component_at_another_server(pair: Pair) -> None:
    await pair.b.stop_node()
    await pair.b.start(extra=components_config(0, (APP_COMPONENT, SECRET)))
    comp = Component(APP_COMPONENT, SECRET)
    assert pair.b.node is not None
    assert await comp.start(pair.b.node.component_port)
    try:
        app = ComponentAppServer(comp)
        await alice_enables_then_leaves(pair, enable_xml(jid=APP_COMPONENT, node="tok"))
        carol = await pair.a.logged_in("carol")  # a local sender: only the publish crosses
        carol.send_message(mto="alice@a.test", mbody="hello", mtype="chat")
        n = await app.next()
        assert n.sender == "alice@a.test" and n.node == "tok"
        assert n.summary is not None and n.summary["last-message-sender"] == \
            "carol@a.test/test"
        push = push_module(pair.a)
        await until(lambda: push.sent == 1)
    finally:
        await comp.close()
