"""XEP-0377 Blocking Command Reports through the front door: slixmpp's ``xep_0377`` (and raw
block IQs for what it cannot say: text, stanza-ids, opt-ins, a copy of the message) reports a
spammer; the spammer is blocked for the reporter and no one else, and the report is kept and
shown to the administrators, in the REST admin API (paged, dismissed) and as ad-hoc commands,
both refused to everyone else. SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.integration.adhoc import PLUGINS, Run, error_of, send
from tests.integration.clients import TIMEOUT, Client
from tests.integration.conftest import Harness
from tests.integration.test_adminapi import Api, token

REPORTING = "urn:xmpp:reporting:1"
SPAM = "urn:xmpp:reporting:spam"
LIST = "urn:hongyan:admin#list-reports"
DISMISS = "urn:hongyan:admin#dismiss-reports"
REPORT_NODES = (LIST, DISMISS)

RICH = (f"<block xmlns='urn:xmpp:blocking'><item jid='spammer@localhost'>"
        f"<report xmlns='{REPORTING}' reason='{SPAM}'>"
        "<stanza-id xmlns='urn:xmpp:sid:0' by='alice@localhost' id='sid-1'/>"
        "<stanza-id xmlns='urn:xmpp:sid:0' by='alice@localhost' id='sid-2'/>"
        "<text xml:lang='en'>Buy cheap watches, again</text>"
        "<body xmlns='jabber:client'>cheap watches!</body>"
        "<third-party/></report></item>"
        "<item jid='other@example.org'/></block>")


@pytest.fixture(autouse=True)
async def with_admin(harness: Harness) -> None:
    await harness.stop_node()
    await harness.start(server_extra='admins = ["admin@localhost"]')


@pytest.fixture
async def api(harness: Harness) -> Any:
    async with aiohttp.ClientSession() as http:
        yield Api(harness, http)


async def block(client: Client, payload: str) -> Any:
    return await client.send_raw_iq(client.make_iq_set(), payload, TIMEOUT)


async def delivered(receiver: Client, sender: Client, body: str) -> bool:
    """Whether a chat message from ``sender`` reaches ``receiver`` (and what comes back)."""
    sender.send_message(mto=receiver.boundjid.bare, mbody=body, mtype="chat")
    try:
        while True:
            msg = await receiver.next_message(timeout=1.0)
            if msg["body"] == body:
                return True
    except TimeoutError:
        return False


async def test_a_report_blocks_the_jid_and_is_kept(harness: Harness, api: Api) -> None:
    alice = await harness.logged_in("alice", plugins=("xep_0191", "xep_0377"))
    spammer = await harness.logged_in("spammer")
    carol = await harness.logged_in("carol")
    info = await alice.plugin["xep_0030"].get_info(jid="localhost")
    assert REPORTING in info["disco_info"]["features"]
    assert await delivered(alice, spammer, "hello before")

    answer = await block(alice, RICH)
    assert answer["type"] == "result", answer
    blocked = await alice.plugin["xep_0191"].get_blocked_jids(timeout=TIMEOUT)
    assert {str(j) for j in blocked} == {"spammer@localhost", "other@example.org"}
    assert not await delivered(alice, spammer, "buy now")
    assert await delivered(carol, spammer, "hello carol")  # blocked for the reporter only

    tok = token(harness, "--scope", "read")
    status, got, _ = await api.call("GET", "/api/reports", tok)
    assert status == 200, got
    assert got["count"] == 1 and got["offset"] == 0
    [r] = got["reports"]
    assert r["reporter"] == "alice@localhost" and r["jid"] == "spammer@localhost"
    assert r["reason"] == SPAM and r["text"] == "Buy cheap watches, again"
    assert r["lang"] == "en"
    assert r["stanza_ids"] == [{"by": "alice@localhost", "id": "sid-1"},
                               {"by": "alice@localhost", "id": "sid-2"}]
    assert r["processing"] == ["third-party"]
    assert "cheap watches!" in r["content"] and "<body" in r["content"]
    assert 0 <= harness.clock.time() - r["created"] < 60  # (the token CLI takes seconds)

    # slixmpp's own report (reason only): carol reports the spammer for abuse
    carol2 = await harness.client("carol@localhost/two", plugins=("xep_0191", "xep_0377"))
    res = await carol2.plugin["xep_0377"].report("spammer@localhost", reason="abuse",
                                                 timeout=TIMEOUT)
    assert res["type"] == "result"
    status, got, _ = await api.call("GET", "/api/reports", tok)
    assert got["count"] == 2
    assert {(x["reporter"], x["reason"]) for x in got["reports"]} == {
        ("alice@localhost", SPAM), ("carol@localhost", "urn:xmpp:reporting:abuse")}
    # a new report from the same reporter about the same JID replaces the older one
    again = (f"<block xmlns='urn:xmpp:blocking'><item jid='spammer@localhost'>"
             f"<report xmlns='{REPORTING}' reason='urn:xmpp:reporting:abuse'>"
             "<text>still at it</text></report></item></block>")
    assert (await block(alice, again))["type"] == "result"
    status, got, _ = await api.call("GET", "/api/reports", tok)
    assert got["count"] == 2
    mine = [x for x in got["reports"] if x["reporter"] == "alice@localhost"]
    assert [(x["reason"], x["text"], x["stanza_ids"]) for x in mine] == [
        ("urn:xmpp:reporting:abuse", "still at it", [])]


async def test_bad_reports_get_bad_request_and_block_nothing(harness: Harness,
                                                             api: Api) -> None:
    alice = await harness.logged_in("alice", plugins=("xep_0191",))
    for report in (f"<report xmlns='{REPORTING}'/>",
                   f"<report xmlns='{REPORTING}' reason='urn:example:mood'/>",
                   f"<report xmlns='{REPORTING}' reason='{SPAM}'>"
                   "<stanza-id xmlns='urn:xmpp:sid:0' id='x'/></report>"):
        got = await block(alice, "<block xmlns='urn:xmpp:blocking'><item jid='x@localhost'>"
                          f"{report}</item></block>")
        assert got["type"] == "error" and got["error"]["condition"] == "bad-request", got
    text = "x" * 5000
    got = await block(alice, "<block xmlns='urn:xmpp:blocking'><item jid='x@localhost'>"
                      f"<report xmlns='{REPORTING}' reason='{SPAM}'><text>{text}</text>"
                      "</report></item></block>")
    assert got["error"]["condition"] == "not-acceptable"
    assert await alice.plugin["xep_0191"].get_blocked_jids(timeout=TIMEOUT) == set()
    _, got, _ = await api.call("GET", "/api/reports", token(harness, "--scope", "read"))
    assert got["count"] == 0 and got["reports"] == []


async def test_reports_paged_and_dismissed_through_the_api(harness: Harness,
                                                           api: Api) -> None:
    alice = await harness.logged_in("alice")
    for i in range(5):
        await block(alice, f"<block xmlns='urn:xmpp:blocking'><item jid='s{i}@example.org'>"
                    f"<report xmlns='{REPORTING}' reason='{SPAM}'/></item></block>")
        await harness.clock.advance(1)
    admin_tok = token(harness, "--scope", "admin")
    read_tok = token(harness, "--scope", "read")
    status, got, _ = await api.call("GET", "/api/reports?offset=1&limit=2", read_tok)
    assert status == 200 and got["count"] == 5 and got["offset"] == 1
    assert [r["jid"] for r in got["reports"]] == ["s3@example.org", "s2@example.org"]
    first = got["reports"][0]["id"]

    # nobody but an admin token dismisses: no token, a wrong one, a read one
    for tok, want in ((None, 401), ("hy_000000000000_nope", 401), (read_tok, 403)):
        status, _, _ = await api.call("DELETE", f"/api/reports/{first}", tok)
        assert status == want
    status, _, _ = await api.call("GET", "/api/reports", None)
    assert status == 401
    status, _, _ = await api.call("DELETE", f"/api/reports/{first}", admin_tok)
    assert status == 204
    for gone in (str(first), "abc", "99999999", "-1"):
        status, got, _ = await api.call("DELETE", f"/api/reports/{gone}", admin_tok)
        assert (status, got["error"]) == (404, "not-found"), gone
    status, got, _ = await api.call("GET", "/api/reports", read_tok)
    assert got["count"] == 4 and first not in [r["id"] for r in got["reports"]]
    status, got, _ = await api.call("GET", "/api/reports?limit=0", read_tok)
    assert status == 400
    # the block stays after the report is dismissed
    assert harness.node is not None
    rows = await harness.node.db.fetchall("SELECT jid FROM blocklist WHERE username='alice'")
    assert len(rows) == 5
    status, doc, _ = await api.call("GET", "/api/openapi.json")
    assert {"get"} <= set(doc["paths"]["/api/reports"])
    assert doc["paths"]["/api/reports/{id}"]["delete"]["security"] == [{"bearer": ["admin"]}]


async def test_reports_as_ad_hoc_commands_for_admins_only(harness: Harness) -> None:
    alice = await harness.logged_in("alice")
    for who in ("s1@example.org", "s2@example.org", "s3@example.org"):
        await block(alice, f"<block xmlns='urn:xmpp:blocking'><item jid='{who}'>"
                    f"<report xmlns='{REPORTING}' reason='{SPAM}'><text>from {who}</text>"
                    "</report></item></block>")
        await harness.clock.advance(1)
    bob = await harness.logged_in("bob", plugins=PLUGINS)
    items = await bob.plugin["xep_0050"].get_commands(jid="localhost")
    assert not {n for _j, n, _m in items["disco_items"]["items"]} & set(REPORT_NODES)
    for node in REPORT_NODES:
        assert error_of(await send(bob, node)) == ("forbidden", set()), node
        got = await send(bob, node, values={"ids": ["1"], "max_items": "25"})
        assert error_of(got) == ("forbidden", set()), node

    a = await harness.logged_in("admin", plugins=PLUGINS)
    items = await a.plugin["xep_0050"].get_commands(jid="localhost")
    assert set(REPORT_NODES) <= {n for _j, n, _m in items["disco_items"]["items"]}
    r = Run(a, LIST)
    first = await r.start()
    assert first["command"]["status"] == "executing"
    page = await r.act("next", {"max_items": "25"})
    form = page["command"]["form"]
    assert [f["var"] for f in form["reported"].values()][:4] == ["id", "created",
                                                                  "reporter", "jid"]
    rows = form["items"]
    assert [row["jid"] for row in rows] == ["s3@example.org", "s2@example.org",
                                            "s1@example.org"]
    assert {row["reporter"] for row in rows} == {"alice@localhost"}
    assert rows[0]["text"] == "from s3@example.org"
    assert "of 3" in page["command"]["notes"][0][1]
    ids = [str(row["id"]) for row in rows]

    d = Run(a, DISMISS)
    await d.start()
    done = await d.act("complete", {"ids": [ids[0], "424242"]})
    assert done["command"]["status"] == "completed"
    note = done["command"]["notes"][0][1]
    assert f"dismissed: {ids[0]}" in note and "no such report: 424242" in note
    bad = Run(a, DISMISS)
    await bad.start()
    assert error_of(await bad.act("complete", {"ids": ["one"]})) == ("bad-request",
                                                                      {"bad-payload"})
    r = Run(a, LIST)
    await r.start()
    last = await r.act("complete", {"max_items": "25"})
    assert [row["jid"] for row in last["command"]["form"]["items"]] == ["s2@example.org",
                                                                        "s1@example.org"]
