"""What the server must not touch, and the hints it must honour, end to end with slixmpp on real
sockets (SQLite and PostgreSQL): delivery receipts (XEP-0184), chat states (XEP-0085) and
corrections (XEP-0308) reach the recipient with the same children, attributes and ids, online
and from offline storage; XEP-0334 ``<no-store/>``, ``<no-permanent-store/>`` and ``<store/>``
decide offline storage and the archive."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from typing import Any

from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from tests.integration.clients import Client
from tests.integration.conftest import Harness
from tests.integration.test_mam import FWD, query

C = "{jabber:client}"
CS = "http://jabber.org/protocol/chatstates"
RECEIPTS = "urn:xmpp:receipts"
CORRECT = "urn:xmpp:message-correct:0"
HINTS = "urn:xmpp:hints"
SID = "urn:xmpp:sid:0"
DELAY = "urn:xmpp:delay"
WAIT = 5.0

# What bob sends alice: (id, payload). Each is checked child by child where it arrives.
WITH_RECEIPT = ("m1", f"<body>hello</body><request xmlns='{RECEIPTS}'/>"
                      f"<active xmlns='{CS}'/><origin-id xmlns='{SID}' id='o-m1'/>"
                      "<thread parent='p1'>t1</thread>")
CHAT_STATE = ("s1", f"<composing xmlns='{CS}'/>")
CHAT_STATE_THREAD = ("s2", f"<paused xmlns='{CS}'/><thread>t1</thread>"
                           f"<origin-id xmlns='{SID}' id='o-s2'/>")
CORRECTION = ("m2", f"<body>hello, corrected</body><replace xmlns='{CORRECT}' id='m1'/>"
                    f"<markable xmlns='urn:xmpp:chat-markers:0'/>")
RECEIPT = ("r1", f"<received xmlns='{RECEIPTS}' id='x0'/>")
NO_STORE = ("n1", f"<body>transient</body><no-store xmlns='{HINTS}'/>")
NO_PERMANENT = ("n2", f"<body>off the record</body><no-permanent-store xmlns='{HINTS}'/>")
STORE_STATE = ("n3", f"<gone xmlns='{CS}'/><store xmlns='{HINTS}'/>")
LAST = ("m3", "<body>last</body>")


class Inbox:
    """Every <message/> a client receives, as XML, in order."""

    def __init__(self, c: Client) -> None:
        self.c = c
        self.q: asyncio.Queue[Any] = asyncio.Queue()
        c.register_handler(Callback(f"inbox {c.boundjid}", MatchXPath(C + "message"),
                                    lambda m: self.q.put_nowait(m.xml)))

    async def next(self) -> ET.Element:
        return await asyncio.wait_for(self.q.get(), WAIT)  # type: ignore[no-any-return]

    async def nothing_more(self) -> None:
        """Nothing else is waiting: a message to oneself comes back before anything routed
        after what the test already saw."""
        me = str(self.c.boundjid)
        self.c.send_raw(f"<message to='{me}' id='marker' type='chat'><body>.</body>"
                        f"<no-store xmlns='{HINTS}'/></message>")  # kept out of the archive
        el = await self.next()
        assert el.get("id") == "marker", ET.tostring(el)


def send(c: Client, to: str, msg: tuple[str, str], mtype: str = "chat") -> None:
    mid, payload = msg
    c.send_raw(f"<message to='{to}' id='{mid}' type='{mtype}'>{payload}</message>")


def shape(el: ET.Element) -> list[tuple[str, dict[str, str], str]]:
    """The children as the sender wrote them: what the server adds (our stanza-id, the offline
    delay stamp) left out."""
    out = []
    for c in el:
        if c.tag == f"{{{SID}}}stanza-id" and c.get("by", "").endswith("localhost"):
            continue
        if c.tag == f"{{{DELAY}}}delay" and c.get("from") == "localhost":
            continue
        out.append((c.tag, dict(c.attrib), (c.text or "").strip()))
    return out


def sent_shape(msg: tuple[str, str]) -> list[tuple[str, dict[str, str], str]]:
    return shape(ET.fromstring(f"<message xmlns='jabber:client'>{msg[1]}</message>"))


def untouched(got: ET.Element, msg: tuple[str, str], sender: str, mtype: str = "chat") -> None:
    assert got.get("id") == msg[0], ET.tostring(got)
    assert got.get("type") == mtype and got.get("from") == sender, ET.tostring(got)
    assert shape(got) == sent_shape(msg), ET.tostring(got)


async def test_receipts_chat_states_corrections_online(harness: Harness) -> None:
    alice = await harness.logged_in("alice")
    bob = await harness.logged_in("bob")
    a, b = Inbox(alice), Inbox(bob)
    for msg in (WITH_RECEIPT, CHAT_STATE, CHAT_STATE_THREAD, CORRECTION, STORE_STATE):
        send(bob, "alice@localhost/test", msg)
        untouched(await a.next(), msg, "bob@localhost/test")
    # alice's receipt for m1 reaches bob as she wrote it
    send(alice, "bob@localhost/test", ("r-m1", f"<received xmlns='{RECEIPTS}' id='m1'/>"))
    untouched(await b.next(), ("r-m1", f"<received xmlns='{RECEIPTS}' id='m1'/>"),
              "alice@localhost/test")
    # a chat state to the bare JID as well
    send(bob, "alice@localhost", CHAT_STATE)
    untouched(await a.next(), CHAT_STATE, "bob@localhost/test")
    await a.nothing_more()
    await b.nothing_more()


async def test_offline_storage_keeps_them_untouched_and_honours_hints(harness: Harness) -> None:
    await harness.user("alice")
    bob = await harness.logged_in("bob")
    b = Inbox(bob)
    everything = (WITH_RECEIPT, CHAT_STATE, CHAT_STATE_THREAD, CORRECTION, RECEIPT, NO_STORE,
                  NO_PERMANENT, STORE_STATE, LAST)
    for msg in everything:
        send(bob, "alice@localhost", msg)
    # <no-store/>: not stored, and bob is told (RFC 6121: store or say so); the chat states
    # alone vanish without an error
    err = await b.next()
    assert err.get("id") == "n1" and err.get("type") == "error", ET.tostring(err)
    cond = err.find(f"{C}error/{{urn:ietf:params:xml:ns:xmpp-stanzas}}service-unavailable")
    assert cond is not None, ET.tostring(err)
    assert "no-store" in (err.findtext(f"{C}error/{{urn:ietf:params:xml:ns:xmpp-stanzas}}text")
                          or "")
    await b.nothing_more()
    alice = await harness.client("alice@localhost/phone", presence=False)
    a = Inbox(alice)
    alice.send_presence()
    kept = (WITH_RECEIPT, CORRECTION, RECEIPT, NO_PERMANENT, STORE_STATE, LAST)
    for msg in kept:
        got = await a.next()
        untouched(got, msg, "bob@localhost/test")
        delay = got.find(f"{{{DELAY}}}delay")
        assert delay is not None and delay.get("from") == "localhost"
    await a.nothing_more()
    # the archive: neither <no-store/> nor <no-permanent-store/> nor chat states alone; <store/>
    # keeps even a bodiless chat state
    _, results = await query(alice)
    archived = [r.find(f"{{{FWD}}}forwarded/{C}message") for r in results]
    assert [m.get("id") for m in archived] == ["m1", "m2", "r1", "n3", "m3"]
    for m, msg in zip(archived, (WITH_RECEIPT, CORRECTION, RECEIPT, STORE_STATE, LAST),
                      strict=True):
        assert shape(m) == sent_shape(msg), ET.tostring(m)
    _, results = await query(bob)
    assert [r.find(f"{{{FWD}}}forwarded/{C}message").get("id") for r in results] == [
        "m1", "m2", "r1", "n3", "m3"]
