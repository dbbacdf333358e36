"""XEP-0313 message archive (with XEP-0359 stanza ids and XEP-0059 paging) through real
slixmpp clients over real sockets, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

from slixmpp.xmlstream import ET
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from hongyan.modules.mam import Mam
from hongyan.xmpp.stamps import xmpp_datetime
from tests.integration.clients import Client
from tests.integration.conftest import Harness

MAM = "urn:xmpp:mam:2"
RSM = "http://jabber.org/protocol/rsm"
SID = "urn:xmpp:sid:0"
FWD = "urn:xmpp:forward:0"
PLUGINS = ("xep_0280", "xep_0313", "xep_0059")
_qids = itertools.count()


def field(var: str, *values: str) -> str:
    return f"<field var='{var}'>" + "".join(f"<value>{v}</value>" for v in values) + "</field>"


async def query(c: Client, fields: str = "", rsm: str = "", extra: str = "",
                to: str | None = None) -> tuple[Any, list[Any]]:
    """A MAM query; returns the IQ answer and the result messages (``<result>`` elements)."""
    qid = f"q{next(_qids)}"
    got: list[Any] = []
    name = f"mam-{qid}"

    def on_result(msg: Any) -> None:
        r = msg.xml.find(f"{{{MAM}}}result")
        if r is not None and r.get("queryid") == qid:
            got.append(r)

    c.register_handler(Callback(name, MatchXPath(f"{{jabber:client}}message/{{{MAM}}}result"),
                                on_result))
    form = ""
    if fields:
        form = (f"<x xmlns='jabber:x:data' type='submit'>{field('FORM_TYPE', MAM)}{fields}"
                "</x>")
    rset = f"<set xmlns='{RSM}'>{rsm}</set>" if rsm else ""
    iq = c.make_iq_set()
    if to:
        iq["to"] = to
    try:
        res = await c.send_raw_iq(iq, f"<query xmlns='{MAM}' queryid='{qid}'>{form}{rset}"
                                      f"{extra}</query>", 10)
    finally:
        c.remove_handler(name)
    return res, got


def bodies(results: list[Any]) -> list[str]:
    return [r.find(f"{{{FWD}}}forwarded/{{jabber:client}}message/{{jabber:client}}body").text
            for r in results]


def fin(res: Any) -> tuple[bool, str | None, str | None, int]:
    f = res.xml.find(f"{{{MAM}}}fin")
    s = f.find(f"{{{RSM}}}set")
    first, last = s.find(f"{{{RSM}}}first"), s.find(f"{{{RSM}}}last")
    return (f.get("complete") == "true", None if first is None else first.text,
            None if last is None else last.text, int(s.find(f"{{{RSM}}}count").text))


def condition(iq: Any) -> str | None:
    return iq["error"]["condition"] if iq["type"] == "error" else None


async def pair(harness: Harness) -> tuple[Client, Client]:
    romeo = await harness.logged_in("romeo", plugins=PLUGINS)
    juliet = await harness.logged_in("juliet", plugins=PLUGINS)
    return romeo, juliet


async def test_both_sides_archived_with_stanza_id(harness: Harness) -> None:
    romeo, juliet = await pair(harness)
    m = romeo.make_message(mto="juliet@localhost", mbody="hello", mtype="chat")
    # a forged stanza-id claiming Juliet's archive must not get through
    m.append(ET.fromstring(f"<stanza-id xmlns='{SID}' by='juliet@localhost' id='forged'/>"))
    m.send()
    got = await juliet.next_message()
    sids = got.xml.findall(f"{{{SID}}}stanza-id")
    assert len(sids) == 1 and sids[0].get("by") == "juliet@localhost"
    assert sids[0].get("id") != "forged"
    res, results = await query(juliet)
    assert bodies(results) == ["hello"] and results[0].get("id") == sids[0].get("id")
    fwd = results[0].find(f"{{{FWD}}}forwarded")
    assert fwd.find("{urn:xmpp:delay}delay").get("stamp", "").endswith("Z")
    assert fwd.find("{jabber:client}message").get("from") == "romeo@localhost/test"
    complete, first, last, count = fin(res)
    assert complete and first == last == sids[0].get("id") and count == 1
    # the sender's archive has it right after sending (a query flushes the write batch)
    res, results = await query(romeo)
    assert bodies(results) == ["hello"] and fin(res)[0]
    # disco on the account advertises MAM
    info = await romeo.plugin["xep_0030"].get_info(jid="romeo@localhost")
    feats = set(info["disco_info"]["features"])
    assert {MAM, MAM + "#extended", SID} <= feats


def metadata(res: Any) -> dict[str, tuple[str, str]]:
    """XEP-0313 §6 archive metadata: {"start"|"end": (id, timestamp)}."""
    assert res["type"] == "result", res
    md = res.xml.find(f"{{{MAM}}}metadata")
    assert md is not None, res
    return {c.tag.split("}")[1]: (c.get("id"), c.get("timestamp")) for c in md}


async def test_archive_metadata(harness: Harness) -> None:
    """urn:xmpp:mam:2#extended is advertised, so <metadata/> is answered: the id and time of
    the first and last message of the archive (XEP-0313 §6), nothing for an empty one."""
    romeo, juliet = await pair(harness)
    assert metadata(await romeo.iq(f"<metadata xmlns='{MAM}'/>")) == {}
    for body in ("first", "middle", "last"):
        romeo.send_message(mto="juliet@localhost", mbody=body, mtype="chat")
        await juliet.next_message()
    _, results = await query(juliet)
    ids = [r.get("id") for r in results]
    stamps = [r.find(f"{{{FWD}}}forwarded/{{urn:xmpp:delay}}delay").get("stamp")
              for r in results]
    want = {"start": (ids[0], stamps[0]), "end": (ids[-1], stamps[-1])}
    # no 'to' and the own bare JID alike; the sender's archive holds the same messages
    assert metadata(await juliet.iq(f"<metadata xmlns='{MAM}'/>")) == want
    iq = juliet.make_iq_get()
    iq["to"] = "juliet@localhost"
    assert metadata(await juliet.send_raw_iq(iq, f"<metadata xmlns='{MAM}'/>", 10)) == want
    assert metadata(await romeo.iq(f"<metadata xmlns='{MAM}'/>")) == want
    # another user's archive is not told
    iq = romeo.make_iq_get()
    iq["to"] = "juliet@localhost"
    assert condition(await romeo.send_raw_iq(iq, f"<metadata xmlns='{MAM}'/>", 10)) == \
        "forbidden"


async def test_forged_stanza_id_after_a_no_store_hint_is_removed(harness: Harness) -> None:
    # XEP-0359 §5: a stanza-id claiming our JIDs goes, whether the message is archived or not
    romeo, juliet = await pair(harness)
    m = romeo.make_message(mto="juliet@localhost", mbody="secret", mtype="chat")
    m.append(ET.fromstring("<no-store xmlns='urn:xmpp:hints'/>"))
    m.append(ET.fromstring(f"<stanza-id xmlns='{SID}' by='juliet@localhost' id='forged'/>"))
    m.send()
    got = await juliet.next_message()
    assert got["body"] == "secret"
    assert got.xml.findall(f"{{{SID}}}stanza-id") == []
    res, results = await query(juliet)
    assert results == [] and fin(res)[3] == 0


async def test_what_is_archived(harness: Harness) -> None:
    romeo, juliet = await pair(harness)
    romeo.send_message(mto="juliet@localhost", mbody="kept", mtype="chat")
    cs = romeo.make_message(mto="juliet@localhost", mtype="chat")
    cs.append(ET.fromstring("<composing xmlns='http://jabber.org/protocol/chatstates'/>"))
    cs.send()
    for hint in ("no-store", "no-permanent-store"):
        m = romeo.make_message(mto="juliet@localhost", mbody=hint, mtype="chat")
        m.append(ET.fromstring(f"<{hint} xmlns='urn:xmpp:hints'/>"))
        m.send()
    romeo.send_message(mto="juliet@localhost", mbody="news", mtype="headline")
    r = romeo.make_message(mto="juliet@localhost", mtype="chat")
    r.append(ET.fromstring("<received xmlns='urn:xmpp:receipts' id='x1'/>"))
    r.send()
    romeo.send_message(mto="juliet@localhost", mbody="last", mtype="normal")
    await asyncio.sleep(0.5)
    res, results = await query(juliet)
    assert fin(res)[3] == 2 + 1
    texts = [r.find(f"{{{FWD}}}forwarded/{{jabber:client}}message") for r in results]
    assert texts[0].find("{jabber:client}body").text == "kept"
    assert texts[1].find("{urn:xmpp:receipts}received") is not None
    assert texts[2].find("{jabber:client}body").text == "last"


async def test_paging_forward_and_backward(harness: Harness) -> None:
    romeo, juliet = await pair(harness)
    n = 120
    for i in range(n):
        romeo.send_message(mto="juliet@localhost", mbody=f"m{i:03}", mtype="chat")
    for _ in range(n):
        await juliet.next_message()
    want = [f"m{i:03}" for i in range(n)]
    # forward, pages of 50
    seen: list[str] = []
    after: str | None = None
    pages = 0
    while True:
        rsm = "<max>50</max>" + (f"<after>{after}</after>" if after else "")
        res, results = await query(juliet, rsm=rsm)
        complete, first, last, count = fin(res)
        assert count == n and len(results) <= 50
        assert first == results[0].get("id") and last == results[-1].get("id")
        seen += bodies(results)
        pages += 1
        after = last
        if complete:
            break
    assert seen == want and pages == 3
    # backward from the end: <before/> empty = the last page
    seen = []
    before = ""
    pages = 0
    while True:
        res, results = await query(juliet, rsm=f"<max>50</max><before>{before}</before>")
        complete, first, _last, count = fin(res)
        seen = bodies(results) + seen
        pages += 1
        before = first or ""
        if complete:
            break
    assert seen == want and pages == 3
    # flip-page: the last page, newest first
    res, results = await query(juliet, rsm="<max>5</max><before/>", extra="<flip-page/>")
    assert bodies(results) == list(reversed(want[-5:]))
    # the sender's side holds the same 120
    res, results = await query(romeo, rsm="<max>250</max>")
    assert bodies(results) == want and fin(res)[0]
    # slixmpp's own MAM client pages through it (RSM iteration)
    got: list[str] = []
    async for msg in juliet.plugin["xep_0313"].iterate(rsm={"max": 40}):
        got.append(msg["mam_result"]["forwarded"]["stanza"]["body"])
    assert got == want
    got = []
    async for msg in juliet.plugin["xep_0313"].iterate(rsm={"max": 40}, reverse=True):
        got.append(msg["mam_result"]["forwarded"]["stanza"]["body"])
    assert got == list(reversed(want))


async def test_filters_with_start_end_ids(harness: Harness) -> None:
    romeo, juliet = await pair(harness)
    nurse = await harness.logged_in("nurse", plugins=PLUGINS)
    romeo.send_message(mto="juliet@localhost", mbody="r1", mtype="chat")
    await juliet.next_message()
    await asyncio.sleep(0.05)
    mid = time.time()
    await asyncio.sleep(0.05)
    nurse.send_message(mto="juliet@localhost", mbody="n1", mtype="chat")
    await juliet.next_message()
    romeo.send_message(mto="juliet@localhost", mbody="r2", mtype="chat")
    await juliet.next_message()
    juliet.send_message(mto="romeo@localhost", mbody="j1", mtype="chat")
    await romeo.next_message()
    _, results = await query(juliet, field("with", "romeo@localhost"))
    assert bodies(results) == ["r1", "r2", "j1"]
    # a full JID matches only messages from or to that resource (j1 went to the bare JID)
    _, results = await query(juliet, field("with", "romeo@localhost/test"))
    assert bodies(results) == ["r1", "r2"]
    _, results = await query(juliet, field("with", "romeo@localhost/other"))
    assert results == []
    _, results = await query(juliet, field("start", xmpp_datetime(mid)))
    assert bodies(results) == ["n1", "r2", "j1"]
    _, results = await query(juliet, field("end", xmpp_datetime(mid)))
    assert bodies(results) == ["r1"]
    res, results = await query(juliet, field("with", "romeo@localhost") +
                               field("start", xmpp_datetime(mid)))
    assert bodies(results) == ["r2", "j1"] and fin(res)[3] == 2
    _, everything = await query(juliet)
    ids = [r.get("id") for r in everything]
    _, results = await query(juliet, field("after-id", ids[0]))
    assert bodies(results) == ["n1", "r2", "j1"]
    _, results = await query(juliet, field("before-id", ids[2]))
    assert bodies(results) == ["r1", "n1"]
    _, results = await query(juliet, field("ids", ids[3], ids[1]))
    assert bodies(results) == ["n1", "j1"]
    # the form
    form = await juliet.iq(f"<query xmlns='{MAM}'/>")
    fields = {f.get("var") for f in form.xml.iter("{jabber:x:data}field")}
    assert fields == {"FORM_TYPE", "with", "start", "end", "before-id", "after-id", "ids"}


async def test_bad_input(harness: Harness) -> None:
    romeo, juliet = await pair(harness)
    romeo.send_message(mto="juliet@localhost", mbody="x", mtype="chat")
    await juliet.next_message()
    cases = {
        field("color", "red"): "bad-request",
        field("start", "yesterday"): "bad-request",
        field("with", "@@"): "bad-request",
        field("after-id", "999"): "item-not-found",
        field("before-id", "nonsense"): "item-not-found",
    }
    for fields, cond in cases.items():
        res, results = await query(juliet, fields)
        assert condition(res) == cond, fields
        assert results == []
    res, _ = await query(juliet, "<field var='FORM_TYPE'><value>urn:other</value></field>")
    assert condition(res) == "bad-request"
    res, _ = await query(juliet, rsm="<after>12345</after>")
    assert condition(res) == "item-not-found"
    res, _ = await query(juliet, rsm="<max>many</max>")
    assert condition(res) == "bad-request"
    res, _ = await query(juliet, to="romeo@localhost")
    assert condition(res) == "forbidden"
    res = await juliet.iq(f"<prefs xmlns='{MAM}'/>")
    assert res["type"] == "result"
    iq = juliet.make_iq_set()
    res = await juliet.send_raw_iq(iq, f"<prefs xmlns='{MAM}' default='sometimes'/>", 10)
    assert condition(res) == "bad-request"
    iq = juliet.make_iq_get()
    iq["to"] = "romeo@localhost"
    res = await juliet.send_raw_iq(iq, f"<prefs xmlns='{MAM}'/>", 10)
    assert condition(res) == "forbidden"


async def test_preferences(harness: Harness) -> None:
    romeo, juliet = await pair(harness)
    nurse = await harness.logged_in("nurse", plugins=PLUGINS)
    iq = juliet.make_iq_set()
    res = await juliet.send_raw_iq(iq, f"<prefs xmlns='{MAM}' default='always'><always/>"
                                       "<never><jid>nurse@localhost</jid></never></prefs>", 10)
    assert res["type"] == "result"
    nurse.send_message(mto="juliet@localhost", mbody="secret", mtype="chat")
    got = await juliet.next_message()
    assert got.xml.find(f"{{{SID}}}stanza-id") is None  # not archived, no archive id
    romeo.send_message(mto="juliet@localhost", mbody="hi", mtype="chat")
    await juliet.next_message()
    _, results = await query(juliet)
    assert bodies(results) == ["hi"]
    _, results = await query(nurse)
    assert bodies(results) == ["secret"]  # the sender's own archive keeps it
    # default never, with an always list
    iq = juliet.make_iq_set()
    await juliet.send_raw_iq(iq, f"<prefs xmlns='{MAM}' default='never'><always>"
                                 "<jid>nurse@localhost</jid></always><never/></prefs>", 10)
    romeo.send_message(mto="juliet@localhost", mbody="hi2", mtype="chat")
    nurse.send_message(mto="juliet@localhost", mbody="n2", mtype="chat")
    await juliet.next_message()
    await juliet.next_message()
    _, results = await query(juliet)
    assert sorted(bodies(results)) == ["hi", "n2"]
    # default roster: only contacts (nobody is in Juliet's roster)
    iq = juliet.make_iq_set()
    await juliet.send_raw_iq(iq, f"<prefs xmlns='{MAM}' default='roster'/>", 10)
    romeo.send_message(mto="juliet@localhost", mbody="hi3", mtype="chat")
    await juliet.next_message()
    _, results = await query(juliet)
    assert sorted(bodies(results)) == ["hi", "n2"]
    iq = juliet.make_iq_set()
    await juliet.send_raw_iq(iq, "<query xmlns='jabber:iq:roster'>"
                                 "<item jid='romeo@localhost'/></query>", 10)
    romeo.send_message(mto="juliet@localhost", mbody="hi4", mtype="chat")
    await juliet.next_message()
    _, results = await query(juliet)
    assert sorted(bodies(results)) == ["hi", "hi4", "n2"]
    # prefs survive a restart
    await harness.restart()
    juliet = await harness.client("juliet@localhost/x", plugins=PLUGINS)
    res = await juliet.iq(f"<prefs xmlns='{MAM}'/>")
    prefs = res.xml.find(f"{{{MAM}}}prefs")
    assert prefs.get("default") == "roster"


async def test_survives_restart_and_account_deletion(harness: Harness) -> None:
    romeo, juliet = await pair(harness)
    for i in range(3):
        romeo.send_message(mto="juliet@localhost", mbody=f"s{i}", mtype="chat")
    for _ in range(3):
        await juliet.next_message()
    # no query before the restart: shutdown must flush the write batch
    await harness.restart()
    juliet = await harness.client("juliet@localhost/x", plugins=PLUGINS)
    _, results = await query(juliet)
    assert bodies(results) == ["s0", "s1", "s2"]
    await juliet.close()
    assert harness.node is not None
    assert await harness.node.delete_account("juliet")
    await harness.user("juliet")
    juliet = await harness.client("juliet@localhost/y", plugins=PLUGINS)
    res, results = await query(juliet)
    assert results == [] and fin(res)[3] == 0
    romeo = await harness.client("romeo@localhost/z", plugins=PLUGINS)
    _, results = await query(romeo)
    assert bodies(results) == ["s0", "s1", "s2"]


async def test_retention(harness: Harness) -> None:
    await harness.stop_node()
    await harness.start(extra="[mam]\nretention_days = 0.00001\ncleanup_interval = 0.2\n")
    romeo, juliet = await pair(harness)
    romeo.send_message(mto="juliet@localhost", mbody="old", mtype="chat")
    await juliet.next_message()
    _, results = await query(juliet)
    assert bodies(results) == ["old"]
    await harness.clock.advance(1.0)  # 0.00001 days = 0.864 s; the cleanup runs every 0.2 s
    await asyncio.sleep(0.2)  # the clean-up's DELETE
    romeo.send_message(mto="juliet@localhost", mbody="new", mtype="chat")
    await juliet.next_message()
    _, results = await query(juliet)
    assert bodies(results) == ["new"]
    assert harness.node is not None
    mod = harness.node.modules["mam"]
    assert isinstance(mod, Mam)
    await harness.clock.advance(1.0)
    await mod.cleanup()  # the manual trigger (the periodic one may have been first)
    _, results = await query(juliet)
    assert results == []


async def test_both_accounts_deleted_leaves_no_row(harness: Harness) -> None:
    romeo, juliet = await pair(harness)
    romeo.send_message(mto="juliet@localhost", mbody="secret", mtype="chat")
    await juliet.next_message()
    await romeo.close()
    await juliet.close()
    node = harness.node
    assert node is not None
    for user in ("juliet", "romeo"):
        assert await node.delete_account(user)
        # one archive left after the first deletion, none after the second
        left = await node.db.fetchval("SELECT COUNT(*) FROM mam_log")
        assert left == (1 if user == "juliet" else 0)


async def test_version_1_archive_is_converted(harness: Harness) -> None:
    """An archive written by schema version 1 (one row per archive) is moved into the
    one-row-per-message log at start: ids, both sides, `with` and resources are kept."""
    await harness.user("romeo")
    await harness.user("juliet")
    node = harness.node
    assert node is not None
    db = node.db
    # Back to version 1's table, as a server of the previous release left it.
    await db.execute("DROP VIEW mam_messages")
    await db.execute("DROP TABLE mam_log")
    await db.execute("ALTER TABLE mam_legacy RENAME TO mam_messages")
    await db.execute("DELETE FROM schema_versions WHERE component='mam' AND version=2")
    base = int((time.time() - 100) * 1_000_000)

    def msg(i: int, frm: str, to: str, by: str) -> str:
        return (f"<message xmlns='jabber:client' from='{frm}' to='{to}' type='chat' id='v{i}'>"
                f"<body>v1-{i}</body><stanza-id xmlns='{SID}' by='{by}' id='{base + i}'/>"
                "</message>")

    rows = [  # both copies of message 0 (one id), romeo's copy of 1, juliet's of 2 (remote)
        ("romeo", base, "juliet@localhost", "balcony",
         msg(0, "romeo@localhost/garden", "juliet@localhost/balcony", "juliet@localhost")),
        ("juliet", base, "romeo@localhost", "garden",
         msg(0, "romeo@localhost/garden", "juliet@localhost/balcony", "juliet@localhost")),
        ("romeo", base + 1, "nurse@example.org", "",
         msg(1, "romeo@localhost/garden", "nurse@example.org", "romeo@localhost")),
        ("juliet", base + 2, "nurse@example.org", "home",
         msg(2, "nurse@example.org/home", "juliet@localhost", "juliet@localhost")),
    ]
    await db.executemany("INSERT INTO mam_messages (owner, id, peer, peer_res, stanza) "
                         "VALUES (?,?,?,?,?)", rows)
    await harness.restart()
    assert harness.node is not None
    assert await harness.node.db.fetchval("SELECT COUNT(*) FROM mam_legacy") == 0
    assert await harness.node.db.fetchval("SELECT COUNT(*) FROM mam_log") == 3
    romeo = await harness.client("romeo@localhost/test", plugins=PLUGINS)
    juliet = await harness.client("juliet@localhost/test", plugins=PLUGINS)
    _, results = await query(romeo)
    assert bodies(results) == ["v1-0", "v1-1"]
    assert [r.get("id") for r in results] == [str(base), str(base + 1)]
    _, results = await query(juliet)
    assert bodies(results) == ["v1-0", "v1-2"]
    _, results = await query(juliet, field("with", "romeo@localhost"))
    assert bodies(results) == ["v1-0"]
    _, results = await query(juliet, field("with", "romeo@localhost/garden"))
    assert bodies(results) == ["v1-0"]
    _, results = await query(juliet, field("with", "romeo@localhost/elsewhere"))
    assert results == []
    _, results = await query(romeo, field("with", "nurse@example.org"))
    assert bodies(results) == ["v1-1"]
    # new messages get ids above the converted ones and share the log
    romeo.send_message(mto="juliet@localhost", mbody="new", mtype="chat")
    await juliet.next_message()
    _, results = await query(juliet, field("with", "romeo@localhost"))
    assert bodies(results) == ["v1-0", "new"] and int(results[1].get("id")) > base + 2
