"""Avatars over real sockets, on SQLite and PostgreSQL: XEP-0084 user avatars (slixmpp's
xep_0084), XEP-0153 vCard-based avatars (xep_0054 and presence) and the XEP-0398 conversion
between them."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from typing import Any

from tests.integration.clients import Client
from tests.integration.conftest import Harness
from tests.integration.pepkit import EVENT, PUBSUB, befriend, caps_known, pep_client

DATA = "urn:xmpp:avatar:data"
METADATA = "urn:xmpp:avatar:metadata"
VCARD = "vcard-temp"
UPDATE = "vcard-temp:x:update"
IMAGE = bytes(range(256)) * 20  # not a real PNG: the server never looks inside
IMAGE_2 = b"\x89PNG\r\n\x1a\n" + bytes(1000)
PLUGINS = ("xep_0054", "xep_0084")


async def publish_avatar(c: Client, image: bytes) -> str:
    xep84 = c.plugin["xep_0084"]
    h = hashlib.sha1(image).hexdigest()
    await xep84.publish_avatar(image)
    await xep84.publish_avatar_metadata([{"id": h, "type": "image/png", "bytes": len(image)}])
    return h


async def vcard_photo(c: Client, jid: str) -> bytes | None:
    res = await c.plugin["xep_0054"].get_vcard(jid, cached=False, local=False)
    binval = res.xml.find(f".//{{{VCARD}}}PHOTO/{{{VCARD}}}BINVAL")
    return base64.b64decode(binval.text) if binval is not None and binval.text else None


async def photo_in_presence(c: Client, frm: str, status: str | None = None,
                            timeout: float = 10) -> str | None:
    """The XEP-0153 hash in the next available presence from ``frm`` (with ``status``)."""
    async def loop() -> Any:
        while True:
            p = await c.next_presence(timeout)
            if status is not None and p["status"] != status:
                continue
            if p["from"].bare == frm and p["type"] in ("available", "", None, "chat", "away"):
                x = p.xml.find(f"{{{UPDATE}}}x")
                if x is not None:
                    return x.findtext(f"{{{UPDATE}}}photo")
    return await asyncio.wait_for(loop(), timeout)


async def test_user_avatar_reaches_contacts_vcard_and_presence(harness: Harness) -> None:
    await harness.user("romeo")
    await harness.user("juliet")
    await befriend(harness, "romeo", "juliet")
    romeo, _ = await pep_client(harness, "romeo", create=False, plugins=PLUGINS)
    juliet, juliet_ev = await pep_client(harness, "juliet", (METADATA,), create=False,
                                         plugins=PLUGINS)
    await caps_known(harness, "juliet@localhost/test")
    h = await publish_avatar(romeo, IMAGE)
    ev = await juliet_ev.next()
    info = ev.find(f".//{{{EVENT}}}item/{{{METADATA}}}metadata/{{{METADATA}}}info")
    assert info is not None and info.get("id") == h and info.get("bytes") == str(len(IMAGE))
    # juliet fetches the data (XEP-0084 §4.3)
    res = await juliet.plugin["xep_0084"].retrieve_avatar("romeo@localhost", h)
    data = res.xml.find(f".//{{{PUBSUB}}}item/{{{DATA}}}data")
    assert base64.b64decode(data.text) == IMAGE
    # XEP-0398: the vCard now carries it, and romeo's presence the hash (XEP-0153)
    assert await vcard_photo(juliet, "romeo@localhost") == IMAGE
    romeo.send_presence(pstatus="new look")
    assert await photo_in_presence(juliet, "romeo@localhost", "new look") == h
    # switching the avatar off empties the vCard photo and the hash
    await romeo.plugin["xep_0084"].stop()
    assert await vcard_photo(juliet, "romeo@localhost") is None
    romeo.send_presence(pstatus="no look")
    assert await photo_in_presence(juliet, "romeo@localhost", "no look") == ""


async def test_vcard_photo_becomes_user_avatar(harness: Harness) -> None:
    await harness.user("romeo")
    await harness.user("juliet")
    await befriend(harness, "romeo", "juliet")
    romeo, _ = await pep_client(harness, "romeo", create=False, plugins=PLUGINS)
    juliet, juliet_ev = await pep_client(harness, "juliet", (METADATA,), create=False,
                                         plugins=PLUGINS)
    await caps_known(harness, "juliet@localhost/test")
    vcard = romeo.plugin["xep_0054"].stanza.VCardTemp()
    vcard["FN"] = "Romeo Montague"
    vcard["PHOTO"]["TYPE"] = "image/png"
    vcard["PHOTO"]["BINVAL"] = IMAGE_2
    await romeo.plugin["xep_0054"].publish_vcard(vcard)
    h = hashlib.sha1(IMAGE_2).hexdigest()
    ev = await juliet_ev.next()
    info = ev.find(f".//{{{METADATA}}}info")
    assert info.get("id") == h and info.get("type") == "image/png"
    res = await juliet.plugin["xep_0084"].retrieve_avatar("romeo@localhost", h)
    assert base64.b64decode(res.xml.find(f".//{{{DATA}}}data").text) == IMAGE_2
    # the hash is in romeo's presence from now on, across a restart too
    await harness.restart()
    juliet = (await pep_client(harness, "juliet", create=False, plugins=PLUGINS))[0]
    await pep_client(harness, "romeo", create=False, plugins=PLUGINS)
    assert await photo_in_presence(juliet, "romeo@localhost") == h


async def test_disco_advertises_conversion(harness: Harness) -> None:
    romeo, _ = await pep_client(harness, "romeo")
    info = await romeo.plugin["xep_0030"].get_info(jid="romeo@localhost")
    features = {f.get("var") for f in info.xml.iter(
        "{http://jabber.org/protocol/disco#info}feature")}
    assert "urn:xmpp:pep-vcard-conversion:0" in features
