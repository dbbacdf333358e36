"""SASL (RFC 6120 §6, RFC 5802/7677, RFC 4616) and in-band registration (XEP-0077), as the client
sees them over real sockets."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import re
import time
from dataclasses import dataclass
from typing import Any

import pytest

from hongyan.xmpp.sasl import tls_server_end_point
from tests.integration.clients import Client
from tests.integration.conftest import Harness
from tests.integration.rawstream import PASSWORD, SASL, RawStream, b64, tls_stream

REGISTER = "jabber:iq:register"


# ---- a hand-written SCRAM client -----------------------------------------------------------


@dataclass
class ScramResult:
    answer: bytes  # the server's last element (<success> or <failure>)
    server_first: str = ""
    verified: bool = False  # the server proved it knows the password (v=)


def _hi(hash_name: str, password: str, salt: bytes, i: int) -> bytes:
    return hashlib.pbkdf2_hmac(hash_name, password.encode(), salt, i)


async def scram(s: RawStream, user: str, password: str, *, hash_name: str = "sha256",
                mech: str | None = None, gs2_flag: str = "n", cb_data: bytes | None = None,
                authzid: str = "", initial_response: bool = True) -> ScramResult:
    """Run one SCRAM exchange on ``s`` (after the stream header). ``cb_data`` defaults to
    tls-server-end-point of the certificate the TLS socket presents."""
    if mech is None:
        mech = "SCRAM-SHA-256" if hash_name == "sha256" else "SCRAM-SHA-1"
        if gs2_flag.startswith("p="):
            mech += "-PLUS"
    if cb_data is None and gs2_flag.startswith("p="):
        ssl_obj = s.writer.get_extra_info("ssl_object")
        assert ssl_obj is not None
        cb_data = tls_server_end_point(ssl_obj.getpeercert(binary_form=True))
    gs2 = f"{gs2_flag},{'a=' + authzid if authzid else ''},"
    nonce = b64(os.urandom(18))
    first_bare = f"n={user},r={nonce}"
    if initial_response:
        s.send(f"<auth xmlns='{SASL}' mechanism='{mech}'>{b64(gs2 + first_bare)}</auth>")
    else:
        s.send(f"<auth xmlns='{SASL}' mechanism='{mech}'/>")
        empty = await s.read_element(b"<challenge")
        assert re.fullmatch(rb"<challenge xmlns='[^']+'\s*(/>|></challenge>)", empty), empty
        s.send(f"<response xmlns='{SASL}'>{b64(gs2 + first_bare)}</response>")
    answer = await _next_sasl(s)
    m = re.fullmatch(rb"<challenge xmlns='[^']+'>([^<]+)</challenge>", answer)
    if m is None:
        return ScramResult(answer)
    server_first = base64.b64decode(m.group(1)).decode()
    attrs = dict(p.split("=", 1) for p in server_first.split(","))
    assert attrs["r"].startswith(nonce) and len(attrs["r"]) > len(nonce)
    salted = _hi(hash_name, password, base64.b64decode(attrs["s"]), int(attrs["i"]))
    client_key = hmac.new(salted, b"Client Key", hash_name).digest()
    stored = hashlib.new(hash_name, client_key).digest()
    cbind = gs2.encode() + (cb_data or b"")
    without = f"c={b64(cbind)},r={attrs['r']}"
    auth_msg = f"{first_bare},{server_first},{without}".encode()
    sig = hmac.new(stored, auth_msg, hash_name).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, sig, strict=True))
    s.send(f"<response xmlns='{SASL}'>{b64(without + ',p=' + b64(proof))}</response>")
    answer = await _next_sasl(s)
    verified = False
    m = re.fullmatch(rb"<success xmlns='[^']+'>([^<]*)</success>", answer)
    if m is not None:
        server_key = hmac.new(salted, b"Server Key", hash_name).digest()
        expect = b"v=" + base64.b64encode(hmac.new(server_key, auth_msg, hash_name).digest())
        verified = base64.b64decode(m.group(1)) == expect
    return ScramResult(answer, server_first, verified)


async def _next_sasl(s: RawStream) -> bytes:
    """The next top-level SASL element (challenge, success or failure), whole."""
    head = await s.read_until(b"<")
    assert head.strip() == b"<", head
    rest = await s.read_until(b">")
    tag = b"<" + rest
    if tag.endswith(b"/>"):
        return tag
    name = tag[1:].split(None, 1)[0].rstrip(b">")
    return tag + await s.read_until(b"</" + name + b">")


async def iq_set(c: Client, payload: str, to: str | None = None) -> Any:
    iq = c.make_iq_set()
    if to:
        iq["to"] = to
    return await c.send_raw_iq(iq, payload, 10)


def condition(answer: bytes) -> bytes:
    m = re.search(rb"<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><([a-z-]+)/>", answer)
    assert m is not None, answer
    return m.group(1)


async def secure_stream(harness: Harness, direct_tls: bool = False) -> RawStream:
    if direct_tls:
        assert harness.node is not None
        s = await RawStream.open(harness.node.direct_tls_port, tls=True)
    else:
        s = await tls_stream(harness)
    await s.header()
    return s


def plain(user: str, password: str, authzid: str = "") -> str:
    data = b64(authzid + chr(0) + user + chr(0) + password)
    return f"<auth xmlns='{SASL}' mechanism='PLAIN'>{data}</auth>"


# ---- every mechanism -----------------------------------------------------------------------


@pytest.mark.parametrize("mech", ["SCRAM-SHA-1", "SCRAM-SHA-256", "PLAIN"])
async def test_slixmpp_login_forcing_each_mechanism(harness: Harness, mech: str) -> None:
    jid = await harness.user("alice")
    c = Client(jid + "/m", PASSWORD)
    c.plugin["feature_mechanisms"].use_mech = mech
    harness.clients.append(c)
    assert await c.login(harness.port)
    assert c.plugin["feature_mechanisms"].mech.name == mech
    assert str(c.boundjid) == jid + "/m"


@pytest.mark.parametrize("hash_name", ["sha1", "sha256"])
@pytest.mark.parametrize("direct_tls", [False, True])
async def test_scram_plus_with_channel_binding(harness: Harness, hash_name: str,
                                               direct_tls: bool) -> None:
    await harness.user("carol")
    s = await secure_stream(harness, direct_tls)
    res = await scram(s, "carol", PASSWORD, hash_name=hash_name, gs2_flag="p=tls-server-end-point")
    assert res.answer.startswith(b"<success"), res.answer
    assert res.verified
    # the authenticated stream is usable: restart, bind
    feats = await s.header()
    assert b"urn:ietf:params:xml:ns:xmpp-bind" in feats
    s.close()


@pytest.mark.parametrize("hash_name", ["sha1", "sha256"])
async def test_scram_plus_with_wrong_binding_data_fails(harness: Harness, hash_name: str) -> None:
    await harness.user("carol")
    s = await secure_stream(harness)
    res = await scram(s, "carol", PASSWORD, hash_name=hash_name,
                      gs2_flag="p=tls-server-end-point", cb_data=b"\x00" * 32)
    assert condition(res.answer) == b"not-authorized"
    s.close()


async def test_scram_plus_with_an_unsupported_binding_type_fails(harness: Harness) -> None:
    await harness.user("carol")
    s = await secure_stream(harness)
    res = await scram(s, "carol", PASSWORD, gs2_flag="p=tls-unique", cb_data=b"x" * 12)
    assert b"<failure" in res.answer and b"<success" not in res.answer
    s.close()


async def test_y_flag_when_plus_is_offered_is_a_downgrade(harness: Harness) -> None:
    await harness.user("carol")
    s = await secure_stream(harness)
    res = await scram(s, "carol", PASSWORD, gs2_flag="y")
    assert condition(res.answer) == b"not-authorized"
    s.close()


async def test_y_flag_when_plus_is_not_offered_is_fine(harness: Harness) -> None:
    await harness.stop_node()
    await harness.start(extra='mechanisms = ["SCRAM-SHA-256", "PLAIN"]')
    await harness.user("carol")
    s = await secure_stream(harness)
    res = await scram(s, "carol", PASSWORD, gs2_flag="y")
    assert res.answer.startswith(b"<success") and res.verified
    s.close()


async def test_scram_without_initial_response(harness: Harness) -> None:
    await harness.user("carol")
    s = await secure_stream(harness)
    res = await scram(s, "carol", PASSWORD, hash_name="sha1", initial_response=False)
    assert res.answer.startswith(b"<success") and res.verified
    s.close()


async def test_scram_wrong_password_and_unknown_user(harness: Harness) -> None:
    await harness.user("carol")
    s = await secure_stream(harness)
    res = await scram(s, "carol", "not-the-password")
    assert condition(res.answer) == b"not-authorized"
    res = await scram(s, "nobody", "not-the-password")
    assert condition(res.answer) == b"not-authorized"
    s.close()


async def test_unknown_user_salts_look_like_real_ones(harness: Harness) -> None:
    """A real account has its own salt per hash; an unknown user must not stand out by getting
    the same salt for SCRAM-SHA-1 and SCRAM-SHA-256, nor a different one on each attempt."""
    await harness.user("carol")

    async def salt(user: str, hash_name: str) -> str:
        s = await secure_stream(harness)
        mech = "SCRAM-SHA-256" if hash_name == "sha256" else "SCRAM-SHA-1"
        s.send(f"<auth xmlns='{SASL}' mechanism='{mech}'>{b64('n,,n=' + user + ',r=abcdef')}"
               "</auth>")
        m = re.search(rb"<challenge xmlns='[^']+'>([^<]+)</challenge>",
                      await s.read_until(b"</challenge>"))
        assert m is not None
        s.close()
        attrs = dict(p.split("=", 1) for p in base64.b64decode(m.group(1)).decode().split(","))
        assert attrs["i"] == "4096"
        return attrs["s"]

    before = {}
    for user in ("carol", "nobody"):
        s1, s256 = await salt(user, "sha1"), await salt(user, "sha256")
        assert s1 != s256, user
        assert await salt(user, "sha1") == s1, user
        assert len(base64.b64decode(s1)) == len(base64.b64decode(s256)) == 16
        before[user] = s1
    # a real account's salt survives a restart: so must an unknown user's (the server secret
    # the fake salt derives from is kept in the database)
    await harness.restart()
    for user in ("carol", "nobody"):
        assert await salt(user, "sha1") == before[user], user


async def test_plain_with_own_authzid_and_foreign_authzid(harness: Harness) -> None:
    await harness.user("carol")
    s = await secure_stream(harness)
    s.send(plain("carol", PASSWORD, authzid="admin@localhost"))
    assert condition(await _next_sasl(s)) == b"invalid-authzid"
    s.send(plain("carol", PASSWORD, authzid="carol@localhost"))
    assert (await _next_sasl(s)).startswith(b"<success")
    s.close()


async def test_sasl_protocol_errors(harness: Harness) -> None:
    await harness.user("carol")
    s = await secure_stream(harness)
    s.send(f"<auth xmlns='{SASL}' mechanism='DIGEST-MD5'/>")
    assert condition(await _next_sasl(s)) == b"invalid-mechanism"
    s.send(f"<auth xmlns='{SASL}' mechanism='PLAIN'>!!not base64!!</auth>")
    assert condition(await _next_sasl(s)) == b"incorrect-encoding"
    s.send(f"<auth xmlns='{SASL}' mechanism='SCRAM-SHA-1'/>")
    assert (await _next_sasl(s)).startswith(b"<challenge")
    s.send(f"<abort xmlns='{SASL}'/>")
    assert condition(await _next_sasl(s)) == b"aborted"
    # a -PLUS mechanism without channel binding in the GS2 header is malformed
    res = await scram(s, "carol", PASSWORD, mech="SCRAM-SHA-256-PLUS", gs2_flag="n")
    assert condition(res.answer) == b"malformed-request"
    s.close()


async def test_five_failures_close_the_stream(harness: Harness) -> None:
    s = await secure_stream(harness)
    for _ in range(4):
        s.send(f"<auth xmlns='{SASL}' mechanism='NOPE'/>")
        assert condition(await _next_sasl(s)) == b"invalid-mechanism"
    s.send(f"<auth xmlns='{SASL}' mechanism='NOPE'/>")
    out = await s.read_to_close()
    assert b"<invalid-mechanism/>" in out
    assert b"<stream:error><policy-violation" in out and out.endswith(b"</stream:stream>")


# ---- encryption first -----------------------------------------------------------------------


async def test_plain_is_refused_before_tls(harness: Harness) -> None:
    await harness.user("dave")
    s = await RawStream.open(harness.port)
    feats = await s.header()
    assert b"<mechanisms" not in feats and b"<mechanism>" not in feats
    s.send(plain("dave", PASSWORD))
    answer = await _next_sasl(s)
    assert condition(answer) == b"encryption-required"
    # SCRAM too
    s.send(f"<auth xmlns='{SASL}' mechanism='SCRAM-SHA-256'>{b64('n,,n=dave,r=abc')}</auth>")
    assert condition(await _next_sasl(s)) == b"encryption-required"
    s.close()


async def test_plaintext_auth_when_allowed(harness: Harness) -> None:
    await harness.stop_node()
    await harness.start(c2s_extra="require_encryption = false\nallow_plaintext_auth = true")
    await harness.user("dave")
    s = await RawStream.open(harness.port)
    feats = await s.header()
    mechs = re.findall(rb"<mechanism>([^<]+)</mechanism>", feats.split(b"</mechanisms>")[0])
    assert mechs == [b"SCRAM-SHA-256", b"SCRAM-SHA-1", b"PLAIN"]  # no -PLUS without TLS
    assert b"sasl-channel-binding" not in feats
    assert b"<required/>" not in feats
    s.send(plain("dave", PASSWORD))
    assert (await _next_sasl(s)).startswith(b"<success")
    feats = await s.header()
    assert b"urn:ietf:params:xml:ns:xmpp-bind" in feats
    s.close()
    s = await RawStream.open(harness.port)
    await s.header()
    res = await scram(s, "dave", PASSWORD, hash_name="sha1")
    assert res.verified
    s.close()


async def test_plaintext_auth_flag_alone_allows_plain(harness: Harness) -> None:
    await harness.stop_node()
    await harness.start(c2s_extra="allow_plaintext_auth = true")
    await harness.user("dave")
    s = await RawStream.open(harness.port)
    feats = await s.header()
    assert b"<mechanism>PLAIN</mechanism>" in feats
    s.send(plain("dave", PASSWORD))
    assert (await _next_sasl(s)).startswith(b"<success")
    s.close()


# ---- failures: same answer, growing delay ----------------------------------------------------


async def _failure(harness: Harness, user: str, password: str) -> tuple[float, bytes]:
    s = await secure_stream(harness)
    t0 = time.monotonic()
    s.send(plain(user, password))
    answer = await _next_sasl(s)
    took = time.monotonic() - t0
    s.close()
    return took, answer


async def test_wrong_password_delays_grow(harness: Harness) -> None:
    await harness.stop_node()
    await harness.start(extra="")  # failure_delay 0.05 s, doubling, at most 0.2 s
    await harness.user("eve")
    d1, a1 = await _failure(harness, "eve", "bad-1")
    d2, a2 = await _failure(harness, "eve", "bad-2")
    d3, a3 = await _failure(harness, "eve", "bad-3")
    for a in (a1, a2, a3):
        assert condition(a) == b"not-authorized"
    assert d1 >= 0.04
    assert d2 > d1 and d2 >= 0.09
    assert d3 > d2 and d3 >= 0.18
    # a success from the address resets the count
    s = await secure_stream(harness)
    s.send(plain("eve", PASSWORD))
    assert (await _next_sasl(s)).startswith(b"<success")
    s.close()
    d4, _ = await _failure(harness, "eve", "bad-4")
    # (reset: the first delay again, 0.05 s, against the third's 0.2 s; no tighter bound, a
    # loaded machine adds its own latency to every answer)
    assert d4 < d3


async def test_unknown_user_fails_exactly_like_a_wrong_password(harness: Harness) -> None:
    await harness.user("frank")
    _, wrong = await _failure(harness, "frank", "bad")
    _, unknown = await _failure(harness, "nobody", "bad")
    assert wrong == unknown
    assert condition(wrong) == b"not-authorized"
    # and through slixmpp
    for user in ("frank", "nobody"):
        c = Client(f"{user}@localhost/x", "wrong-password")
        harness.clients.append(c)
        assert not await c.login(harness.port)
        assert c.auth_failures, user
        await c.close()


# ---- in-band registration (XEP-0077) --------------------------------------------------------


async def _register(harness: Harness, user: str, password: str) -> bytes:
    s = await secure_stream(harness)
    s.send(f"<iq type='get' id='g1'><query xmlns='{REGISTER}'/></iq>")
    form = await s.read_element(b"id='g1'")
    assert b"type='result'" in form and b"<username/>" in form and b"<password/>" in form
    s.send(f"<iq type='set' id='r1'><query xmlns='{REGISTER}'><username>{user}</username>"
           f"<password>{password}</password></query></iq>")
    out = await s.read_element(b"id='r1'")
    s.close()
    return out


async def test_registration_is_offered_only_after_tls(harness: Harness) -> None:
    s = await RawStream.open(harness.port)
    feats = await s.header()
    assert b"iq-register" not in feats
    s.send(f"<iq type='get' id='g1'><query xmlns='{REGISTER}'/></iq>")
    out = await s.read_to_close()
    assert b"<not-authorized" in out
    s = await secure_stream(harness)
    s.close()


async def test_register_then_login_and_duplicate_is_a_conflict(harness: Harness) -> None:
    out = await _register(harness, "benvolio", "peace-keeper")
    assert b"type='result'" in out
    c = await harness.client("benvolio@localhost/r", "peace-keeper")
    assert c.boundjid.bare == "benvolio@localhost"
    again = await _register(harness, "benvolio", "other-pw")
    assert b"type='error'" in again and b"<conflict" in again
    again = await _register(harness, "BenVolio", "other-pw")  # same after normalisation
    assert b"<conflict" in again
    await c.close()
    ok = Client("benvolio@localhost/r", "peace-keeper")
    harness.clients.append(ok)
    assert await ok.login(harness.port)


async def test_registration_over_slixmpp(harness: Harness) -> None:
    c = Client("tybalt@localhost/r", "prince-of-cats", plugins=("xep_0077",))
    harness.clients.append(c)
    done: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def on_register(_form: object) -> None:
        resp = c.Iq()
        resp["type"] = "set"
        resp["register"]["username"] = "tybalt"
        resp["register"]["password"] = "prince-of-cats"
        try:
            await resp.send()
            done.set_result("ok")
        except Exception as exc:
            done.set_result(repr(exc))

    c.add_event_handler("register", on_register)
    c.plugin["xep_0077"].force_registration = True
    c.enable_starttls = True
    c.enable_direct_tls = False
    c.enable_plaintext = False
    c.connect("127.0.0.1", harness.port)
    assert await asyncio.wait_for(done, 10) == "ok"
    assert await asyncio.wait_for(c._started, 10)


async def test_change_password_then_login_with_the_new_one(harness: Harness) -> None:
    c = await harness.logged_in("romeo", presence=False)
    res = await iq_set(c, f"<query xmlns='{REGISTER}'><username>romeo</username>"
                          "<password>new-password</password></query>", to="localhost")
    assert res["type"] == "result", res
    await c.close()
    old = Client("romeo@localhost/old", PASSWORD)
    harness.clients.append(old)
    assert not await old.login(harness.port)
    for mech in ("PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256"):
        new = Client("romeo@localhost/new", "new-password")
        new.plugin["feature_mechanisms"].use_mech = mech
        harness.clients.append(new)
        assert await new.login(harness.port), mech
        await new.close()


async def test_delete_own_account_removes_everything(harness: Harness) -> None:
    assert harness.node is not None
    db = harness.node.db
    juliet = await harness.logged_in("juliet")
    romeo = await harness.logged_in("romeo")
    await iq_set(juliet, "<query xmlns='jabber:iq:roster'><item jid='romeo@localhost'/></query>")
    await iq_set(romeo, "<query xmlns='jabber:iq:roster'><item jid='juliet@localhost'/></query>")
    await juliet.close()
    romeo.send_message(mto="juliet@localhost", mbody="stored for you", mtype="chat")
    for _ in range(50):
        if await db.fetchall("SELECT * FROM offline_messages WHERE username=?", "juliet"):
            break
        await asyncio.sleep(0.05)
    assert await db.fetchall("SELECT * FROM roster_items WHERE username=?", "juliet")
    assert await db.fetchall("SELECT * FROM offline_messages WHERE username=?", "juliet")

    juliet = await harness.client("juliet@localhost/y", presence=False)
    res = await iq_set(juliet, f"<query xmlns='{REGISTER}'><remove/></query>", to="localhost")
    assert res["type"] == "result"
    await asyncio.wait_for(juliet.gone.wait(), 5)
    for table in ("accounts", "offline_messages", "roster_items"):
        assert await db.fetchall(f"SELECT * FROM {table} WHERE username=?", "juliet") == [], table
    again = Client("juliet@localhost/z", PASSWORD)
    harness.clients.append(again)
    assert not await again.login(harness.port)


async def test_remove_over_raw_stream_result_then_stream_closed(harness: Harness) -> None:
    from tests.integration.rawstream import authed_stream

    s = await authed_stream(harness, "mercutio")
    s.send(f"<iq type='set' id='del'><query xmlns='{REGISTER}'><remove/></query></iq>")
    out = await s.read_to_close()
    assert re.search(rb"<iq [^>]*id='del'[^>]*type='result'|<iq [^>]*type='result'[^>]*id='del'",
                     out), out
    assert out.endswith(b"</stream:stream>")
    s = await secure_stream(harness)
    s.send(plain("mercutio", PASSWORD))
    assert condition(await _next_sasl(s)) == b"not-authorized"
    s.close()


async def test_remove_before_auth_is_not_allowed(harness: Harness) -> None:
    await harness.user("paris")
    s = await secure_stream(harness)
    s.send(f"<iq type='set' id='d'><query xmlns='{REGISTER}'><username>paris</username>"
           "<remove/></query></iq>")
    out = await s.read_element(b"id='d'")
    assert b"type='error'" in out and b"<not-allowed" in out
    s.send(plain("paris", PASSWORD))
    assert (await _next_sasl(s)).startswith(b"<success")
    s.close()


async def test_register_query_without_to_while_logged_in(harness: Harness) -> None:
    """XEP-0077's own examples address the user's server implicitly (no 'to')."""
    from tests.integration.rawstream import authed_stream

    s = await authed_stream(harness, "balthasar")
    s.send(f"<iq type='get' id='q'><query xmlns='{REGISTER}'/></iq>")
    out = await s.read_element(b"id='q'")
    assert b"type='result'" in out and b"<registered/>" in out
    assert b"<username>balthasar</username>" in out
    s.send(f"<iq type='set' id='pw'><query xmlns='{REGISTER}'><username>balthasar</username>"
           "<password>changed-pw</password></query></iq>")
    out = await s.read_element(b"id='pw'")
    assert b"type='result'" in out
    s.close()
    s = await secure_stream(harness)
    s.send(plain("balthasar", "changed-pw"))
    assert (await _next_sasl(s)).startswith(b"<success")
    s.close()
