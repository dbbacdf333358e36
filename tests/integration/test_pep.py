"""XEP-0163 PEP over real sockets, on SQLite and PostgreSQL: slixmpp clients (xep_0060,
xep_0163, xep_0115) publish, read, configure and receive notifications from Hongyan."""

from __future__ import annotations

from slixmpp.xmlstream import ET

from tests.integration.conftest import Harness
from tests.integration.pepkit import (
    EVENT,
    MOOD,
    PUBSUB,
    TUNE,
    befriend,
    caps_known,
    error_of,
    item_ids,
    options,
    pep_client,
    raw,
    tune,
)


# ---- publishing and retrieving ------------------------------------------------------------
async def test_publish_autocreate_items_retract(harness: Harness) -> None:
    romeo, _ = await pep_client(harness, "romeo")
    xep60 = romeo.plugin["xep_0060"]
    for n in range(3):
        await xep60.publish(None, TUNE, id=f"t{n}", payload=tune(f"song {n}"),
                            options=options({"pubsub#max_items": "2"}))
    res = await xep60.get_items("romeo@localhost", TUNE)
    assert item_ids(res) == ["t1", "t2"]  # max_items 2 kept the two newest, oldest first
    res = await xep60.get_items("romeo@localhost", TUNE, max_items=1)
    assert item_ids(res) == ["t2"]
    assert "song 2" in ET.tostring(res.xml).decode()
    res = await xep60.get_items("romeo@localhost", TUNE, item_ids=["t1"])
    assert item_ids(res) == ["t1"]
    # republishing an id replaces it and makes it the newest
    await xep60.publish(None, TUNE, id="t1", payload=tune("again"))
    assert item_ids(await xep60.get_items("romeo@localhost", TUNE)) == ["t2", "t1"]
    await xep60.retract("romeo@localhost", TUNE, "t1")
    assert item_ids(await xep60.get_items("romeo@localhost", TUNE)) == ["t2"]
    # an item without id gets one
    res = await xep60.publish(None, TUNE, payload=tune("anonymous"))
    new_id = res.xml.find(f".//{{{PUBSUB}}}item").get("id")
    assert new_id and item_ids(await xep60.get_items("romeo@localhost", TUNE))[-1] == new_id


async def test_items_survive_restart(harness: Harness) -> None:
    romeo, _ = await pep_client(harness, "romeo")
    await romeo.plugin["xep_0060"].publish(None, TUNE, id="keep", payload=tune("stays"))
    await harness.restart()
    romeo, _ = await pep_client(harness, "romeo", create=False)
    res = await romeo.plugin["xep_0060"].get_items("romeo@localhost", TUNE)
    assert item_ids(res) == ["keep"]


async def test_node_configuration(harness: Harness) -> None:
    romeo, _ = await pep_client(harness, "romeo")
    xep60 = romeo.plugin["xep_0060"]
    for n in range(3):
        await xep60.publish(None, TUNE, id=f"t{n}", payload=tune(str(n)),
                            options=options({"pubsub#max_items": "max"}))
    res = await xep60.get_node_config("romeo@localhost", TUNE)
    form = res.xml.find(".//{jabber:x:data}x")
    values = {f.get("var"): f.findtext("{jabber:x:data}value") for f in form}
    assert values["pubsub#access_model"] == "presence"
    assert values["pubsub#max_items"] == "1000"
    await xep60.set_node_config("romeo@localhost", TUNE,
                                options({"pubsub#max_items": "1", "pubsub#access_model": "open"},
                                        PUBSUB + "#node_config"))
    assert item_ids(await xep60.get_items("romeo@localhost", TUNE)) == ["t2"]
    res = await xep60.get_node_config("romeo@localhost", TUNE)
    values = {f.get("var"): f.findtext("{jabber:x:data}value")
              for f in res.xml.find(".//{jabber:x:data}x")}
    assert values["pubsub#access_model"] == "open" and values["pubsub#max_items"] == "1"
    # a bad value is refused and names the option
    bad = await raw(romeo, None, f"<pubsub xmlns='{PUBSUB}#owner'><configure node='{TUNE}'>"
                    "<x xmlns='jabber:x:data' type='submit'><field var='pubsub#max_items'>"
                    "<value>lots</value></field></x></configure></pubsub>", "set")
    cond, _, text = error_of(bad)
    assert cond == "not-acceptable" and "pubsub#max_items" in text
    # delete: the node is gone
    await xep60.delete_node("romeo@localhost", TUNE)
    gone = await raw(romeo, None, f"<pubsub xmlns='{PUBSUB}'><items node='{TUNE}'/></pubsub>")
    assert error_of(gone)[0] == "item-not-found"


