"""The bundled web client in a real browser: Converse.js, served by the real server at ``/``,
in headless Debian Chromium driven by playwright-core (``tests/integration/browser.py``).

Two people log in through the page — alice on the HTTPS page over WebSocket (wss), bob on the
plain HTTP page over the transport of the test's parameter (WebSocket, or BOSH once the server
answers ``/http-bind``) — and each chats both ways with sam, a slixmpp user on TCP; all three
meet in a room and talk there; Converse bookmarks the room (XEP-0402, published with
``pubsub#max_items=max``) and the bookmark is on the server; each sends sam a picture through
the upload service (XEP-0363), which sam downloads and finds byte-equal. Nothing the pages load
comes from anywhere but this server, and no request breaks the page's CSP. Run on one process
and on two workers (``hongyan serve`` with ``server.workers = 2``, alice and bob homed apart).
Screenshots, console logs and request lists are kept in the test's artifacts folder
(``$HONGYAN_TEST_ARTIFACTS``, default ``tmp/artifacts``).

The browsers accept the self-signed certificate the node makes (what a person does once for
``https://localhost:5281``; with a real certificate nothing is needed).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import struct
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from slixmpp import JID

from hongyan.cluster.workers import home_of
from tests.integration.browser import Browsers, artifacts_dir
from tests.integration.clients import TIMEOUT, Client, insecure_context
from tests.integration.conftest import Harness
from tests.integration.test_process import Server, free_port, hongyan

ROOM = "lobby@conference.localhost"
PASSWORD = "correct horse battery"
BOOKMARKS = "urn:xmpp:bookmarks:1"


def png(width: int = 48, height: int = 32) -> bytes:
    """A small real PNG (a colour gradient), made here."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    rows = b"".join(b"\x00" + b"".join(bytes((x * 5 % 256, y * 8 % 256, 160))
                                       for x in range(width)) for y in range(height))
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


async def bosh_served(harness: Harness) -> bool:
    """Whether the server answers at ``/http-bind`` (XEP-0206), i.e. BOSH is there."""
    assert harness.node is not None
    url = f"http://127.0.0.1:{harness.node.http_port}/http-bind"
    async with aiohttp.ClientSession() as http, http.post(
            url, data=b"", headers={"Content-Type": "text/xml; charset=utf-8"}) as r:
        return r.status != 404


class Page:
    """One person's browser showing the web client."""

    def __init__(self, browsers: Browsers, name: str, out: Path) -> None:
        self.b = browsers
        self.name = name
        self.out = out
        self.shots = 0

    async def call(self, cmd: str, **kw: Any) -> Any:
        return await self.b.call(cmd, name=self.name, **kw)

    async def shot(self, what: str) -> None:
        self.shots += 1
        name = f"{self.name}-{self.shots:02d}-{what}.png"
        await self.call("screenshot", path=str(self.out / name))

    async def login(self, base: str, transport: str) -> dict[str, Any]:
        opened = await self.call("open", url=f"{base}/?transport={transport}",
                                 ignoreHTTPSErrors=True)
        await self.call("fill", selector="input[name=jid]", value=self.name)
        await self.call("fill", selector="input[name=password]", value=PASSWORD)
        await self.shot("login")
        await self.call("click", selector="converse-login-form button[type=submit]")
        await self.call("wait", selector="converse-user-profile", text=f"{self.name}@localhost")
        await self.call("wait", selector="converse-user-profile", text="online")
        await self.shot("logged-in")
        got: dict[str, Any] = opened
        return got

    async def go(self, fragment: str) -> None:
        """Follow a ``#converse/...`` link (as a click on an ``xmpp:`` link would)."""
        await self.call("eval", expression=f"window.location.hash = {json.dumps(fragment)}")

    def box(self, jid: str) -> str:
        return f":is(converse-chat, converse-muc)[jid='{jid}']"

    async def sees(self, jid: str, text: str, timeout: int = 20000) -> None:
        await self.call("wait", selector=f"{self.box(jid)} .chat-msg__text", text=text,
                        timeout=timeout)

    async def say(self, jid: str, text: str) -> None:
        area = f"{self.box(jid)} textarea.chat-textarea"
        await self.call("fill", selector=area, value=text)
        await self.call("press", selector=area, key="Enter")


async def message(c: Client, pred: Callable[[Any], bool], timeout: float = 20) -> Any:
    """The next message ``c`` gets for which ``pred`` holds (others are dropped)."""
    async def loop() -> Any:
        while True:
            m = await c.next_message(timeout)
            if pred(m):
                return m
    return await asyncio.wait_for(loop(), timeout)


