"""The XEP-0060 service at pubsub.localhost over real sockets, on SQLite and PostgreSQL, driven
by slixmpp's xep_0060 plugin: the same engine as PEP behind a component front end."""

from __future__ import annotations

import time
from typing import Any

import pytest

from hongyan.xmpp.stamps import parse_xmpp_datetime
from tests.integration.conftest import Harness
from tests.integration.pepkit import (
    EVENT,
    PUBSUB,
    TUNE,
    error_of,
    item_ids,
    options,
    pep_client,
    raw,
    tune,
)

SERVICE = "pubsub.localhost"
NODE = "princely_musings"
DISCO_INFO = "http://jabber.org/protocol/disco#info"
DISCO_ITEMS = "http://jabber.org/protocol/disco#items"


@pytest.fixture(autouse=True)
async def hamlet_is_admin(harness: Harness) -> None:
    """Creating nodes here is for the server's administrators (pubsub.create_nodes): the
    tests' node owner is one."""
    await harness.stop_node()
    await harness.start(server_extra='admins = ["hamlet@localhost"]')


def features_of(res: Any) -> set[str]:
    return {f.get("var") for f in res.xml.iter(f"{{{DISCO_INFO}}}feature")}


async def test_discovery(harness: Harness) -> None:
    hamlet, _ = await pep_client(harness, "hamlet")
    items = await hamlet.plugin["xep_0030"].get_items(jid="localhost")
    assert SERVICE in {i.get("jid") for i in items.xml.iter(f"{{{DISCO_ITEMS}}}item")}
    info = await hamlet.plugin["xep_0030"].get_info(jid=SERVICE)
    identities = {(i.get("category"), i.get("type")) for i in info.xml.iter(
        f"{{{DISCO_INFO}}}identity")}
    assert identities == {("pubsub", "service")}
    features = features_of(info)
    for f in ("create-nodes", "instant-nodes", "config-node", "delete-nodes", "publish",
              "subscribe", "retrieve-items", "retract-items", "modify-affiliations",
              "retrieve-affiliations", "retrieve-subscriptions", "access-open",
              "access-whitelist", "persistent-items"):
        assert f"{PUBSUB}#{f}" in features, f
    # PEP-only features are not claimed here
    assert f"{PUBSUB}#access-presence" not in features
    assert f"{PUBSUB}#auto-create" in features


async def test_node_life_cycle(harness: Harness) -> None:
    hamlet, _ = await pep_client(harness, "hamlet")
    horatio, horatio_ev = await pep_client(harness, "horatio")
    h60, o60 = hamlet.plugin["xep_0060"], horatio.plugin["xep_0060"]
    await h60.create_node(SERVICE, NODE)
    res = await h60.get_node_config(SERVICE, NODE)
    values = {f.get("var"): f.findtext("{jabber:x:data}value")
              for f in res.xml.find(".//{jabber:x:data}x")}
    assert values["pubsub#access_model"] == "open"
    await h60.set_node_config(SERVICE, NODE, options({"pubsub#max_items": "10",
                                                      "pubsub#title": "Musings"},
                                                     PUBSUB + "#node_config"))
    # the node is listed with its title
    items = await horatio.plugin["xep_0030"].get_items(jid=SERVICE)
    assert [(i.get("node"), i.get("name")) for i in items.xml.iter(f"{{{DISCO_ITEMS}}}item")] \
        == [(NODE, "Musings")]
    sub = await o60.subscribe(SERVICE, NODE)
    assert sub.xml.find(f".//{{{PUBSUB}}}subscription").get("subscription") == "subscribed"
    await h60.publish(SERVICE, NODE, id="ae890ac52d0df67ed7cfdf51b644e901",
                      payload=tune("To be, or not to be"))
    ev = await horatio_ev.next()
    assert ev.get("from") == SERVICE
    assert ev.find(f".//{{{EVENT}}}item").get("id") == "ae890ac52d0df67ed7cfdf51b644e901"
    assert item_ids(await o60.get_items(SERVICE, NODE)) == ["ae890ac52d0df67ed7cfdf51b644e901"]
    subs = await o60.get_subscriptions(SERVICE)
    assert [s.get("node") for s in subs.xml.iter(f"{{{PUBSUB}}}subscription")] == [NODE]
    affs = await h60.get_affiliations(SERVICE)
    assert [(a.get("node"), a.get("affiliation")) for a in
            affs.xml.iter(f"{{{PUBSUB}}}affiliation")] == [(NODE, "owner")]
    # a publisher affiliation lets horatio publish
    await h60.modify_affiliations(SERVICE, NODE, [("horatio@localhost", "publisher")])
    await o60.publish(SERVICE, NODE, id="h1", payload=tune("There are more things"))
    await horatio_ev.next()
    await h60.retract(SERVICE, NODE, "h1", notify=True)
    assert (await horatio_ev.next()).find(f".//{{{EVENT}}}retract").get("id") == "h1"
    # it survives a restart
    await harness.restart()
    hamlet, _ = await pep_client(harness, "hamlet", create=False)
    horatio, horatio_ev = await pep_client(harness, "horatio", create=False)
    # coming online, the subscriber gets the last item (send_last_published_item)
    assert (await horatio_ev.next()).find(f".//{{{EVENT}}}item").get("id") == \
        "ae890ac52d0df67ed7cfdf51b644e901"
    h60 = hamlet.plugin["xep_0060"]
    assert item_ids(await h60.get_items(SERVICE, NODE)) == ["ae890ac52d0df67ed7cfdf51b644e901"]
    await h60.delete_node(SERVICE, NODE)
    assert (await horatio_ev.next()).find(f".//{{{EVENT}}}delete").get("node") == NODE
    gone = await raw(hamlet, SERVICE, f"<pubsub xmlns='{PUBSUB}'><items node='{NODE}'/></pubsub>")
    assert error_of(gone)[0] == "item-not-found"