# ---- notifications --------------------------------------------------------------------------
async def test_notifications_follow_caps_and_subscription(harness: Harness) -> None:
    await harness.user("romeo")
    await harness.user("juliet")
    await harness.user("nurse")
    await befriend(harness, "romeo", "juliet")
    await befriend(harness, "romeo", "nurse")
    romeo, romeo_ev = await pep_client(harness, "romeo", (TUNE,), create=False)
    juliet, juliet_ev = await pep_client(harness, "juliet", (TUNE,), create=False)
    nurse, nurse_ev = await pep_client(harness, "nurse", (MOOD,), create=False)
    stranger, stranger_ev = await pep_client(harness, "stranger", (TUNE,))
    await caps_known(harness, *(f"{n}@localhost/test" for n in ("romeo", "juliet", "nurse",
                                                                  "stranger")))
    await romeo.plugin["xep_0060"].publish(None, TUNE, id="now", payload=tune("Sonnet 18"))
    for ev in (juliet_ev, romeo_ev):  # the contact, and the owner's own resource
        msg = await ev.next()
        assert msg.get("from") == "romeo@localhost"
        item = msg.find(f"{{{EVENT}}}event/{{{EVENT}}}items/{{{EVENT}}}item")
        assert item is not None and item.get("id") == "now"
        assert "Sonnet 18" in ET.tostring(item).decode()
    await nurse_ev.none()  # no +notify for tune
    await stranger_ev.none()  # no presence subscription
    # retract is notified too
    await romeo.plugin["xep_0060"].retract("romeo@localhost", TUNE, "now", notify=True)
    msg = await juliet_ev.next()
    assert msg.find(f".//{{{EVENT}}}retract").get("id") == "now"
    del juliet, nurse, stranger


async def test_last_item_on_coming_online(harness: Harness) -> None:
    await harness.user("romeo")
    await harness.user("juliet")
    await befriend(harness, "romeo", "juliet")
    romeo, _ = await pep_client(harness, "romeo", create=False)
    await romeo.plugin["xep_0060"].publish(None, TUNE, id="t1", payload=tune("old"))
    await romeo.plugin["xep_0060"].publish(None, TUNE, id="t2", payload=tune("latest"))
    juliet, juliet_ev = await pep_client(harness, "juliet", (TUNE,), create=False)
    msg = await juliet_ev.next()
    assert msg.find(f".//{{{EVENT}}}item").get("id") == "t2"
    await juliet_ev.none()
    # a second resource of the same user, with the same (now cached) caps, gets it too
    _j2, j2_ev = await pep_client(harness, "juliet", (TUNE,), resource="phone", create=False)
    assert (await j2_ev.next()).find(f".//{{{EVENT}}}item").get("id") == "t2"
    del juliet


async def test_last_item_when_a_subscription_is_approved(harness: Harness) -> None:
    """XEP-0163 §4.3.3: the last item goes out on subscription, not only on presence."""
    await harness.user("romeo")
    await harness.user("juliet")
    romeo, _ = await pep_client(harness, "romeo", create=False)
    await romeo.plugin["xep_0060"].publish(None, TUNE, id="t1", payload=tune("latest"))
    juliet, juliet_ev = await pep_client(harness, "juliet", (TUNE,), create=False)
    await caps_known(harness, "juliet@localhost/test")
    await juliet_ev.none()  # not subscribed to romeo yet
    juliet.send_presence(pto="romeo@localhost", ptype="subscribe")
    # romeo's slixmpp approves by itself (auto_authorize); his presence and tune follow
    msg = await juliet_ev.next()
    assert msg.get("from") == "romeo@localhost"
    assert msg.find(f".//{{{EVENT}}}item").get("id") == "t1"
    await juliet_ev.none()
    del romeo


async def test_explicit_subscription_to_open_node(harness: Harness) -> None:
    romeo, _ = await pep_client(harness, "romeo")
    stranger, stranger_ev = await pep_client(harness, "stranger")
    xep60 = romeo.plugin["xep_0060"]
    await xep60.publish(None, TUNE, id="first", payload=tune("one"),
                        options=options({"pubsub#access_model": "open"}))
    res = await stranger.plugin["xep_0060"].subscribe("romeo@localhost", TUNE)
    assert res.xml.find(f".//{{{PUBSUB}}}subscription").get("subscription") == "subscribed"
    assert (await stranger_ev.next()).find(f".//{{{EVENT}}}item").get("id") == "first"
    await xep60.publish(None, TUNE, id="second", payload=tune("two"))
    assert (await stranger_ev.next()).find(f".//{{{EVENT}}}item").get("id") == "second"
    await stranger.plugin["xep_0060"].unsubscribe("romeo@localhost", TUNE)
    await xep60.publish(None, TUNE, id="third", payload=tune("three"))
    await stranger_ev.none()