async def bookmarks(c: Client, timeout: float = 20) -> dict[str, Any]:
    """Room JID -> <conference/> of ``c``'s bookmarks node, once it has any (Converse
    publishes a room's bookmark after the join)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        iq = c.make_iq_get(ito=c.boundjid.bare)
        got = await c.send_raw_iq(iq, f"<pubsub xmlns='http://jabber.org/protocol/pubsub'>"
                                      f"<items node='{BOOKMARKS}'/></pubsub>", TIMEOUT)
        found = {it.get("id"): it.find(f"{{{BOOKMARKS}}}conference")
                 for it in got.xml.iter("{http://jabber.org/protocol/pubsub}item")}
        if found or loop.time() > end:
            return found
        await asyncio.sleep(0.2)


@dataclasses.dataclass
class Target:
    """The server under test as the scenario sees it: its HTTP ports, how to make an account
    and how to log a slixmpp client in."""

    http_port: int
    https_port: int
    user: Callable[[str], Awaitable[object]]
    client: Callable[[str, tuple[str, ...]], Awaitable[Client]]


def in_process(harness: Harness) -> Target:
    """The harness's node (one process)."""
    node = harness.node
    assert node is not None
    return Target(node.http_port, node.https_port,
                  lambda name: harness.user(name, PASSWORD),
                  lambda jid, plugins: harness.client(jid, PASSWORD, plugins=plugins))


@contextlib.asynccontextmanager
async def two_workers(tmp_path: Path, storage_url: str) -> AsyncIterator[Target]:
    """``hongyan serve`` with ``server.workers = 2``, as a user starts it (alice's and bob's
    accounts have different homes)."""
    assert (home_of("alice", 2), home_of("bob", 2)) == (1, 0)
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "hongyan.toml"
    c2s, http, https = free_port(), free_port(), free_port()
    path.write_text(f"""
[server]
data_dir = "{tmp_path / 'data'}"
workers = 2
log_level = "warning"
[c2s]
bind = ["127.0.0.1"]
port = {c2s}
direct_tls_port = {free_port()}
[http]
bind = ["127.0.0.1"]
port = {http}
tls_port = {https}
[storage]
url = "{storage_url}"
[auth]
failure_delay = 0.05
""")
    clients: list[Client] = []

    async def user(name: str) -> None:
        r = await asyncio.to_thread(hongyan, "adduser", f"{name}@localhost",
                                    stdin=PASSWORD + "\n", config=path)
        assert r.returncode == 0, r.stderr

    async def client(jid: str, plugins: tuple[str, ...]) -> Client:
        c = Client(jid, PASSWORD, plugins)
        clients.append(c)
        assert await c.login(c2s), f"{jid} could not log in"
        return c

    srv = Server(path)
    await srv.start()
    try:
        yield Target(http, https, user, client)
    finally:
        for c in clients:
            await c.close()
        if srv.proc is not None and srv.proc.returncode is None:
            srv.proc.terminate()
            await srv.wait()


@pytest.mark.parametrize(("bob_transport", "workers"), [
    ("websocket", 1), ("bosh", 1), ("websocket", 2), ("bosh", 2)])
async def test_two_people_chat_meet_in_a_room_and_share_pictures(
        harness: Harness, browsers: Browsers, tmp_path: Path, storage_url: str,
        bob_transport: str, workers: int) -> None:
    if bob_transport == "bosh" and not await bosh_served(harness):
        pytest.skip("BOSH (/http-bind) is not served by this server yet")
    out = artifacts_dir(tmp_path, f"webclient-{bob_transport}-{workers}")
    alice, bob = Page(browsers, "alice", out), Page(browsers, "bob", out)
    try:
        if workers == 1:
            await scenario(in_process(harness), alice, bob, bob_transport, out)
        else:
            await harness.stop_node()
            async with two_workers(tmp_path / "workers", storage_url) as target:
                await scenario(target, alice, bob, bob_transport, out)
    finally:
        for p in (alice, bob):
            try:
                (out / f"{p.name}-console.log").write_text(
                    "\n".join(await p.call("log")) + "\n")
                await p.shot("last")
            except Exception as exc:  # (the browser may be gone: keep the rest)
                (out / f"{p.name}-console.log").write_text(f"no log: {exc}\n")


