"""Where stanzas for a JID are handled (Router.resolve), without sockets: this process,
another process of the node, a service, or out of reach."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

from hongyan.server.hooks import HookBus
from hongyan.server.node import Node
from hongyan.server.router import (
    HERE,
    OUT_OF_REACH,
    PROCESS,
    SERVICE,
    THIS_PROCESS,
    UNREACHABLE,
    Router,
)
from hongyan.server.sessions import SessionManager
from hongyan.xmpp.jid import JID


class TwoProcesses:
    """A cluster of two where accounts starting with 'b' and the MUC service live on 1."""

    index = 0
    count = 2

    def home(self, username: str) -> int:
        return 1 if username.startswith("b") else 0

    def service_home(self, domain: str) -> int:
        return 1 if domain.startswith("conference.") else 0


def router() -> Router:
    node = SimpleNamespace(domain="localhost", sessions=SessionManager(), hooks=HookBus())
    return Router(cast(Node, node))


def test_one_process_handles_its_domain_and_its_services() -> None:
    r = router()
    r.register_component("conference.localhost", lambda el, s, t: None)
    assert r.resolve(JID.parse("alice@localhost/phone")) is THIS_PROCESS
    assert r.resolve(JID.parse("localhost")) is THIS_PROCESS
    svc = r.resolve(JID.parse("room@conference.localhost"))
    assert svc.kind == SERVICE and svc.handler is not None
    assert r.resolve(JID.parse("romeo@example.org")) is OUT_OF_REACH
    assert THIS_PROCESS.kind == HERE and OUT_OF_REACH.kind == UNREACHABLE


def test_with_a_cluster_accounts_and_services_resolve_to_their_home() -> None:
    r = router()
    r.register_component("conference.localhost", lambda el, s, t: None)
    r.register_component("pubsub.localhost", lambda el, s, t: None)
    r.attach(TwoProcesses())  # type: ignore[arg-type]
    bob = r.resolve(JID.parse("bob@localhost"))
    assert bob.kind == PROCESS and bob.index == 1
    assert r.resolve(JID.parse("bob@localhost/phone")) is bob  # one target per process
    assert r.resolve(JID.parse("alice@localhost")) is THIS_PROCESS
    assert r.resolve(JID.parse("localhost")) is THIS_PROCESS  # the server: every process
    room = r.resolve(JID.parse("room@conference.localhost"))
    assert room.kind == PROCESS and room.index == 1
    assert r.resolve(JID.parse("pubsub.localhost")).kind == SERVICE
    assert r.resolve(JID.parse("romeo@example.org")) is OUT_OF_REACH


def test_an_unregistered_service_is_out_of_reach_again() -> None:
    r = router()
    undo = r.register_component("conference.localhost", lambda el, s, t: None)
    undo()
    assert r.resolve(JID.parse("room@conference.localhost")) is OUT_OF_REACH
    assert "conference.localhost" not in r.components


def test_an_external_component_routes_before_it_is_listed() -> None:
    """A configured component's domain is a service from the start (a stanza reaches its
    handler, which bounces while it is not connected); disco lists it only once announced."""
    r = router()
    r.register_component("irc.localhost", lambda el, s, t: None, listed=False)
    assert r.resolve(JID.parse("#c%irc.example@irc.localhost")).kind == SERVICE
    assert "irc.localhost" not in r.components
    r.announce("irc.localhost", True)
    assert "irc.localhost" in r.components
    r.announce("irc.localhost", False)
    assert "irc.localhost" not in r.components
    r.announce("nothing.localhost", True)  # only a registered service can be listed
    assert "nothing.localhost" not in r.components