async def test_instant_node_and_publish_autocreate(harness: Harness) -> None:
    hamlet, _ = await pep_client(harness, "hamlet")
    res = await raw(hamlet, SERVICE, f"<pubsub xmlns='{PUBSUB}'><create/></pubsub>", "set")
    name = res.xml.find(f".//{{{PUBSUB}}}create").get("node")
    assert name
    await hamlet.plugin["xep_0060"].publish(SERVICE, "auto", id="1", payload=tune("x"))
    owned = await hamlet.plugin["xep_0060"].get_affiliations(SERVICE)
    assert {a.get("node") for a in owned.xml.iter(f"{{{PUBSUB}}}affiliation")} == {name, "auto"}


async def test_bad_input(harness: Harness) -> None:
    hamlet, _ = await pep_client(harness, "hamlet")
    horatio, _ = await pep_client(harness, "horatio")
    await hamlet.plugin["xep_0060"].create_node(SERVICE, NODE)
    publish = (f"<pubsub xmlns='{PUBSUB}'><publish node='{NODE}'><item id='x'>"
               "<tune xmlns='http://jabber.org/protocol/tune'/></item></publish></pubsub>")
    assert error_of(await raw(horatio, SERVICE, publish, "set"))[0] == "forbidden"
    configure = f"<pubsub xmlns='{PUBSUB}#owner'><configure node='{NODE}'/></pubsub>"
    assert error_of(await raw(horatio, SERVICE, configure))[0] == "forbidden"
    delete = f"<pubsub xmlns='{PUBSUB}#owner'><delete node='{NODE}'/></pubsub>"
    assert error_of(await raw(horatio, SERVICE, delete, "set"))[0] == "forbidden"
    create = f"<pubsub xmlns='{PUBSUB}'><create node='{NODE}'/></pubsub>"
    assert error_of(await raw(horatio, SERVICE, create, "set"))[0] == "forbidden"
    assert error_of(await raw(hamlet, SERVICE, create, "set"))[0] == "conflict"
    missing = f"<pubsub xmlns='{PUBSUB}'><items node='nowhere'/></pubsub>"
    assert error_of(await raw(horatio, SERVICE, missing))[0] == "item-not-found"
    # subscribing someone else
    other = (f"<pubsub xmlns='{PUBSUB}'><subscribe node='{NODE}' jid='hamlet@localhost'/>"
             "</pubsub>")
    assert error_of(await raw(horatio, SERVICE, other, "set"))[:2] == ("bad-request",
                                                                     "invalid-jid")
    # whitelist: closed to non-members
    await hamlet.plugin["xep_0060"].set_node_config(SERVICE, NODE, options(
        {"pubsub#access_model": "whitelist"}, PUBSUB + "#node_config"))
    sub = (f"<pubsub xmlns='{PUBSUB}'><subscribe node='{NODE}' jid='horatio@localhost'/>"
           "</pubsub>")
    assert error_of(await raw(horatio, SERVICE, sub, "set"))[:2] == ("not-allowed",
                                                                   "closed-node")
    # the presence access model exists only in PEP
    res = await raw(hamlet, SERVICE, f"<pubsub xmlns='{PUBSUB}#owner'><configure node='{NODE}'>"
                    "<x xmlns='jabber:x:data' type='submit'><field var='pubsub#access_model'>"
                    "<value>presence</value></field></x></configure></pubsub>", "set")
    assert error_of(res)[0] == "not-acceptable"


