"""XEP-0313 user archives and XEP-0359 stanza ids, through real clients on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from typing import Any
from xml.etree import ElementTree as ET

from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from hongyan.xmpp.stamps import xmpp_datetime
from tests.integration.clients import Client
from tests.integration.conftest import Harness

MAM = "urn:xmpp:mam:2"
RSM = "http://jabber.org/protocol/rsm"
SID = "urn:xmpp:sid:0"
FWD = "urn:xmpp:forward:0"
PLUGINS = ("xep_0059", "xep_0297", "xep_0313", "xep_0359")


def form(**fields: str | list[str]) -> str:
    out = [f"<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>"
           f"<value>{MAM}</value></field>"]
    for var, value in fields.items():
        values = value if isinstance(value, list) else [value]
        out.append(f"<field var='{var.rstrip('_').replace('_', '-')}'>"
                   + "".join(f"<value>{v}</value>" for v in values) + "</field>")
    out.append("</x>")
    return "".join(out)


def rsm(max: int | None = None, after: str | None = None, before: str | None = None) -> str:
    parts = [f"<set xmlns='{RSM}'>"]
    if max is not None:
        parts.append(f"<max>{max}</max>")
    if after is not None:
        parts.append(f"<after>{after}</after>")
    if before is not None:
        parts.append(f"<before>{before}</before>" if before else "<before/>")
    parts.append("</set>")
    return "".join(parts)


class Page:
    def __init__(self, iq: Any, results: list[tuple[str, str, str]]) -> None:
        self.iq = iq
        self.type = iq["type"]
        self.results = results  # (archive id, body, from)
        self.ids = [r[0] for r in results]
        self.bodies = [r[1] for r in results]
        fin = iq.xml.find(f"{{{MAM}}}fin")
        self.fin = fin
        self.complete = fin is not None and fin.get("complete") == "true"
        s = fin.find(f"{{{RSM}}}set") if fin is not None else None
        self.first = s.findtext(f"{{{RSM}}}first") if s is not None else None
        self.last = s.findtext(f"{{{RSM}}}last") if s is not None else None
        count = s.findtext(f"{{{RSM}}}count") if s is not None else None
        self.count = int(count) if count is not None else None

    def error(self) -> str:
        err = self.iq.xml.find("{jabber:client}error")
        assert err is not None, ET.tostring(self.iq.xml)
        return err[0].tag.split("}")[1]


_RESULTS: dict[int, list[Any]] = {}


def results_of(c: Client) -> list[Any]:
    """MAM result messages ``c`` received (slixmpp's message event only reports messages with
    a body, so they are collected by a handler of their own)."""
    if id(c) not in _RESULTS:
        box: list[Any] = []
        _RESULTS[id(c)] = box
        c.register_handler(Callback("mam results", MatchXPath(
            f"{{jabber:client}}message/{{{MAM}}}result"), box.append))
    return _RESULTS[id(c)]


async def query(c: Client, payload: str = "", to: str | None = None,
                queryid: str = "q1") -> Page:
    box = results_of(c)
    box.clear()
    iq = c.make_iq_set()
    if to is not None:
        iq["to"] = to
    answer = await c.send_raw_iq(
        iq, f"<query xmlns='{MAM}' queryid='{queryid}'>{payload}</query>", 10)
    results: list[tuple[str, str, str]] = []
    for msg in box:
        res = msg.xml.find(f"{{{MAM}}}result")
        if res is None:
            continue
        assert res.get("queryid") == queryid
        fwd = res.find(f"{{{FWD}}}forwarded")
        assert fwd is not None
        assert fwd.find("{urn:xmpp:delay}delay") is not None
        inner = fwd.find("{jabber:client}message")
        assert inner is not None
        results.append((res.get("id", ""), inner.findtext("{jabber:client}body") or "",
                        inner.get("from", "")))
    return Page(answer, results)


async def chat(sender: Client, receiver: Client, to: str, bodies: list[str]) -> list[Any]:
    for b in bodies:
        sender.send_message(mto=to, mbody=b, mtype="chat")
    return [await receiver.next_message() for _ in bodies]


def stanza_ids(msg: Any) -> list[tuple[str, str]]:
    return [(e.get("by", ""), e.get("id", "")) for e in msg.xml.findall(f"{{{SID}}}stanza-id")]


async def pair(harness: Harness) -> tuple[Client, Client]:
    alice = await harness.logged_in("alice", plugins=PLUGINS)
    bob = await harness.logged_in("bob", plugins=PLUGINS)
    return alice, bob


async def test_archived_on_both_sides_with_stanza_id(harness: Harness) -> None:
    alice, bob = await pair(harness)
    got = await chat(alice, bob, "bob@localhost", ["one", "two", "three"])
    sids = []
    for m in got:
        ids = stanza_ids(m)
        assert len(ids) == 1 and ids[0][0] == "bob@localhost"
        sids.append(ids[0][1])
    assert len(set(sids)) == 3
    # Right after delivery (no wait): the query flushes the write batch first.
    page = await query(bob)
    assert page.type == "result" and page.bodies == ["one", "two", "three"]
    assert page.ids == sids
    assert all(r[2] == "alice@localhost/test" for r in page.results)
    assert page.complete and page.count == 3 and page.first == sids[0] and page.last == sids[2]
    page = await query(alice)
    assert page.bodies == ["one", "two", "three"] and page.complete
    assert set(page.ids).isdisjoint(sids)


async def test_forged_stanza_id_is_removed(harness: Harness) -> None:
    alice, bob = await pair(harness)
    alice.send_raw(
        "<message to='bob@localhost' type='chat' id='f1'><body>forged</body>"
        f"<stanza-id xmlns='{SID}' by='bob@localhost' id='not-yours'/>"
        f"<stanza-id xmlns='{SID}' by='room@elsewhere' id='kept'/></message>")
    msg = await bob.next_message()
    ids = stanza_ids(msg)
    assert ("room@elsewhere", "kept") in ids
    ours = [i for by, i in ids if by == "bob@localhost"]
    assert len(ours) == 1 and ours[0] != "not-yours"


async def test_what_is_not_archived(harness: Harness) -> None:
    alice, bob = await pair(harness)
    alice.send_raw("<message to='bob@localhost' type='chat'><body>secret</body>"
                   "<no-store xmlns='urn:xmpp:hints'/></message>")
    alice.send_raw("<message to='bob@localhost' type='chat'><body>transient</body>"
                   "<no-permanent-store xmlns='urn:xmpp:hints'/></message>")
    alice.send_raw("<message to='bob@localhost' type='chat'>"
                   "<composing xmlns='http://jabber.org/protocol/chatstates'/></message>")
    alice.send_raw("<message to='bob@localhost' type='headline'><body>news</body></message>")
    alice.send_message(mto="bob@localhost", mbody="kept", mtype="chat")
    # (slixmpp reports only messages with a body: the chat state is not among them)
    received = [await bob.next_message() for _ in range(4)]
    assert [m["body"] for m in received] == ["secret", "transient", "news", "kept"]
    assert [stanza_ids(m) != [] for m in received] == [False, False, False, True]
    assert (await query(bob)).bodies == ["kept"]
    assert (await query(alice)).bodies == ["kept"]


async def test_paging_forward_and_backward(harness: Harness) -> None:
    alice, bob = await pair(harness)
    bodies = [f"m{i}" for i in range(120)]
    await chat(alice, bob, "bob@localhost", bodies)
    # Forward, pages of 50.
    seen: list[str] = []
    after: str | None = None
    pages = 0
    while True:
        page = await query(bob, rsm(max=50, after=after))
        pages += 1
        assert page.count is None  # not counted when the result spans pages
        seen += page.bodies
        if page.complete:
            break
        assert len(page.bodies) == 50
        after = page.last
    assert seen == bodies and pages == 3
    # Backward from the end.
    seen = []
    before = ""
    pages = 0
    while True:
        page = await query(bob, rsm(max=50, before=before))
        pages += 1
        seen = page.bodies + seen
        if page.complete:
            break
        assert page.first is not None
        before = page.first
    assert seen == bodies and pages == 3
    # The last page first (an empty <before/>), as clients do when they open a chat.
    page = await query(bob, rsm(max=10, before=""))
    assert page.bodies == bodies[-10:] and not page.complete
    page = await query(bob, rsm(max=0))
    assert page.bodies == [] and not page.complete


async def test_filters_with_start_end_and_ids(harness: Harness) -> None:
    alice, bob = await pair(harness)
    carol = await harness.logged_in("carol", plugins=PLUGINS)
    await chat(alice, bob, "bob@localhost", ["a1", "a2"])
    await asyncio.sleep(0.05)
    middle = time.time()
    await asyncio.sleep(0.05)
    await chat(carol, bob, "bob@localhost", ["c1"])
    await chat(alice, bob, "bob@localhost", ["a3"])
    page = await query(bob, form(with_="alice@localhost"))
    assert page.bodies == ["a1", "a2", "a3"]
    page = await query(bob, form(with_="carol@localhost/test"))
    assert page.bodies == ["c1"]
    page = await query(bob, form(start=xmpp_datetime(middle)))
    assert page.bodies == ["c1", "a3"]
    page = await query(bob, form(end=xmpp_datetime(middle)))
    assert page.bodies == ["a1", "a2"]
    page = await query(bob, form(with_="alice@localhost", start=xmpp_datetime(middle)))
    assert page.bodies == ["a3"]
    everything = await query(bob)
    ids = everything.ids
    page = await query(bob, form(after_id=ids[0]))
    assert page.bodies == ["a2", "c1", "a3"]
    page = await query(bob, form(before_id=ids[2]))
    assert page.bodies == ["a1", "a2"]
    page = await query(bob, form(after_id=ids[0], before_id=ids[3]))
    assert page.bodies == ["a2", "c1"]
    page = await query(bob, form(ids=[ids[3], ids[1]]))
    assert page.bodies == ["a2", "a3"]
    page = await query(carol, form(with_="bob@localhost"))
    assert page.bodies == ["c1"]


async def test_form_discovery_and_disco(harness: Harness) -> None:
    alice = await harness.logged_in("alice", plugins=PLUGINS)
    iq = alice.make_iq_get()
    answer = await alice.send_raw_iq(iq, f"<query xmlns='{MAM}'/>", 10)
    assert answer["type"] == "result"
    x = answer.xml.find(f"{{{MAM}}}query/{{jabber:x:data}}x")
    assert x is not None and x.get("type") == "form"
    fields = {f.get("var") for f in x.findall("{jabber:x:data}field")}
    assert fields == {"FORM_TYPE", "with", "start", "end", "before-id", "after-id", "ids"}
    info = await alice["xep_0030"].get_info(jid="alice@localhost")
    features = set(info["disco_info"]["features"])
    assert {MAM, MAM + "#extended", SID} <= features
    info = await alice["xep_0030"].get_info(jid="localhost")
    assert MAM not in set(info["disco_info"]["features"])


async def test_bad_queries(harness: Harness) -> None:
    alice, bob = await pair(harness)
    await chat(alice, bob, "bob@localhost", ["x"])
    page = await query(alice, form(color="red"))
    assert page.type == "error" and page.error() == "bad-request"
    bad_type = ("<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'>"
                "<value>urn:xmpp:mam:1</value></field></x>")
    assert (await query(alice, bad_type)).error() == "bad-request"
    assert (await query(alice, form(start="yesterday"))).error() == "bad-request"
    assert (await query(alice, form(with_="@@"))).error() == "bad-request"
    assert (await query(alice, rsm(max=-1))).error() == "bad-request"
    page = await query(alice, to="bob@localhost")
    assert page.type == "error" and page.error() == "forbidden"
    assert page.results == []
    assert (await query(alice, form(after_id="12345"))).error() == "item-not-found"
    assert (await query(alice, form(before_id="nonsense"))).error() == "item-not-found"
    assert (await query(alice, rsm(after="999"))).error() == "item-not-found"
    # Someone else's id is unknown in one's own archive.
    bob_id = (await query(bob)).ids[0]
    assert (await query(alice, form(after_id=bob_id))).error() == "item-not-found"
    assert (await query(alice)).bodies == ["x"]


async def test_archive_survives_restart_and_account_deletion(harness: Harness) -> None:
    alice, bob = await pair(harness)
    await chat(alice, bob, "bob@localhost", ["before restart"])
    await harness.restart()  # stopping flushes the write batch
    bob = await harness.client("bob@localhost/test", plugins=PLUGINS)
    page = await query(bob)
    assert page.bodies == ["before restart"]
    alice = await harness.client("alice@localhost/test", plugins=PLUGINS)
    await chat(alice, bob, "bob@localhost", ["after restart"])
    page = await query(bob)
    assert page.bodies == ["before restart", "after restart"]
    assert int(page.ids[1]) > int(page.ids[0])
    assert harness.node is not None
    await harness.node.delete_account("bob")
    await harness.user("bob")
    bob = await harness.client("bob@localhost/again", plugins=PLUGINS)
    assert (await query(bob)).bodies == []
    assert (await query(alice)).bodies == ["before restart", "after restart"]