# ---- access models ----------------------------------------------------------------------------
async def test_access_models(harness: Harness) -> None:
    await harness.user("romeo")
    await harness.user("juliet")
    await befriend(harness, "romeo", "juliet")
    romeo, _ = await pep_client(harness, "romeo", create=False)
    juliet, _ = await pep_client(harness, "juliet", create=False)
    stranger, _ = await pep_client(harness, "stranger")
    xep60 = romeo.plugin["xep_0060"]
    await xep60.publish(None, TUNE, id="p", payload=tune("presence"))
    get = f"<pubsub xmlns='{PUBSUB}'><items node='{TUNE}'/></pubsub>"
    assert item_ids(await raw(juliet, "romeo@localhost", get)) == ["p"]
    assert error_of(await raw(stranger, "romeo@localhost", get))[:2] == \
        ("not-authorized", "presence-subscription-required")
    # open
    await xep60.set_node_config("romeo@localhost", TUNE, options(
        {"pubsub#access_model": "open"}, PUBSUB + "#node_config"))
    assert item_ids(await raw(stranger, "romeo@localhost", get)) == ["p"]
    # whitelist: only the owner and those it lists, contacts or not
    await xep60.set_node_config("romeo@localhost", TUNE, options(
        {"pubsub#access_model": "whitelist"}, PUBSUB + "#node_config"))
    assert error_of(await raw(juliet, "romeo@localhost", get))[:2] == \
        ("not-allowed", "closed-node")
    assert item_ids(await raw(romeo, None, get)) == ["p"]
    await raw(romeo, None, f"<pubsub xmlns='{PUBSUB}#owner'><affiliations node='{TUNE}'>"
              "<affiliation jid='stranger@localhost' affiliation='member'/></affiliations>"
              "</pubsub>", "set")
    assert item_ids(await raw(stranger, "romeo@localhost", get)) == ["p"]
    affs = await raw(romeo, None, f"<pubsub xmlns='{PUBSUB}#owner'><affiliations "
                     f"node='{TUNE}'/></pubsub>")
    listed = {a.get("jid"): a.get("affiliation") for a in affs.xml.iter(
        f"{{{PUBSUB}#owner}}affiliation")}
    assert listed == {"romeo@localhost": "owner", "stranger@localhost": "member"}


# ---- bad input --------------------------------------------------------------------------------
async def test_publishing_to_another_users_pep_is_forbidden(harness: Harness) -> None:
    romeo, _ = await pep_client(harness, "romeo")
    juliet, _ = await pep_client(harness, "juliet")
    await romeo.plugin["xep_0060"].publish(None, TUNE, id="a", payload=tune("mine"))
    pub = f"<pubsub xmlns='{PUBSUB}'><publish node='{TUNE}'><item id='x'><tune xmlns='{TUNE}'/>" \
          "</item></publish></pubsub>"
    assert error_of(await raw(juliet, "romeo@localhost", pub, "set"))[0] == "forbidden"
    # a node that does not exist yet cannot be created there either
    other = pub.replace(TUNE + "'>", MOOD + "'>", 1)
    assert error_of(await raw(juliet, "romeo@localhost", other, "set"))[0] == "forbidden"
    # nor configured or deleted
    delete = f"<pubsub xmlns='{PUBSUB}#owner'><delete node='{TUNE}'/></pubsub>"
    assert error_of(await raw(juliet, "romeo@localhost", delete, "set"))[0] == "forbidden"