async def scenario(server: Target, alice: Page, bob: Page, bob_transport: str, out: Path
                   ) -> None:
    for name in ("alice", "bob", "sam"):
        await server.user(name)
    sam = await server.client("sam@localhost/tcp", ("xep_0045",))
    # alice on the HTTPS page (wss), bob on the plain HTTP one (ws or BOSH)
    https = f"https://localhost:{server.https_port}"
    http = f"http://localhost:{server.http_port}"
    opened = await alice.login(https, "websocket")
    assert opened["status"] == 200
    assert "default-src 'none'" in opened["headers"]["content-security-policy"]
    await bob.login(http, bob_transport)

    # -- one to one, both ways, with a TCP user ----------------------------------------------
    for page in (alice, bob):
        who = f"{page.name}@localhost"
        sam.send_message(mto=who, mbody=f"hello {page.name}, sam here", mtype="chat")
        # it shows up in the contacts list, marked unread; a click opens the chat
        await page.call("click", selector="converse-roster a.open-chat", text="sam@localhost")
        await page.sees("sam@localhost", f"hello {page.name}, sam here")
        await page.say("sam@localhost", f"hi sam, {page.name} in a browser")
        got = await message(sam, lambda m, page=page: m["type"] == "chat"
                            and m["body"] == f"hi sam, {page.name} in a browser")
        assert JID(got["from"]).bare == who
        await page.shot("chat")

    # -- a room ----------------------------------------------------------------------------------
    muc = sam.plugin["xep_0045"]
    await muc.join_muc_wait(JID(ROOM), "sam", timeout=TIMEOUT)
    form = await muc.get_room_config(ROOM)
    await muc.set_room_config(ROOM, form)  # the default configuration: the room opens
    for page in (alice, bob):
        await page.go(f"converse/room?jid={ROOM}")
        await page.call("wait", selector=f"{page.box(ROOM)} textarea.chat-textarea")
        await page.call("wait", selector=f"{page.box(ROOM)} converse-muc-occupants",
                        text=page.name)
    await alice.say(ROOM, "hello room, alice here")
    got = await message(sam, lambda m: m["type"] == "groupchat"
                        and m["body"] == "hello room, alice here")
    assert got["from"] == f"{ROOM}/alice"
    await bob.sees(ROOM, "hello room, alice here")
    sam.send_message(mto=ROOM, mbody="welcome, both of you", mtype="groupchat")
    for page in (alice, bob):
        await page.sees(ROOM, "welcome, both of you")
        await page.shot("room")
    await bob.say(ROOM, "bob says hi to the room")
    await alice.sees(ROOM, "bob says hi to the room")
    await message(sam, lambda m: m["type"] == "groupchat"
                  and m["body"] == "bob says hi to the room")

    # -- the room is in alice's bookmarks (XEP-0402, PEP), as Converse published them ---------
    mine = await server.client("alice@localhost/tcp", ("xep_0060",))
    items = await bookmarks(mine)
    assert ROOM in items, items
    conference = items[ROOM]
    assert conference.get("autojoin") in ("true", "1")
    assert conference.findtext(f"{{{BOOKMARKS}}}nick") == "alice"
    await mine.close()

    # -- pictures, through the upload service: alice's from the HTTPS page (same origin as the
    # upload URLs), bob's from the HTTP page (another origin: CORS and the page's CSP) ---------
    for n, page in enumerate((alice, bob)):
        picture = png(40 + 8 * n, 30)
        path = out / f"{page.name}-picture.png"
        path.write_bytes(picture)
        chat = page.box("sam@localhost")
        await page.call("click", selector="converse-roster a.open-chat", text="sam@localhost")
        await page.call("wait", selector=f"{chat} textarea.chat-textarea")
        await page.call("files", selector=f"{chat} input.fileupload", path=str(path))
        got = await message(sam, lambda m: m["type"] == "chat" and "/upload/" in m["body"], 30)
        assert JID(got["from"]).bare == f"{page.name}@localhost"
        url = got["body"].strip()
        assert url.startswith(f"https://localhost:{server.https_port}/upload/"), url
        oob = got.xml.find("{jabber:x:oob}x/{jabber:x:oob}url")
        assert oob is not None and oob.text == url
        async with aiohttp.ClientSession() as client, client.get(
                url, ssl=insecure_context()) as r:
            assert r.status == 200 and r.headers["Content-Type"] == "image/png"
            assert await r.read() == picture
        # and the sender's page shows it, loaded from the upload service
        await page.call("wait", selector=f"{chat} img.chat-image")
        await page.shot("picture")

    # -- nothing came from anywhere else -----------------------------------------------------
    own = (f"{http}/", f"ws://localhost:{server.http_port}/", f"{https}/",
           f"wss://localhost:{server.https_port}/", "data:", "blob:")
    for page in (alice, bob):
        requests = await page.call("requests")
        assert requests, page.name
        (out / f"{page.name}-requests.txt").write_text("\n".join(requests) + "\n")
        foreign = [u for u in requests if not u.startswith(own)]
        assert not foreign, (page.name, foreign)
        log = await page.call("log")
        assert not [line for line in log if "Content Security Policy" in line], log
        assert not [line for line in log if "Error while trying to update bookmarks" in line]


async def test_a_new_person_registers_on_the_page_and_is_logged_in(
        harness: Harness, browsers: Browsers, tmp_path: Path) -> None:
    """In-band registration (XEP-0077, open on localhost) from Converse's "Create an account"
    form over the WebSocket of the plain HTTP page; the new account then logs in."""
    node = harness.node
    assert node is not None
    out = artifacts_dir(tmp_path, "webclient-register")
    carol = Page(browsers, "carol", out)
    try:
        await carol.call("open", url=f"http://localhost:{node.http_port}/")
        await carol.call("click", selector="a", text="Create an account")
        # the form is the one the server sent (the fields of its registration query)
        await carol.call("fill", selector="converse-registration-form input[name=username]",
                         value="carol")
        await carol.call("fill", selector="converse-registration-form input[name=password]",
                         value=PASSWORD)
        await carol.shot("register")
        await carol.call("click", selector="converse-registration-form [type=submit]")
        await carol.call("wait", selector="converse-user-profile", text="carol@localhost")
        await carol.shot("registered")
        assert await node.accounts.exists("carol")
        c = await harness.client("carol@localhost/tcp", PASSWORD)
        assert c.boundjid.bare == "carol@localhost"
    finally:
        (out / "carol-console.log").write_text("\n".join(await carol.call("log")) + "\n")
