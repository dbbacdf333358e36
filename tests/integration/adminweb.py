"""Helpers of the admin page's tests: a node with an administrator, a hostile user online
(its presence status, XEP-0172 nick, vCard FN and resource all markup), and logging in with
aiohttp the way a browser's form does."""

from __future__ import annotations

import asyncio
import re

import aiohttp
from slixmpp.xmlstream import ET

from tests.integration.clients import Client
from tests.integration.conftest import Harness

ADMIN = "admin@localhost"
ADMIN_PW = "admin-pw-123"
#: what a user may put in their status, nick, vCard name and resource
HOSTILE = "<script>alert('x')</script>\"'><img src=x onerror=alert(1)>&amp;"
HOSTILE_RESOURCE = "<b>phone</b>"


async def start(harness: Harness, extra: str = "") -> None:
    await harness.stop_node()
    await harness.start(extra=extra, server_extra=f'admins = ["{ADMIN}"]')
    await harness.user("admin", ADMIN_PW)


async def hostile_user(harness: Harness, name: str = "mallory") -> Client:
    """``name`` online with markup in everything it can set."""
    jid = await harness.user(name)
    c = await harness.client(f"{jid}/{HOSTILE_RESOURCE}", presence=False)
    iq = c.Iq()
    iq["type"] = "set"
    card = ET.fromstring("<vCard xmlns='vcard-temp'><FN/></vCard>")
    card[0].text = HOSTILE
    iq.xml.append(card)
    await iq.send(timeout=10)
    p = c.make_presence(pstatus=HOSTILE, pshow="away")
    nick = ET.fromstring("<nick xmlns='http://jabber.org/protocol/nick'/>")
    nick.text = HOSTILE
    p.xml.append(nick)
    p.send()
    return c


def base(harness: Harness, https: bool = False) -> str:
    assert harness.node is not None
    if https:
        return f"https://127.0.0.1:{harness.node.https_port}"
    return f"http://127.0.0.1:{harness.node.http_port}"


def session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


def csrf_of(page: str) -> str:
    m = re.search(r"name='csrf' value='([^']+)'", page)
    assert m is not None, page
    return m.group(1)


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with http.get(url, ssl=False) as r:
        return r.status, await r.text()


async def post(http: aiohttp.ClientSession, url: str, fields: dict[str, str],
               origin: str | None) -> tuple[int, str]:
    headers = {"Origin": origin} if origin is not None else {}
    async with http.post(url, data=fields, headers=headers, ssl=False) as r:
        return r.status, await r.text()


async def login(http: aiohttp.ClientSession, root: str, jid: str = ADMIN,
                password: str = ADMIN_PW) -> tuple[int, str]:
    """Open the login form and send it (the redirect followed): the status and page."""
    _status, form = await get(http, root + "/admin/")
    return await post(http, root + "/admin/login", {"csrf": csrf_of(form), "jid": jid,
                                                    "password": password}, root)


async def until_listed(http: aiohttp.ClientSession, root: str, text: str) -> str:
    """The dashboard once it shows ``text`` (presence is routed asynchronously)."""
    page = ""
    for _ in range(100):
        _status, page = await get(http, root + "/admin/")
        if text in page:
            return page
        await asyncio.sleep(0.05)
    raise AssertionError(f"{text!r} not in {page}")
