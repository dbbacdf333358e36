"""XEP-0363 HTTP File Upload over real sockets: slixmpp's xep_0363 plugin uploads, aiohttp's
client downloads, and the bad input of issue 18 at the byte level (a PUT that does not match
its slot, a slot used twice or expired, names and paths that try to leave the upload folder,
active content, quotas), account deletion and expiry (the node's clock stepped)."""

from __future__ import annotations

import asyncio
import io
import os
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import aiohttp
import pytest
from yarl import URL

from hongyan.xmpp.element import Element
from hongyan.xmpp.jid import JID
from tests.integration.clients import TIMEOUT, Client
from tests.integration.conftest import Harness
from tests.integration.waiting import until

UP = "urn:xmpp:http:upload:0"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
HOST = "upload.localhost"


async def start(harness: Harness, extra: str = "") -> None:
    """A node whose HTTP listener is plain HTTP (so that slixmpp, which checks certificates,
    can PUT), with ``[upload]`` settings ``extra``."""
    await harness.stop_node()
    await harness.start(extra=f"[upload]\n{extra}\n", http_extra="tls = false")


def files(harness: Harness) -> list[Path]:
    root = harness.tmp_path / "data" / "upload"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


async def slot(c: Client, filename: str, size: int | str, content_type: str | None = None
               ) -> tuple[str, str]:
    """(PUT URL, GET URL) of a slot, or AssertionError with the error's XML."""
    ctype = "" if content_type is None else f" content-type='{content_type}'"
    iq = await ask(c, f"<request xmlns='{UP}' filename='{filename}' size='{size}'{ctype}/>")
    got = iq.xml.find(f"{{{UP}}}slot")
    assert got is not None, str(iq)
    put, get = got.find(f"{{{UP}}}put"), got.find(f"{{{UP}}}get")
    assert put is not None and get is not None
    return put.attrib["url"], get.attrib["url"]


async def ask(c: Client, payload: str) -> Any:
    """An IQ get to the upload service; its answer, result or error."""
    return await c.send_raw_iq(c.make_iq_get(ito=HOST), payload, TIMEOUT)


async def slot_error(c: Client, attrs: str) -> ET.Element:
    iq = await ask(c, f"<request xmlns='{UP}' {attrs}/>")
    assert iq["type"] == "error", str(iq)
    err = iq.xml.find("{jabber:client}error")
    assert err is not None
    return err


async def put(url: str | URL, data: bytes, content_type: str = "application/octet-stream",
              headers: dict[str, str] | None = None) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.put(
            url, data=data, headers={"Content-Type": content_type, **(headers or {})}) as r:
        return r.status, await r.text()


