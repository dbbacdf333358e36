"""A node of two worker processes (``server.workers = 2``), started as a user would
(``hongyan serve``), driven by slixmpp over real sockets, on SQLite and PostgreSQL.

Accounts are picked so that their home workers differ; which worker accepts a connection is the
kernel's choice, so each test logs in several times over STARTTLS, direct TLS and plain TCP: a
connection accepted by the account's home stays, one accepted by the other worker is moved
(its socket passed, or its TLS relayed). Whatever the path, the client must see one server.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from hongyan.cluster.workers import home_of
from tests.integration.clients import TIMEOUT, Client
from tests.integration.netcut import NetCut
from tests.integration.rawstream import SASL, RawStream, b64
from tests.integration.test_metrics import parse, scrape, v
from tests.integration.test_process import PW, Server, free_port, hongyan
from tests.integration.test_sm_resume import resume
from tests.integration.wsstream import CLOSE, WsStream, ws_url

SM = "urn:xmpp:sm:3"

#: two accounts homed on worker 0 and two on worker 1 (checked below)
A0, B0, A1, B1 = "bob", "dave", "alice", "carol"
MODES = ("starttls", "direct", "plain")
NUL = "\0"


def test_the_accounts_have_the_homes_the_tests_assume() -> None:
    assert [home_of(u, 2) for u in (A0, B0, A1, B1)] == [0, 0, 1, 1]


class Node:
    def __init__(self, config: Path) -> None:
        self.config = config
        text = config.read_text()
        self.port = int(text.split("\nport = ")[1].split("\n")[0])
        self.tls_port = int(text.split("\ndirect_tls_port = ")[1].split("\n")[0])
        self.http_port = int(text.split("[http]")[1].split("\nport = ")[1].split("\n")[0])
        self.https_port = int(text.split("[http]")[1].split("\ntls_port = ")[1].split("\n")[0])
        self.clients: list[Client] = []

    async def login(self, user: str, resource: str = "r", mode: str = "starttls",
                    plugins: tuple[str, ...] = (), port: int = 0,
                    host: str = "127.0.0.1") -> Client:
        c = Client(f"{user}@localhost/{resource}", PW, plugins)
        self.clients.append(c)
        if mode == "plain":
            c.enable_starttls = False
            c.enable_direct_tls = False
            c.enable_plaintext = True
            c.plugin["feature_mechanisms"].unencrypted_plain = True
            c.connect(host, port or self.port)
            assert await asyncio.wait_for(c._started, TIMEOUT)
            c.send_presence()
            await asyncio.wait_for(c.get_roster(), TIMEOUT)
            return c
        direct = mode == "direct"
        assert await c.login(port or (self.tls_port if direct else self.port), direct_tls=direct,
                             host=host)
        return c


@pytest.fixture
async def node(tmp_path: Path, storage_url: str) -> AsyncIterator[Node]:
    async with serving(tmp_path, storage_url) as n:
        yield n


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, storage_url: str, extra: str = "",
                  node_class: type[Node] = Node, c2s_extra: str = "",
                  http_extra: str = "", server_extra: str = "") -> AsyncIterator[Node]:
    """``hongyan serve`` with two workers and the four accounts; ``extra``: more config,
    ``c2s_extra``, ``http_extra`` and ``server_extra``: more of its [c2s], [http] and
    [server] sections."""
    path = tmp_path / "hongyan.toml"
    http_port = free_port()
    path.write_text(f"""