async def test_precondition_not_met(harness: Harness) -> None:
    romeo, _ = await pep_client(harness, "romeo")
    xep60 = romeo.plugin["xep_0060"]
    await xep60.publish(None, TUNE, id="a", payload=tune("x"),
                        options=options({"pubsub#access_model": "presence"}))
    # matching preconditions pass
    await xep60.publish(None, TUNE, id="b", payload=tune("y"),
                        options=options({"pubsub#access_model": "presence"}))
    pub = (f"<pubsub xmlns='{PUBSUB}'><publish node='{TUNE}'><item id='c'><tune xmlns='{TUNE}'/>"
           "</item></publish><publish-options><x xmlns='jabber:x:data' type='submit'>"
           "<field var='FORM_TYPE' type='hidden'><value>"
           f"{PUBSUB}#publish-options</value></field><field var='pubsub#access_model'>"
           "<value>open</value></field></x></publish-options></pubsub>")
    cond, app, text = error_of(await raw(romeo, None, pub, "set"))
    assert (cond, app) == ("conflict", "precondition-not-met")
    assert "pubsub#access_model" in text
    assert item_ids(await xep60.get_items("romeo@localhost", TUNE)) == ["b"]


BOOKMARKS = "urn:xmpp:bookmarks:1"


def converse_bookmark(max_items: str) -> str:
    """A bookmark publish as Converse.js 14 sends it (XEP-0402 with XEP-0223's options;
    ``max_items`` is 'max' when the account advertises #config-node-max, else 9999)."""
    return (f"<pubsub xmlns='{PUBSUB}'><publish node='{BOOKMARKS}'>"
            "<item id='lobby@conference.localhost'><conference xmlns='urn:xmpp:bookmarks:1' "
            "autojoin='true' name='lobby'><nick>romeo</nick></conference></item></publish>"
            "<publish-options><x xmlns='jabber:x:data' type='submit'>"
            "<field type='hidden' var='FORM_TYPE'><value>"
            f"{PUBSUB}#publish-options</value></field>"
            "<field var='pubsub#persist_items'><value>true</value></field>"
            f"<field var='pubsub#max_items'><value>{max_items}</value></field>"
            "<field var='pubsub#send_last_published_item'><value>never</value></field>"
            "<field var='pubsub#access_model'><value>whitelist</value></field>"
            "</x></publish-options></pubsub>")


async def test_publish_options_no_configuration_can_meet(harness: Harness) -> None:
    """Converse.js publishes its bookmarks with pubsub#max_items 'max' where the account
    advertises #config-node-max, else 9999. 'max' is the bound; a number over the bound is a
    precondition no node here can meet: conflict + precondition-not-met (XEP-0060 §7.1.5),
    whether the node exists or not, and nothing is created or published. So is an option
    this service does not know."""
    romeo, _ = await pep_client(harness, "romeo")
    info = await romeo.plugin["xep_0030"].get_info(jid="romeo@localhost")
    features = {f.get("var") for f in info.xml.iter(
        "{http://jabber.org/protocol/disco#info}feature")}
    assert f"{PUBSUB}#config-node-max" in features
    cond, app, text = error_of(await raw(romeo, None, converse_bookmark("9999"), "set"))
    assert (cond, app) == ("conflict", "precondition-not-met")
    assert "pubsub#max_items" in text and "1000" in text
    gone = await raw(romeo, None, f"<pubsub xmlns='{PUBSUB}'><items node='{BOOKMARKS}'/></pubsub>")
    assert error_of(gone)[0] == "item-not-found"  # no node was made
    unknown = converse_bookmark("max").replace("pubsub#persist_items", "pubsub#no_such_option")
    cond, app, text = error_of(await raw(romeo, None, unknown, "set"))
    assert (cond, app) == ("conflict", "precondition-not-met") and "no_such_option" in text
    # what Converse sends here: accepted, the node made with the bound and whitelist access
    ok = await raw(romeo, None, converse_bookmark("max"), "set")
    assert ok["type"] == "result", ok
    res = await romeo.plugin["xep_0060"].get_node_config("romeo@localhost", BOOKMARKS)
    values = {f.get("var"): f.findtext("{jabber:x:data}value")
              for f in res.xml.find(".//{jabber:x:data}x")}
    assert values["pubsub#max_items"] == "1000"
    assert values["pubsub#access_model"] == "whitelist"
    # again, on the node that exists now: 'max' matches, 9999 is unmet, and is not published
    assert (await raw(romeo, None, converse_bookmark("max"), "set"))["type"] == "result"
    cond, app, _ = error_of(await raw(romeo, None, converse_bookmark("9999").replace(
        "lobby@", "other@"), "set"))
    assert (cond, app) == ("conflict", "precondition-not-met")
    got = await romeo.plugin["xep_0060"].get_items("romeo@localhost", BOOKMARKS)
    assert item_ids(got) == ["lobby@conference.localhost"]