async def test_service_can_be_switched_off_and_pep_stays(harness: Harness) -> None:
    await harness.stop_node()
    await harness.start(extra="[pubsub]\nservice = false\n")
    hamlet, _ = await pep_client(harness, "hamlet")
    items = await hamlet.plugin["xep_0030"].get_items(jid="localhost")
    assert SERVICE not in {i.get("jid") for i in items.xml.iter(f"{{{DISCO_ITEMS}}}item")}
    res = await raw(hamlet, SERVICE, f"<query xmlns='{DISCO_INFO}'/>")
    assert error_of(res)[0] == "remote-server-not-found"
    await hamlet.plugin["xep_0060"].publish(None, NODE, id="1", payload=tune("still PEP"))
    assert item_ids(await hamlet.plugin["xep_0060"].get_items("hamlet@localhost", NODE)) == ["1"]


async def test_publish_must_match_the_event_type(harness: Harness) -> None:
    """XEP-0060 §4.3 and §7.1.3: what a publish request carries must fit the node's event
    type (persistent or transient, notification-only or with payloads)."""
    hamlet, _ = await pep_client(harness, "hamlet")
    horatio, horatio_ev = await pep_client(harness, "horatio")
    h60 = hamlet.plugin["xep_0060"]

    async def node(name: str, persist: str, deliver: str, **more: str) -> None:
        fields = {"pubsub#persist_items": persist, "pubsub#deliver_payloads": deliver, **more}
        await raw(hamlet, SERVICE, f"<pubsub xmlns='{PUBSUB}'><create node='{name}'/>"
                  f"<configure>{form_xml(fields)}</configure></pubsub>", "set")
        await horatio.plugin["xep_0060"].subscribe(SERVICE, name)

    def publish(name: str, item: str) -> str:
        return f"<pubsub xmlns='{PUBSUB}'><publish node='{name}'>{item}</publish></pubsub>"

    with_payload = "<item id='a'><tune xmlns='http://jabber.org/protocol/tune'/></item>"
    # transient, notification-only: no item at all (§7.1.3.6 item-forbidden)
    await node("flash", "0", "0")
    for item in (with_payload, "<item id='a'/>", "<item/>"):
        res = await raw(hamlet, SERVICE, publish("flash", item), "set")
        assert error_of(res)[:2] == ("bad-request", "item-forbidden"), item
    res = await raw(hamlet, SERVICE, publish("flash", ""), "set")
    assert res["type"] == "result"
    assert res.xml.find(f".//{{{PUBSUB}}}publish/{{{PUBSUB}}}item") is None
    ev = await horatio_ev.next()
    items = ev.find(f".//{{{EVENT}}}items")
    assert items.get("node") == "flash" and len(items) == 0
    await horatio_ev.none()
    assert item_ids(await h60.get_items(SERVICE, "flash")) == []
    # persistent with payloads: an item (item-required) with a payload (payload-required),
    # of the node's pubsub#type when it has one (§7.1.3.5 invalid-payload)
    await node("news", "1", "1", **{"pubsub#type": "http://jabber.org/protocol/tune"})
    for item, app in (("", "item-required"), ("<item id='a'/>", "payload-required"),
                      ("<item/>", "payload-required"),
                      ("<item id='a'><mood xmlns='http://jabber.org/protocol/mood'/></item>",
                       "invalid-payload"),
                      ("<item id='a'><tune xmlns='http://jabber.org/protocol/tune'/>"
                       "<tune xmlns='http://jabber.org/protocol/tune'/></item>",
                       "invalid-payload")):
        res = await raw(hamlet, SERVICE, publish("news", item), "set")
        assert error_of(res)[:2] == ("bad-request", app), item
    await horatio_ev.none()
    res = await raw(hamlet, SERVICE, publish("news", with_payload), "set")
    assert res["type"] == "result"
    assert (await horatio_ev.next()).find(f".//{{{EVENT}}}item/{{{TUNE}}}tune") is not None
    # persistent, notification-only: an item, with or without payload; none in notifications
    await node("quiet", "1", "0")
    res = await raw(hamlet, SERVICE, publish("quiet", ""), "set")
    assert error_of(res)[:2] == ("bad-request", "item-required")
    await raw(hamlet, SERVICE, publish("quiet", with_payload), "set")
    ev = await horatio_ev.next()
    assert ev.find(f".//{{{EVENT}}}item").get("id") == "a" and len(
        ev.find(f".//{{{EVENT}}}item")) == 0
    stored = await h60.get_items(SERVICE, "quiet")
    assert stored.xml.find(f".//{{{PUBSUB}}}item/{{{TUNE}}}tune") is not None
    # a refused publish to a node that does not exist creates none
    res = await raw(hamlet, SERVICE, publish("never", ""), "set")
    assert error_of(res)[:2] == ("bad-request", "item-required")
    missing = await raw(hamlet, SERVICE, f"<pubsub xmlns='{PUBSUB}'><items node='never'/>"
                        "</pubsub>")
    assert error_of(missing)[0] == "item-not-found"