async def get(url: str | URL, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as http, http.request(method, url) as r:
        return r.status, dict(r.headers), await r.read()


async def user(harness: Harness, name: str) -> Client:
    return await harness.logged_in(name)


async def test_slixmpp_uploads_and_the_bytes_come_back(harness: Harness) -> None:
    await start(harness)
    c = await harness.logged_in("alice", plugins=("xep_0363",))
    data = os.urandom(300_000)
    url = await c.plugin["xep_0363"].upload_file(
        "holiday photo é.png", size=len(data), content_type="image/png",
        input_file=io.BytesIO(data), timeout=10)
    assert c.plugin["xep_0363"].max_file_size == 100 * 1024 * 1024  # from the disco form
    assert "holiday%20photo%20%C3%A9.png" in url
    status, headers, body = await get(url)
    assert status == 200 and body == data
    assert headers["Content-Type"] == "image/png"
    assert headers["Content-Length"] == str(len(data))
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in headers["Content-Security-Policy"]
    assert headers["Content-Disposition"].startswith("inline;")
    status, headers, body = await get(url, "HEAD")
    assert status == 200 and body == b"" and headers["Content-Length"] == str(len(data))
    # stored under an unguessable name, not the client's
    [stored] = files(harness)
    assert "holiday" not in str(stored) and stored.read_bytes() == data


async def test_disco_of_the_server_and_the_service(harness: Harness) -> None:
    await start(harness, "max_file_size = 5242880")
    c = await harness.logged_in("alice")
    items = await c.plugin["xep_0030"].get_items(jid="localhost")
    assert HOST in [i[0] for i in items["disco_items"]["items"]]
    info = await c.plugin["xep_0030"].get_info(jid=HOST)
    q = info["disco_info"]
    assert ("store", "file", None, "HTTP File Upload") in q["identities"]
    assert UP in q["features"]
    form = info.xml.find("{http://jabber.org/protocol/disco#info}query/{jabber:x:data}x")
    assert form is not None
    fields = {f.attrib["var"]: f.findtext("{jabber:x:data}value") for f in form}
    assert fields == {"FORM_TYPE": UP, "max-file-size": "5242880"}


async def test_a_put_must_match_its_slot(harness: Harness) -> None:
    await start(harness)
    c = await user(harness, "alice")
    put_url, get_url = await slot(c, "a.bin", 1000, "application/octet-stream")
    # larger than the slot, smaller, another content type, no token, a forged token
    assert (await put(put_url, b"x" * 1001))[0] == 413
    assert (await put(put_url, b"x" * 999))[0] == 400
    assert (await put(put_url, b"x" * 1000, "text/html"))[0] == 415
    assert (await put(put_url.split("?")[0], b"x" * 1000))[0] == 403
    token = put_url.split("?v=")[1]
    forged = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    assert (await put(put_url.split("?")[0] + "?v=" + forged, b"x" * 1000))[0] == 403
    # the token of this slot on another slot's path, or another file name
    other_put, _ = await slot(c, "b.bin", 1000, "application/octet-stream")
    assert (await put(other_put.split("?")[0] + "?v=" + token, b"x" * 1000))[0] == 403
    assert (await put(put_url.replace("a.bin", "c.bin"), b"x" * 1000))[0] == 403
    assert files(harness) == []
    assert (await get(get_url))[0] == 404
    # then the real thing, once
    assert (await put(put_url, b"y" * 1000))[0] == 201
    assert (await put(put_url, b"z" * 1000))[0] == 409
    status, _, body = await get(get_url)
    assert status == 200 and body == b"y" * 1000


async def test_chunked_and_100_continue(harness: Harness) -> None:
    """A PUT without Content-Length is refused (411) before its body is read; one asking
    ``Expect: 100-continue`` gets the go-ahead only once its headers passed."""
    await start(harness)
    c = await user(harness, "alice")
    put_url, _ = await slot(c, "a.txt", 5, "text/plain")

    async def chunks() -> Any:
        yield b"hello"
    async with aiohttp.ClientSession() as http, http.put(
            put_url, data=chunks(), headers={"Content-Type": "text/plain"}) as r:
        assert r.status == 411
    assert harness.node is not None
    u = URL(put_url)
    reader, writer = await asyncio.open_connection("127.0.0.1", harness.node.http_port)
    writer.write(f"PUT {u.raw_path_qs} HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain"
                 "\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n".encode())
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 100")
    writer.write(b"hello")
    assert (await reader.readline()).startswith(b"HTTP/1.1 201")
    writer.close()


async def test_an_expired_slot(harness: Harness) -> None:
    await start(harness, "slot_timeout = 60")
    c = await user(harness, "alice")
    put_url, get_url = await slot(c, "late.txt", 4, "text/plain")
    await harness.clock.advance(61)
    status, text = await put(put_url, b"late", "text/plain")
    assert status == 403 and "expired" in text
    assert (await get(get_url))[0] == 404 and files(harness) == []


async def test_paths_that_try_to_leave_the_upload_folder(harness: Harness) -> None:
    await start(harness)
    c = await user(harness, "alice")
    put_url, get_url = await slot(c, "ok.txt", 2, "text/plain")
    assert (await put(put_url, b"ok", "text/plain"))[0] == 201
    assert harness.node is not None
    base = f"http://127.0.0.1:{harness.node.http_port}"
    slot_id = URL(get_url).parts[2]
    (harness.tmp_path / "data" / "secret.txt").write_text("secret")
    for path in ("/upload/../hongyan.toml", "/upload/%2e%2e/%2e%2e/hongyan.toml",
                 f"/upload/{slot_id}/..%2f..%2fsecret.txt", f"/upload/{slot_id}/..",
                 f"/upload/{slot_id}/%2e%2e", f"/upload/{slot_id}", "/upload/",
                 f"/upload/{slot_id}/ok.txt/..", f"/upload/{slot_id}/other.txt",
                 f"/upload/{slot_id[:-1]}%2f/ok.txt", "/upload/..%2f..%2fsecret.txt/x",
                 f"/upload/{slot_id}/ok.txt%00", f"/upload/{slot_id}%00/ok.txt"):
        status, _, body = await get(URL(base + path, encoded=True))
        assert status in (400, 404), (path, status)
        assert b"secret" not in body and b"[server]" not in body, path
        # the same bytes on the wire, not as aiohttp's client normalizes them
        reader, writer = await asyncio.open_connection("127.0.0.1", harness.node.http_port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        raw = await reader.read()
        writer.close()
        assert raw.split(b" ")[1] in (b"400", b"404"), (path, raw[:60])
        assert b"secret" not in raw and b"[server]" not in raw, path
    # a slot request can not name a path either
    for bad in ("../x.txt", "a/b.txt", "..", ".", "", "a\\b.txt", "x\u202e.txt",
                "a" * 256):
        err = await slot_error(c, f"filename='{bad}' size='10'")
        assert err.find(f"{{{STANZAS}}}not-acceptable") is not None, bad


async def test_html_svg_and_xml_are_attachments(harness: Harness) -> None:
    await start(harness)
    c = await user(harness, "alice")
    for name, ctype, data in (
            ("page.html", "text/html", b"<script>alert(document.cookie)</script>"),
            ("pic.svg", "image/svg+xml", b"<svg xmlns='http://www.w3.org/2000/svg' "
                                         b"onload='alert(1)'/>"),
            ("x.xml", "application/xml", b"<x/>"),
            ("s.js", "text/javascript", b"alert(1)")):
        put_url, get_url = await slot(c, name, len(data), ctype)
        assert (await put(put_url, data, ctype))[0] == 201
        status, headers, body = await get(get_url)
        assert status == 200 and body == data
        assert headers["Content-Type"].startswith(ctype)
        assert headers["Content-Disposition"] == f"attachment; filename*=UTF-8''{name}"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Content-Security-Policy"].startswith("default-src 'none'")
        assert "sandbox" in headers["Content-Security-Policy"]


async def test_slot_requests_the_service_refuses(harness: Harness) -> None:
    await start(harness, "max_file_size = 1000")
    c = await user(harness, "alice")
    err = await slot_error(c, "filename='big.bin' size='1001'")
    assert err.attrib["type"] == "modify"
    assert err.find(f"{{{STANZAS}}}not-acceptable") is not None
    assert err.findtext(f"{{{UP}}}file-too-large/{{{UP}}}max-file-size") == "1000"
    for attrs in ("filename='x' size='abc'", "filename='x' size='-1'", "filename='x' size='0'",
                  "filename='x' size='1e3'", "filename='x' size='10' content-type='a b'",
                  "filename='x' size='10' content-type='text/html\r\nX: y'"):
        err = await slot_error(c, attrs)
        assert err.find(f"{{{STANZAS}}}not-acceptable") is not None, attrs
    err = await slot_error(c, "filename='x'")
    assert err.find(f"{{{STANZAS}}}bad-request") is not None
    # users of other domains (no federation yet: asked of the module directly)
    assert harness.node is not None
    module = harness.node.modules["upload"]
    req = Element("request", UP, {"filename": "x", "size": "10"})
    with pytest.raises(Exception) as exc:
        await module._request("get", req, JID("eve", "elsewhere.example", "r"))  # type: ignore[attr-defined]
    assert getattr(exc.value, "condition", None) == "forbidden"


async def test_quotas(harness: Harness) -> None:
    await start(harness, "quota_per_user = 1000\nquota_total = 1500\nslot_timeout = 60")
    a = await user(harness, "alice")
    b = await user(harness, "bob")
    put_url, _ = await slot(a, "one.bin", 600)
    assert (await put(put_url, b"1" * 600))[0] == 201
    # 600 stored: 500 more is over the user's 1000
    err = await slot_error(a, "filename='two.bin' size='500'")
    assert err.attrib["type"] == "wait"
    assert err.find(f"{{{STANZAS}}}resource-constraint") is not None
    assert err.find(f"{{{UP}}}retry").attrib["stamp"].endswith("Z")  # type: ignore[union-attr]
    await slot(a, "small.bin", 400)  # what is left; open slots count too
    err = await slot_error(a, "filename='one-more.bin' size='1'")
    assert err.find(f"{{{STANZAS}}}resource-constraint") is not None
    # bob: his own quota, but the total (1500: 600 + 400 held) leaves him 500
    err = await slot_error(b, "filename='b.bin' size='600'")
    assert err.find(f"{{{STANZAS}}}resource-constraint") is not None
    await slot(b, "b.bin", 500)
    # alice's unused slot expires, and what it held is free again
    await harness.clock.advance(61)
    await slot(a, "again.bin", 400)


async def test_deleting_an_account_deletes_its_files(harness: Harness) -> None:
    await start(harness)
    a = await user(harness, "alice")
    b = await user(harness, "bob")
    urls = []
    for i, c in enumerate((a, a, b)):
        put_url, get_url = await slot(c, f"f{i}.txt", 3, "text/plain")
        assert (await put(put_url, b"abc", "text/plain"))[0] == 201
        urls.append(get_url)
    assert len(files(harness)) == 3
    # a slot taken before the deletion is useless after it
    late_put, _ = await slot(a, "late.txt", 3, "text/plain")
    assert harness.node is not None
    await harness.node.delete_account("alice")
    assert [(await get(u))[0] for u in urls] == [404, 404, 200]
    assert len(files(harness)) == 1
    assert (await put(late_put, b"abc", "text/plain"))[0] == 403
    assert len(files(harness)) == 1


async def test_old_files_expire(harness: Harness) -> None:
    await start(harness, "expire_days = 1\ncleanup_interval = 60")
    c = await user(harness, "alice")
    put_url, old = await slot(c, "old.txt", 3, "text/plain")
    assert (await put(put_url, b"old", "text/plain"))[0] == 201
    await harness.clock.advance(12 * 3600)
    put_url, new = await slot(c, "new.txt", 3, "text/plain")
    assert (await put(put_url, b"new", "text/plain"))[0] == 201
    await harness.clock.advance(12 * 3600 + 60)
    await until(lambda: len(files(harness)) == 1)
    assert (await get(old))[0] == 404
    assert (await get(new))[2] == b"new"