[server]
data_dir = "{tmp_path / 'data'}"
workers = 2
log_level = "warning"
{server_extra}
[c2s]
bind = ["127.0.0.1", "127.0.0.2"]
port = {free_port()}
direct_tls_port = {free_port()}
require_encryption = false
allow_plaintext_auth = true
{c2s_extra}
[http]
bind = ["127.0.0.1"]
port = {http_port}
tls_port = {free_port()}
{http_extra}
[storage]
url = "{storage_url}"
[auth]
failure_delay = 0.05
{extra}
[upload]
public_url = "http://127.0.0.1:{http_port}"
""")
    for user in (A0, B0, A1, B1):
        r = hongyan("adduser", f"{user}@localhost", stdin=PW + "\n", config=path)
        assert r.returncode == 0, r.stderr
    srv = Server(path)
    await srv.start()
    n = node_class(path)
    n.server = srv  # type: ignore[attr-defined]
    try:
        yield n
    finally:
        for c in n.clients:
            await c.close()
        if srv.proc is not None and srv.proc.returncode is None:
            srv.proc.terminate()
            await srv.wait()


async def test_chat_across_homes_in_order_whatever_worker_accepts(node: Node) -> None:
    for round_ in range(3):
        for mode in MODES:
            a = await node.login(A0, f"a{round_}{mode}", mode)
            b = await node.login(A1, f"b{round_}{mode}", mode)
            for i in range(20):
                a.send_message(mto=f"{A1}@localhost", mbody=f"{mode} {i}", mtype="chat")
            got = [(await b.next_message())["body"] for _ in range(20)]
            assert got == [f"{mode} {i}" for i in range(20)]
            b.send_message(mto=str(a.boundjid), mbody="back", mtype="chat")
            m = await a.next_message()
            assert (m["body"], str(m["from"])) == ("back", str(b.boundjid))
            await a.close()
            await b.close()


async def test_every_bind_address_is_served(node: Node) -> None:
    """``c2s.bind`` names two addresses: the workers accept on both, on both ports."""
    clients = {}
    for host in ("127.0.0.1", "127.0.0.2"):
        for mode in MODES:
            clients[host, mode] = await node.login(A1, f"{host}-{mode}", mode, host=host)
    b = await node.login(B0, host="127.0.0.2")
    for (host, mode), c in clients.items():
        b.send_message(mto=f"{A1}@localhost/{host}-{mode}", mbody=f"to {host} {mode}",
                       mtype="chat")
        assert (await c.next_message())["body"] == f"to {host} {mode}"


async def test_failed_logins_count_on_every_worker(node: Node) -> None:
    """The kernel hands each connection to either worker; the delay after a failed login still
    doubles with each failure from the address (failure_delay 0.05 s), and a success clears
    the count everywhere."""
    async def fail(password: str) -> float:
        s = await RawStream.open(node.port)
        try:
            await s.header()
            s.send(f"<auth xmlns='{SASL}' mechanism='PLAIN'>"
                   f"{b64(f'{NUL}{A0}{NUL}{password}')}</auth>")
            t0 = time.monotonic()
            assert b"<not-authorized/>" in await s.read_until(b"</failure>")
            return time.monotonic() - t0
        finally:
            s.close()

    took = [await fail(f"bad-{i}") for i in range(5)]
    for i, t in enumerate(took):  # 0.05, 0.1, 0.2, 0.4, 0.8 s
        assert t >= 0.05 * 2 ** i * 0.9, took
    await node.login(A0, mode="plain")
    # reset: the first delay again (0.05 s) against the third's 0.2 s; no tighter bound, a
    # loaded machine adds its own latency to every answer
    assert await fail("bad") < took[2]


async def test_a_login_ban_holds_on_every_worker(tmp_path: Path, storage_url: str) -> None:
    """auth.max_failures_per_ip counts the failures either worker saw, and then either
    worker refuses the address at once (policy-violation), the right password too; another
    address still logs in."""
    async with serving(tmp_path, storage_url, extra="max_failures_per_ip = 6") as n:
        async def attempt(password: str) -> bytes:
            s = await RawStream.open(n.port)
            try:
                head = await s.header()
                if b"<stream:error>" in head:
                    return head
                s.send(f"<auth xmlns='{SASL}' mechanism='PLAIN'>"
                       f"{b64(f'{NUL}{A0}{NUL}{password}')}</auth>")
                return await s.read_until(b"</failure>") if password != PW else \
                    await s.read_until(b"success>")
            finally:
                s.close()

        for i in range(5):
            assert b"<not-authorized/>" in await attempt(f"bad-{i}")
        await asyncio.sleep(0.3)  # (the notices reach the other worker)
        out = await attempt("bad-5")  # the sixth: banned, on whichever worker got it
        assert b"<policy-violation" in out, out
        await asyncio.sleep(0.3)
        for _ in range(6):  # the kernel spreads these over both workers
            s = await RawStream.open(n.port)
            try:  # (the server speaks first, and closes: no header of ours to reset it)
                refused = await s.read_to_close()
            finally:
                s.close()
            assert b"<stream:error><policy-violation" in refused, refused
        reader, writer = await asyncio.open_connection("127.0.0.1", n.port,
                                                       local_addr=("127.0.0.2", 0))
        other = RawStream(reader, writer)  # another address
        try:
            await other.header()
            other.send(f"<auth xmlns='{SASL}' mechanism='PLAIN'>"
                       f"{b64(f'{NUL}{A0}{NUL}{PW}')}</auth>")
            assert b"<success" in await other.read_until(b"success>")
        finally:
            other.close()


async def test_unauthenticated_connections_per_address_are_capped_per_worker(
        tmp_path: Path, storage_url: str) -> None:
    """c2s.preauth_per_ip counts in each worker: of five connections from one address, each
    worker lets in at most two (which worker accepts is the kernel's choice), so at least one
    gets policy-violation; once they are gone a client logs in."""
    async with serving(tmp_path, storage_url, c2s_extra="preauth_per_ip = 2") as node:
        streams = [await RawStream.open(node.port) for _ in range(5)]
        admitted = refused = 0
        for s in streams:
            s.send("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                   "xmlns:stream='http://etherx.jabber.org/streams' to='localhost' "
                   "version='1.0'>")
            out = await s.read_until(b"</stream:features>")
            if b"<policy-violation " in out:
                refused += 1
            else:
                assert b"<stream:features" in out, out
                admitted += 1
        assert refused >= 1 and 2 <= admitted <= 4, (admitted, refused)
        for s in streams:
            s.close()
        await asyncio.sleep(0.2)  # (each worker notices its closes on its next read)
        await node.login(A0, mode="plain")


async def test_websocket_sessions_whatever_worker_accepts(node: Node) -> None:
    """Each WebSocket is accepted by either worker; one that is not the account's home moves
    its socket there (ws://: its frames start clean after SASL), or keeps it and relays its
    messages to the home (wss://: the TLS stays). Login, chat both ways with a TCP user,
    stream management, and a clean close, for accounts homed on each worker, many times
    over."""
    tcp = await node.login(B0, "tcp")
    workers_seen = set()
    for round_ in range(8):
        for user in (A0, A1):
            tls = round_ % 2 == 1
            s = await WsStream.connect(ws_url(node.https_port if tls else node.http_port, tls))
            await s.login(user, f"w{round_}", PW)
            s.send(f"<enable xmlns='{SM}'/>")
            await s.until("<enabled")
            s.send("<presence xmlns='jabber:client'/>")
            s.send(f"<message xmlns='jabber:client' to='{B0}@localhost/tcp' type='chat'>"
                   f"<body>ws {user} {round_}</body></message>")
            m = await tcp.next_message()
            assert (m["body"], str(m["from"])) == (f"ws {user} {round_}",
                                                   f"{user}@localhost/w{round_}")
            tcp.send_message(mto=f"{user}@localhost/w{round_}", mbody=f"tcp {round_}",
                             mtype="chat")
            got = await s.until(f"tcp {round_}")
            assert got.startswith("<message xmlns='jabber:client' ")
            s.send(CLOSE)
            assert (await s.read_to_close()).endswith(CLOSE.encode())
            await s.close()
        async with aiohttp.ClientSession() as http, http.get(
                f"http://127.0.0.1:{node.http_port}/health") as r:
            workers_seen.add((await r.json())["worker"])
    assert workers_seen <= {0, 1}


async def test_offline_message_to_another_home(node: Node) -> None:
    a = await node.login(A0)
    for i in range(5):
        a.send_message(mto=f"{B1}@localhost", mbody=f"while away {i}", mtype="chat")
    await a.plugin["xep_0199"].ping(jid="localhost", timeout=TIMEOUT)
    b = await node.login(B1)
    got = [(await b.next_message())["body"] for _ in range(5)]
    assert got == [f"while away {i}" for i in range(5)]


async def seen(c: Client, seen: list[Any], pred: Any) -> Any:
    """Wait (bounded) for a presence matching ``pred``, keeping every one received in ``seen``."""
    while True:
        for p in seen:
            if pred(p):
                return p
        seen.append(await c.next_presence())


async def test_subscription_presence_and_unavailable_across_homes(node: Node) -> None:
    a = await node.login(A0, "home0")
    b = await node.login(A1, "home1")
    at_a: list[Any] = []
    at_b: list[Any] = []
    a.send_presence(pto=f"{A1}@localhost", ptype="subscribe")
    p = await seen(b, at_b, lambda p: p["type"] == "subscribe")
    assert p["from"].bare == f"{A0}@localhost"
    b.send_presence(pto=f"{A0}@localhost", ptype="subscribed")
    b.send_presence(pto=f"{A0}@localhost", ptype="subscribe")
    await seen(a, at_a, lambda p: p["type"] == "subscribe")
    a.send_presence(pto=f"{A1}@localhost", ptype="subscribed")
    # each now sees the other's available presence
    await seen(a, at_a, lambda p: str(p["from"]) == str(b.boundjid) and p["type"] == "available")
    await seen(b, at_b, lambda p: str(p["from"]) == str(a.boundjid) and p["type"] == "available")
    r = await a.iq("<query xmlns='jabber:iq:roster'/>")
    item = r.xml.find("{jabber:iq:roster}query/{jabber:iq:roster}item")
    assert (item.get("jid"), item.get("subscription")) == (b.boundjid.bare, "both")
    await b.close()
    await seen(a, at_a, lambda p: str(p["from"]) == str(b.boundjid) and
               p["type"] == "unavailable")


async def test_same_resource_twice_the_newer_wins(node: Node) -> None:
    for mode in MODES:
        first = await node.login(A1, "same", mode)
        second = await node.login(A1, "same", mode)
        await asyncio.wait_for(first.gone.wait(), TIMEOUT)
        assert any("conflict" in str(e) for e in first.stream_errors)
        other = await node.login(B0)
        other.send_message(mto=f"{A1}@localhost/same", mbody=f"to the newer {mode}",
                           mtype="chat")
        assert (await second.next_message())["body"] == f"to the newer {mode}"
        await second.close()
        await other.close()


async def test_iq_to_another_users_bare_jid_is_answered_by_its_home(node: Node) -> None:
    a = await node.login(A0)
    b = await node.login(B1)
    r = await b.send_raw_iq(b.make_iq_set(), "<vCard xmlns='vcard-temp'><FN>Carol</FN></vCard>",
                            TIMEOUT)
    assert r["type"] == "result"
    iq = a.make_iq_get(ito=f"{B1}@localhost")
    r = await a.send_raw_iq(iq, "<vCard xmlns='vcard-temp'/>", TIMEOUT)
    assert r["type"] == "result"
    assert "Carol" in str(r)


async def test_resumption_after_a_cut_lands_on_the_home(node: Node) -> None:
    """XEP-0198: whichever worker accepts the new connection, the session is resumed at its
    account's home, and what was sent meanwhile arrives once."""
    relay = NetCut(node.port)
    await relay.start()
    assert relay.server is not None
    rport = relay.server.sockets[0].getsockname()[1]
    try:
        for attempt in range(4):
            phone = await node.login(A1, f"phone{attempt}", "plain", ("xep_0198",), port=rport)
            sm = phone.plugin["xep_0198"]
            for _ in range(100):
                if sm.enabled_in and sm.sm_id is not None:
                    break
                await asyncio.sleep(0.05)
            other = await node.login(B0)
            relay.last.cut()
            for i in range(3):
                other.send_message(mto=str(phone.boundjid), mbody=f"cut {attempt} {i}",
                                   mtype="chat")
            await other.plugin["xep_0199"].ping(jid="localhost", timeout=TIMEOUT)
            await resume(phone, relay)
            got = [(await phone.next_message())["body"] for _ in range(3)]
            assert got == [f"cut {attempt} {i}" for i in range(3)]
            await other.close()
            await phone.close()
    finally:
        await relay.close()


async def test_a_dead_worker_stops_the_node(node: Node) -> None:
    srv: Server = node.server  # type: ignore[attr-defined]
    assert srv.proc is not None
    children = Path(f"/proc/{srv.proc.pid}/task/{srv.proc.pid}/children").read_text().split()
    assert len(children) == 2
    os.kill(int(children[1]), signal.SIGKILL)
    assert await srv.wait() == 1


async def test_a_room_with_occupants_from_both_homes(node: Node) -> None:
    """The rooms live on one worker; occupants homed on the other get the room's fan-out,
    its history and its presence, and leave it when their session ends."""
    from tests.integration.test_muc import Witch

    room = "hall@conference.localhost"
    people = [Witch(await node.login(u, "m", mode, ("xep_0045",)))
              for u, mode in ((A0, "starttls"), (A1, "direct"), (B1, "plain"))]
    await people[0].create(room, "a0")
    for w, nick in zip(people[1:], ("a1", "b1"), strict=True):
        await w.join(room, nick)
    people[1].c.send_message(mto=room, mbody="hello hall", mtype="groupchat")
    for w in people:
        el = await w.expect(lambda el: el.tag.endswith("message") and
                            el.findtext("{jabber:client}body") == "hello hall")
        assert el.get("from") == f"{room}/a1"
    late = Witch(await node.login(B0, "m", "starttls", ("xep_0045",)))
    await late.join(room, "b0")
    await late.expect(lambda el: el.findtext("{jabber:client}body") == "hello hall")
    await people[2].c.close()  # homed on worker 1: the room learns it from there
    for w in (people[0], people[1], late):
        el = await w.expect(lambda el: el.tag.endswith("presence") and
                            el.get("from") == f"{room}/b1")
        assert el.get("type") == "unavailable"


async def befriend(a: Client, b: Client) -> None:
    """Mutual presence subscription between two logged-in clients (slixmpp approves)."""
    a.send_presence(pto=b.boundjid.bare, ptype="subscribe")
    b.send_presence(pto=a.boundjid.bare, ptype="subscribe")
    for c, other in ((a, b), (b, a)):
        for _ in range(100):
            r = await c.iq("<query xmlns='jabber:iq:roster'/>")
            item = r.xml.find(f"{{jabber:iq:roster}}query/{{jabber:iq:roster}}item"
                              f"[@jid='{other.boundjid.bare}']")
            if item is not None and item.get("subscription") == "both":
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the subscription did not complete")


async def test_pep_events_and_last_items_reach_contacts_on_the_other_home(node: Node) -> None:
    from tests.integration.pepkit import PLUGINS, TUNE, Events, tune

    async def pep_login(user: str, resource: str) -> tuple[Client, Events]:
        c = Client(f"{user}@localhost/{resource}", PW, PLUGINS)
        node.clients.append(c)
        events = Events(c)
        c.plugin["xep_0163"].add_interest(TUNE)
        await c.plugin["xep_0115"].update_caps(broadcast=False)
        assert await c.login(node.port)
        return c, events

    pub, _ = await pep_login(A0, "pub")
    fan, fan_ev = await pep_login(A1, "fan")
    await befriend(pub, fan)
    # the server learns the fan's +notify by asking its client (disco#info): retry until then
    for attempt in range(20):
        await pub.plugin["xep_0060"].publish(None, TUNE, id=f"t{attempt}",
                                             payload=tune(f"song {attempt}"))
        try:
            msg = await fan_ev.next(timeout=0.5)
            break
        except TimeoutError:
            continue
    else:
        raise AssertionError("no event reached the contact")
    assert msg.get("from") == f"{A0}@localhost"
    # a new session of the fan gets the last item on coming online, from the publisher's home
    _, phone_ev = await pep_login(A1, "phone")
    msg = await phone_ev.next()
    assert msg.find(f".//{{{EVENT_NS}}}item").get("id") == f"t{attempt}"


EVENT_NS = "http://jabber.org/protocol/pubsub#event"


async def test_explicit_subscriber_on_the_other_home_gets_the_last_item_on_coming_online(
        node: Node) -> None:
    """XEP-0060 §6.1 on_sub_and_presence: the subscriber's home tells the publisher's home
    that it came online ("pep-online"), and the publisher's home sends the last item."""
    from tests.integration.pepkit import PLUGINS, TUNE, Events, options, tune

    pub = await node.login(A0, "pub", plugins=PLUGINS)
    sub = await node.login(A1, "sub", plugins=PLUGINS)
    sub_ev = Events(sub)
    await pub.plugin["xep_0060"].publish(None, TUNE, id="first", payload=tune("one"),
                                         options=options({"pubsub#access_model": "open"}))
    await sub.plugin["xep_0060"].subscribe(f"{A0}@localhost", TUNE)
    assert (await sub_ev.next()).find(f".//{{{EVENT_NS}}}item").get("id") == "first"
    await sub.close()
    await pub.plugin["xep_0060"].publish(None, TUNE, id="while-away", payload=tune("two"))
    again = Client(f"{A1}@localhost/again", PW, PLUGINS)
    node.clients.append(again)
    again_ev = Events(again)
    assert await again.login(node.port)
    msg = await again_ev.next()
    assert msg.get("from") == f"{A0}@localhost"
    assert msg.find(f".//{{{EVENT_NS}}}item").get("id") == "while-away"


async def test_archive_queries_see_messages_archived_by_the_other_home(node: Node) -> None:
    from tests.integration.test_mam import bodies
    from tests.integration.test_mam import query as mam_query

    a = await node.login(A0)
    b = await node.login(A1)
    for i in range(5):
        a.send_message(mto=f"{A1}@localhost", mbody=f"kept {i}", mtype="chat")
        b.send_message(mto=f"{A0}@localhost", mbody=f"reply {i}", mtype="chat")
    for c in (a, b):
        for _ in range(5):
            await c.next_message()
    for c in (a, b):
        _, results = await mam_query(c, rsm="<max>100</max>")
        got = bodies(results)
        assert sorted(got) == sorted([f"kept {i}" for i in range(5)] +
                                     [f"reply {i}" for i in range(5)]), got
        ids = [r.get("id") for r in results]
        assert len(set(ids)) == 10 and ids == sorted(ids, key=int)


async def test_push_for_a_missed_room_message_comes_from_the_members_home(node: Node) -> None:
    """XEP-0357 with rooms: the room (on the service's worker) finds a member with no client
    in it; the member's registration lives on its home, which notifies the app server."""
    from tests.integration.test_muc import Witch
    from tests.integration.test_push import AppServer, enable_xml, iq_set

    muc_home = home_of("service:conference.localhost", 2)
    member = A1 if muc_home == 0 else A0  # homed on the other worker
    owner = B0 if member == A1 else B1
    app = AppServer(await node.login(owner, "app"))
    room = "den@conference.localhost"
    boss = Witch(await node.login(owner, "boss", plugins=("xep_0045",)))
    await boss.create(room, "boss", persistentroom="1", membersonly="1")
    await boss.muc.set_affiliation(room, "member", jid=f"{member}@localhost")
    m = await node.login(member, "phone")
    res = await iq_set(m, enable_xml(jid=f"{owner}@localhost/app"))
    assert res["type"] == "result", res
    await m.close()
    boss.c.send_message(mto=room, mbody="are you there?", mtype="groupchat")
    n = await app.next()
    assert n.node == "n1" and n.summary is not None
    assert n.summary.get("last-message-sender") == f"{room}/boss"


async def test_the_senders_worker_archives_and_blocks_the_recipients_home_copies(node: Node
                                                                                  ) -> None:
    """A message to a user homed on the other worker: the blocklist check and the archive run
    on the sender's worker (every worker holds every blocklist and archive preference), the
    carbons on the recipient's home (they need its sessions). One archived copy, one
    stanza-id, the carbon delivered; a blocked sender gets an error and nothing is archived."""
    from tests.integration.test_mam import bodies
    from tests.integration.test_mam import query as mam_query

    carbons, sid = "urn:xmpp:carbons:2", "urn:xmpp:sid:0"
    a = await node.login(A0)
    b1 = await node.login(A1, "one")
    b2 = await node.login(A1, "two")
    copies: asyncio.Queue[Any] = asyncio.Queue()
    b2.register_handler(Callback("carbons", MatchXPath(f"{{jabber:client}}message/{{{carbons}}}"
                                                       "received"), copies.put_nowait))
    for c in (b1, b2):
        res = await c.iq(f"<enable xmlns='{carbons}' type='set'/>")
        assert res["type"] == "result"
    a.send_message(mto=f"{A1}@localhost/one", mbody="to one", mtype="chat")
    m = await b1.next_message()
    assert m["body"] == "to one"
    ids = m.xml.findall(f"{{{sid}}}stanza-id")
    assert [i.get("by") for i in ids] == [f"{A1}@localhost"]
    copy = await asyncio.wait_for(copies.get(), TIMEOUT)
    inner = copy.xml.find(f"{{{carbons}}}received/{{urn:xmpp:forward:0}}forwarded/"
                          "{jabber:client}message")
    assert inner is not None and inner.findtext("{jabber:client}body") == "to one"
    assert [i.get("id") for i in inner.findall(f"{{{sid}}}stanza-id")] == [ids[0].get("id")]

    res = await b1.iq(f"<block xmlns='urn:xmpp:blocking' type='set'><item jid='{A0}@localhost'/>"
                      "</block>")
    assert res["type"] == "result"
    a.send_message(mto=f"{A1}@localhost", mbody="blocked", mtype="chat")
    err = await a.next_message()
    assert err["type"] == "error" and err["error"]["condition"] == "service-unavailable"
    for c in (a, b1):
        _, results = await mam_query(c, rsm="<max>100</max>")
        assert bodies(results) == ["to one"]


async def test_metrics_of_the_whole_node_from_whichever_worker_answers(node: Node) -> None:
    """/metrics, whichever worker the kernel hands the request to, shows every worker's
    numbers and their sums: the answering worker asks the other one for its numbers."""
    a = await node.login(A0, "m")
    b = await node.login(A1, "m")
    a.send_message(mto=f"{A1}@localhost/m", mbody="count me", mtype="chat")
    assert (await b.next_message())["body"] == "count me"
    seen_workers = set()
    for _ in range(12):
        status, _, body = await scrape(node.http_port)
        assert status == 200, body
        vals = parse(body)
        assert v(vals, "hongyan_sessions", transport="tls") == 2
        assert v(vals, "hongyan_worker_sessions", transport="tls", worker="0") == 1  # A0's home
        assert v(vals, "hongyan_worker_sessions", transport="tls", worker="1") == 1
        assert v(vals, "hongyan_connections", transport="tls") == 2
        assert v(vals, "hongyan_logins_total") >= 2
        assert v(vals, "hongyan_messages_routed_total") >= 1
        assert v(vals, "hongyan_logins_total") == sum(
            v(vals, "hongyan_worker_logins_total", worker=w) for w in ("0", "1"))
        async with aiohttp.ClientSession() as http, http.get(
                f"http://127.0.0.1:{node.http_port}/health") as r:
            seen_workers.add((await r.json())["worker"])
    assert seen_workers <= {0, 1}


async def test_upload_and_download_whichever_worker_gets_them(node: Node) -> None:
    """The slot request goes to the upload service's home; each PUT and GET goes to whichever
    worker the kernel hands the connection to (a new connection each), which checks the
    signed slot itself: the bytes come back, a slot is used once, for accounts of both
    homes."""
    for user in (A0, A1):
        c = await node.login(user, "up", plugins=("xep_0363",))
        for i in range(4):
            data = os.urandom(50_000 + i)
            url = await c.plugin["xep_0363"].upload_file(
                f"f{i}.bin", size=len(data), content_type="application/octet-stream",
                input_file=io.BytesIO(data), timeout=10)
            for _ in range(3):
                async with aiohttp.ClientSession() as http, http.get(url) as r:
                    assert r.status == 200 and await r.read() == data
        await c.close()
    c = await node.login(A1, "raw")
    iq = await c.send_raw_iq(c.make_iq_get(ito="upload.localhost"),
                             "<request xmlns='urn:xmpp:http:upload:0' filename='once.txt' "
                             "size='4' content-type='text/plain'/>", TIMEOUT)
    put_url = iq.xml.find("{urn:xmpp:http:upload:0}slot/{urn:xmpp:http:upload:0}put"
                          ).attrib["url"]
    statuses = []
    for body in (b"once", b"twice", b"4444", b"4444"):
        async with aiohttp.ClientSession() as http, http.put(
                put_url, data=body, headers={"Content-Type": "text/plain"}) as r:
            statuses.append(r.status)
    assert statuses == [201, 413, 409, 409]
    scraped = parse((await scrape(node.http_port))[2])
    assert v(scraped, "hongyan_uploads_total") == 9
    assert v(scraped, "hongyan_upload_bytes_total") == 8 * 50_000 + 2 * 6 + 4
