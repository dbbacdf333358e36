"""Bookmarks over real sockets, on SQLite and PostgreSQL: XEP-0402 PEP native bookmarks, kept in
step with XEP-0048 in XEP-0049 private storage (#compat) and in the XEP-0223 PEP node
(#compat-pep), each side written by slixmpp's own plugins (xep_0402, xep_0048)."""

from __future__ import annotations

from typing import Any

from slixmpp.plugins.xep_0048 import Bookmarks as LegacyBookmarks
from slixmpp.xmlstream import ET

from tests.integration.conftest import Harness
from tests.integration.pepkit import PUBSUB, error_of, options, pep_client, raw

BM = "urn:xmpp:bookmarks:1"
LEGACY = "storage:bookmarks"
PLUGINS = ("xep_0048", "xep_0049", "xep_0223", "xep_0402")


def conference(name: str, nick: str, autojoin: bool = True) -> Any:
    el = ET.Element(f"{{{BM}}}conference", {"name": name,
                                            "autojoin": "true" if autojoin else "false"})
    ET.SubElement(el, f"{{{BM}}}nick").text = nick
    return el


def bm2_options() -> Any:
    return options({"pubsub#access_model": "whitelist", "pubsub#max_items": "max",
                    "pubsub#persist_items": "true", "pubsub#send_last_published_item": "never"})


async def bm2(c: Any) -> dict[str, tuple[str, str, str]]:
    """Room JID -> (name, autojoin, nick) from the XEP-0402 node."""
    res = await c.plugin["xep_0060"].get_items(c.boundjid.bare, BM)
    out = {}
    for item in res.xml.iter(f"{{{PUBSUB}}}item"):
        conf = item.find(f"{{{BM}}}conference")
        out[item.get("id")] = (conf.get("name"), conf.get("autojoin"),
                               conf.findtext(f"{{{BM}}}nick"))
    return out


def legacy_rooms(storage: Any) -> dict[str, tuple[str, str, str]]:
    return {c.get("jid"): (c.get("name"), c.get("autojoin"), c.findtext(f"{{{LEGACY}}}nick"))
            for c in storage.iter(f"{{{LEGACY}}}conference")}


async def private_storage(c: Any) -> Any:
    res = await c.plugin["xep_0048"].get_bookmarks(method="xep_0049")
    return res.xml.find(f".//{{{LEGACY}}}storage")


async def pep_storage(c: Any) -> Any:
    res = await c.plugin["xep_0048"].get_bookmarks(method="xep_0223")
    return res.xml.find(f".//{{{LEGACY}}}storage")


async def test_native_bookmarks_show_in_both_legacy_forms(harness: Harness) -> None:
    romeo, events = await pep_client(harness, "romeo", (BM,), plugins=PLUGINS)
    xep60 = romeo.plugin["xep_0060"]
    await xep60.publish(None, BM, id="coven@conference.localhost",
                        payload=conference("The Coven", "Romeo"), options=bm2_options())
    await xep60.publish(None, BM, id="balcony@conference.localhost",
                        payload=conference("Balcony", "R", autojoin=False),
                        options=bm2_options())
    # the owner's own resources are told (+notify)
    ev = await events.next()
    assert ev.find(".//{http://jabber.org/protocol/pubsub#event}item").get("id") == \
        "coven@conference.localhost"
    want = {"coven@conference.localhost": ("The Coven", "true", "Romeo"),
            "balcony@conference.localhost": ("Balcony", "false", "R")}
    assert legacy_rooms(await private_storage(romeo)) == want
    assert legacy_rooms(await pep_storage(romeo)) == want
    # retracting one removes it everywhere
    await xep60.retract(None, BM, "balcony@conference.localhost", notify=True)
    del want["balcony@conference.localhost"]
    assert legacy_rooms(await private_storage(romeo)) == want
    assert legacy_rooms(await pep_storage(romeo)) == want


async def test_private_storage_bookmarks_become_native(harness: Harness) -> None:
    romeo, _ = await pep_client(harness, "romeo", plugins=PLUGINS)
    storage = LegacyBookmarks()
    storage.add_conference("coven@conference.localhost", "Romeo", name="The Coven",
                           autojoin=True)
    storage.add_conference("tomb@conference.localhost", "R", name="Tomb", autojoin=False)
    await romeo.plugin["xep_0048"].set_bookmarks(storage, method="xep_0049")
    want = {"coven@conference.localhost": ("The Coven", "true", "Romeo"),
            "tomb@conference.localhost": ("Tomb", "false", "R")}
    assert await bm2(romeo) == want
    assert legacy_rooms(await pep_storage(romeo)) == want
    # the native node is private (XEP-0402 §3: whitelist)
    juliet, _ = await pep_client(harness, "juliet")
    denied = await raw(juliet, "romeo@localhost",
                       f"<pubsub xmlns='{PUBSUB}'><items node='{BM}'/></pubsub>")
    assert error_of(denied)[0] == "not-allowed"
    # a legacy write without a room retracts it
    storage = LegacyBookmarks()
    storage.add_conference("coven@conference.localhost", "Romeo", name="The Coven",
                           autojoin=True)
    await romeo.plugin["xep_0048"].set_bookmarks(storage, method="xep_0049")
    assert await bm2(romeo) == {"coven@conference.localhost": ("The Coven", "true", "Romeo")}


async def test_pep_legacy_bookmarks_become_native(harness: Harness) -> None:
    romeo, _ = await pep_client(harness, "romeo", plugins=PLUGINS)
    storage = LegacyBookmarks()
    storage.add_conference("coven@conference.localhost", "Romeo", name="The Coven",
                           autojoin=True)
    await romeo.plugin["xep_0048"].set_bookmarks(storage, method="xep_0223")
    want = {"coven@conference.localhost": ("The Coven", "true", "Romeo")}
    assert await bm2(romeo) == want
    assert legacy_rooms(await private_storage(romeo)) == want
    # survives a restart
    await harness.restart()
    romeo, _ = await pep_client(harness, "romeo", create=False, plugins=PLUGINS)
    assert legacy_rooms(await private_storage(romeo)) == want


async def test_disco_advertises_bookmark_conversion(harness: Harness) -> None:
    romeo, _ = await pep_client(harness, "romeo")
    info = await romeo.plugin["xep_0030"].get_info(jid="romeo@localhost")
    features = {f.get("var") for f in info.xml.iter(
        "{http://jabber.org/protocol/disco#info}feature")}
    assert {BM + "#compat", BM + "#compat-pep"} <= features