async def test_item_over_size_limit(harness: Harness) -> None:
    await harness.stop_node()
    await harness.start(extra="[pubsub]\nmax_item_size = 2048\n")
    romeo, _ = await pep_client(harness, "romeo")
    big = tune("x" * 3000)
    try:
        await romeo.plugin["xep_0060"].publish(None, TUNE, id="big", payload=big)
    except Exception as exc:  # slixmpp raises IqError
        iq = exc.iq  # type: ignore[attr-defined]
    else:
        raise AssertionError("an item over the limit was accepted")
    cond, app, text = error_of(iq)
    assert (cond, app) == ("not-acceptable", "payload-too-big")
    assert "pubsub.max_item_size" in text and "2048" in text


async def test_unknown_node(harness: Harness) -> None:
    romeo, _ = await pep_client(harness, "romeo")
    for payload, itype in (
            (f"<pubsub xmlns='{PUBSUB}'><items node='nothing'/></pubsub>", "get"),
            (f"<pubsub xmlns='{PUBSUB}'><retract node='nothing'><item id='1'/></retract>"
             "</pubsub>", "set"),
            (f"<pubsub xmlns='{PUBSUB}#owner'><configure node='nothing'/></pubsub>", "get")):
        assert error_of(await raw(romeo, None, payload, itype))[0] == "item-not-found"


# ---- discovery --------------------------------------------------------------------------------
async def test_account_disco_advertises_pep(harness: Harness) -> None:
    romeo, _ = await pep_client(harness, "romeo")
    info = await romeo.plugin["xep_0030"].get_info(jid="romeo@localhost")
    q = info.xml.find("{http://jabber.org/protocol/disco#info}query")
    identities = {(i.get("category"), i.get("type")) for i in q.iter(
        "{http://jabber.org/protocol/disco#info}identity")}
    features = {f.get("var") for f in q.iter("{http://jabber.org/protocol/disco#info}feature")}
    assert ("pubsub", "pep") in identities and ("account", "registered") in identities
    for f in ("publish", "publish-options", "auto-create", "access-presence", "access-open",
              "access-whitelist", "retrieve-items", "retract-items", "config-node",
              "last-published", "filtered-notifications", "persistent-items"):
        assert f"{PUBSUB}#{f}" in features, f
    assert f"{PUBSUB}#access-roster" not in features
    assert f"{PUBSUB}#access-authorize" not in features


async def test_explicit_subscriber_gets_last_item_on_coming_online(harness: Harness) -> None:
    romeo, _ = await pep_client(harness, "romeo")
    stranger, stranger_ev = await pep_client(harness, "stranger")
    await romeo.plugin["xep_0060"].publish(None, TUNE, id="first", payload=tune("one"),
                                           options=options({"pubsub#access_model": "open"}))
    await stranger.plugin["xep_0060"].subscribe("romeo@localhost", TUNE)
    await stranger_ev.next()
    await stranger.close()
    await romeo.plugin["xep_0060"].publish(None, TUNE, id="while-away", payload=tune("two"))
    _again, again_ev = await pep_client(harness, "stranger", create=False)
    last = await again_ev.next()
    assert last.find(f".//{{{EVENT}}}item").get("id") == "while-away"
    # a last item is delayed delivery (XEP-0060 §6.1.7, XEP-0203)
    assert last.find("{urn:xmpp:delay}delay").get("from") == "romeo@localhost"


async def test_account_deletion_removes_pep_data(harness: Harness) -> None:
    romeo, _ = await pep_client(harness, "romeo")
    stranger, _ = await pep_client(harness, "stranger")
    await romeo.plugin["xep_0060"].publish(None, TUNE, id="a", payload=tune("x"),
                                           options=options({"pubsub#access_model": "open"}))
    await stranger.plugin["xep_0060"].subscribe("romeo@localhost", TUNE)
    await stranger.plugin["xep_0060"].publish(None, MOOD, id="m", payload=tune("y"))
    assert harness.node is not None
    await harness.node.delete_account("stranger")
    db = harness.node.db
    assert await db.fetchall("SELECT * FROM pubsub_subscriptions") == []
    assert await db.fetchall("SELECT * FROM pubsub_nodes WHERE service = ?",
                             "stranger@localhost") == []
    assert await db.fetchall("SELECT * FROM pubsub_items WHERE service = ?",
                             "stranger@localhost") == []
    await harness.node.delete_account("romeo")
    for table in ("pubsub_nodes", "pubsub_items", "pubsub_affiliations"):
        assert await db.fetchall(f"SELECT * FROM {table}") == [], table