def form_xml(fields: dict[str, str]) -> str:
    """A submitted pubsub#node_config form, as XML."""
    out = ("<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>"
           f"<value>{PUBSUB}#node_config</value></field>")
    for var, value in fields.items():
        out += f"<field var='{var}'><value>{value}</value></field>"
    return out + "</x>"


async def test_last_item_on_subscribe_carries_a_delay(harness: Harness) -> None:
    """XEP-0060 §6.1.7: the last published item sent to a new subscriber is stamped with a
    XEP-0203 delay (when it was published), so a client does not take it for news."""
    hamlet, _ = await pep_client(harness, "hamlet")
    horatio, horatio_ev = await pep_client(harness, "horatio")
    await hamlet.plugin["xep_0060"].create_node(SERVICE, NODE)
    before = time.time()
    await hamlet.plugin["xep_0060"].publish(SERVICE, NODE, id="old", payload=tune("x"))
    after = time.time()
    await horatio.plugin["xep_0060"].subscribe(SERVICE, NODE)
    ev = await horatio_ev.next()
    assert ev.find(f".//{{{EVENT}}}item").get("id") == "old"
    delay = ev.find("{urn:xmpp:delay}delay")
    assert delay is not None and delay.get("from") == SERVICE
    assert before - 0.01 <= parse_xmpp_datetime(delay.get("stamp")) <= after + 0.01
    # a live notification has none
    await hamlet.plugin["xep_0060"].publish(SERVICE, NODE, id="new", payload=tune("y"))
    live = await horatio_ev.next()
    assert live.find(f".//{{{EVENT}}}item").get("id") == "new"
    assert live.find("{urn:xmpp:delay}delay") is None


async def test_node_creation_follows_the_configured_policy(harness: Harness) -> None:
    """By default only the server's administrators (server.admins) create nodes on the
    service (XEP-0060 §8.1.3.1: forbidden), by name, instantly or by publishing; with
    pubsub.create_nodes = "users" every local user does. PEP is untouched."""
    await harness.stop_node()
    # the configured JID is prepared (RFC 7622) before it is compared
    await harness.start(server_extra='admins = ["Hamlet@LOCALHOST"]')
    hamlet, _ = await pep_client(harness, "hamlet")
    horatio, _ = await pep_client(harness, "horatio")
    named = f"<pubsub xmlns='{PUBSUB}'><create node='mine'/></pubsub>"
    instant = f"<pubsub xmlns='{PUBSUB}'><create/></pubsub>"
    publish = (f"<pubsub xmlns='{PUBSUB}'><publish node='auto'><item id='1'>"
               f"<tune xmlns='{TUNE}'/></item></publish></pubsub>")
    for request in (named, instant, publish):
        res = await raw(horatio, SERVICE, request, "set")
        assert error_of(res)[0] == "forbidden", request
        assert (await raw(hamlet, SERVICE, request, "set"))["type"] == "result", request
    # nothing was made for horatio; his own PEP is his to fill
    affs = await horatio.plugin["xep_0060"].get_affiliations(SERVICE)
    assert list(affs.xml.iter(f"{{{PUBSUB}}}affiliation")) == []
    await horatio.plugin["xep_0060"].publish(None, NODE, id="1", payload=tune("mine"))
    # anyone, when configured so
    await harness.stop_node()
    await harness.start(extra='[pubsub]\ncreate_nodes = "users"\n', server_extra="")
    horatio, _ = await pep_client(harness, "horatio", create=False)
    for request in (named.replace("mine", "his"), instant):
        assert (await raw(horatio, SERVICE, request, "set"))["type"] == "result", request
