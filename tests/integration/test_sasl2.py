"""SASL2 (XEP-0388), Bind2 (XEP-0386), FAST (XEP-0484), downgrade protection (XEP-0474),
channel binding types (XEP-0440, RFC 9266 tls-exporter) and stream limits (XEP-0478), byte
for byte over real TLS sockets, on SQLite and PostgreSQL.

No Python client library here speaks SASL2/Bind2/FAST: slixmpp has no SASL2; nbxmpp (Gajim's
library; Debian's python3-nbxmpp 4.2.2, installed and read) speaks the older draft namespace
``urn:xmpp:sasl:1``, has neither Bind2 nor FAST, and needs a GLib main loop. So the client is
:class:`Sasl2Client` below: the XEPs' examples as a client writes them, with its own SCRAM and
HT (hashed token) computations. Only
the channel binding *data* of its own end of the TLS connection comes from Hongyan's helpers
(the ssl module has no exporter; the server's end computes its own, and a mismatch fails).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hongyan.cluster.workers import home_of
from hongyan.transport.exporter import tls_exporter
from hongyan.xmpp.element import Element
from hongyan.xmpp.parser import StreamParser
from hongyan.xmpp.sasl import tls_server_end_point
from tests.integration.clients import Client
from tests.integration.conftest import Harness
from tests.integration.rawstream import HEADER, PASSWORD, RawStream, b64, tls_stream

SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
SASL2 = "urn:xmpp:sasl:2"
BIND2 = "urn:xmpp:bind:0"
FAST = "urn:xmpp:fast:0"
SM = "urn:xmpp:sm:3"
CARBONS = "urn:xmpp:carbons:2"
CSI = "urn:xmpp:csi:0"


# ---- the client ------------------------------------------------------------------------------


@dataclass
class Answer:
    raw: bytes  # the <success/> or <failure/>, whole
    features: bytes = b""  # the stream features that follow a success
    verified: bool = False  # the server proved it knows the secret (SCRAM v=, HT responder)
    server_first: str = ""
    ssdp_ok: bool | None = None  # XEP-0474 hash matched what the client saw advertised

    @property
    def ok(self) -> bool:
        return self.raw.startswith(b"<success")

    def find(self, pattern: bytes) -> bytes | None:
        m = re.search(pattern, self.raw)
        return None if m is None else m.group(1)

    @property
    def identifier(self) -> str:
        v = self.find(rb"<authorization-identifier>([^<]+)</authorization-identifier>")
        assert v is not None, self.raw
        return v.decode()

    @property
    def token(self) -> str | None:
        v = self.find(rb"<token xmlns='urn:xmpp:fast:0'[^>]* token='([^']+)'")
        return None if v is None else v.decode()


@dataclass
class Sasl2Client:
    s: RawStream
    features: bytes
    agent: str = field(default_factory=lambda: str(uuid.uuid4()))
    _parser: StreamParser | None = None
    _events: list[object] = field(default_factory=list)

    @classmethod
    async def open(cls, harness: Harness, direct_tls: bool = False,
                   agent: str | None = None) -> Sasl2Client:
        """A TLS stream (STARTTLS or direct), its features read; ``agent``: the user-agent id
        (default: a new one)."""
        if direct_tls:
            assert harness.node is not None
            s = await RawStream.open(harness.node.direct_tls_port, tls=True)
        else:
            s = await tls_stream(harness)
        c = cls(s, await s.header())
        if agent is not None:
            c.agent = agent
        return c

    @classmethod
    async def connect(cls, port: int) -> Sasl2Client:
        s = await RawStream.open(port, tls=True)
        return cls(s, await s.header())

    # what the server advertised
    def mechanisms(self) -> list[str]:
        block = re.search(rb"<authentication xmlns='urn:xmpp:sasl:2'>(.*?)<inline>",
                          self.features)
        assert block is not None, self.features
        return [m.decode() for m in re.findall(rb"<mechanism>([^<]+)</mechanism>",
                                               block.group(1))]

    def cb_types(self) -> list[str]:
        block = re.search(rb"<sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'>(.*?)"
                          rb"</sasl-channel-binding>", self.features)
        assert block is not None
        return [t.decode() for t in re.findall(rb"type='([^']+)'", block.group(1))]

    def cb_data(self, cb_type: str) -> bytes:
        ssl_obj = self.s.writer.get_extra_info("ssl_object")
        assert ssl_obj is not None
        if cb_type == "tls-exporter":
            data = tls_exporter(ssl_obj)
            assert data is not None and len(data) == 32
            return data
        assert cb_type == "tls-server-end-point"
        return tls_server_end_point(ssl_obj.getpeercert(binary_form=True))

    def _ua(self) -> str:
        return (f"<user-agent id='{self.agent}'><software>test_sasl2</software>"
                f"<device>pytest</device></user-agent>")

    async def _answer(self) -> bytes:
        """The next SASL2 element (challenge, success, failure), whole."""
        head = await self.s.read_until(b"<")
        assert head.strip() == b"<", head
        tag = b"<" + await self.s.read_until(b">")
        if tag.endswith(b"/>"):
            return tag
        name = tag[1:].split(None, 1)[0].rstrip(b">")
        return tag + await self.s.read_until(b"</" + name + b">")

    async def _finish(self, answer: bytes) -> Answer:
        out = Answer(answer)
        if out.ok:  # XEP-0388 §3.5: features follow at once, no stream restart
            out.features = await self.s.read_until(b"</stream:features>")
            assert out.features.startswith(b"<stream:features"), out.features
        return out

    async def scram(self, user: str, password: str = PASSWORD, *,
                    mech: str = "SCRAM-SHA-256-PLUS", cb_type: str = "tls-exporter",
                    inline: str = "", seen: tuple[list[str], list[str]] | None = None
                    ) -> Answer:
        """SCRAM over SASL2; ``seen``: the (mechanisms, channel binding types) the client
        believes were advertised (default: what was)."""
        hash_name = "sha256" if "SHA-256" in mech else "sha1"
        plus = mech.endswith("-PLUS")
        gs2 = f"p={cb_type},," if plus else "n,,"
        nonce = b64(os.urandom(18))
        first_bare = f"n={user},r={nonce}"
        self.s.send(f"<authenticate xmlns='{SASL2}' mechanism='{mech}'><initial-response>"
                    f"{b64(gs2 + first_bare)}</initial-response>{self._ua()}{inline}"
                    f"</authenticate>")
        answer = await self._answer()
        m = re.fullmatch(rb"<challenge xmlns='urn:xmpp:sasl:2'>([^<]+)</challenge>", answer)
        if m is None:
            return await self._finish(answer)
        server_first = base64.b64decode(m.group(1)).decode()
        attrs = dict(p.split("=", 1) for p in server_first.split(","))
        mechs, cbs = seen if seen is not None else (self.mechanisms(), self.cb_types())
        expect_h = ("\x1e".join(sorted(mechs)) + "\x1f" + "\x1e".join(sorted(cbs))).encode()
        ssdp_ok = attrs.get("h") == b64(hashlib.new(hash_name, expect_h).digest())
        salted = hashlib.pbkdf2_hmac(hash_name, password.encode(),
                                     base64.b64decode(attrs["s"]), int(attrs["i"]))
        client_key = hmac.new(salted, b"Client Key", hash_name).digest()
        stored = hashlib.new(hash_name, client_key).digest()
        cbind = gs2.encode() + (self.cb_data(cb_type) if plus else b"")
        without = f"c={b64(cbind)},r={attrs['r']}"
        auth_msg = f"{first_bare},{server_first},{without}".encode()
        proof = bytes(a ^ b for a, b in zip(
            client_key, hmac.new(stored, auth_msg, hash_name).digest(), strict=True))
        self.s.send(f"<response xmlns='{SASL2}'>{b64(without + ',p=' + b64(proof))}</response>")
        out = await self._finish(await self._answer())
        out.server_first, out.ssdp_ok = server_first, ssdp_ok
        extra = out.find(rb"<additional-data>([^<]+)</additional-data>")
        if extra is not None:
            server_key = hmac.new(salted, b"Server Key", hash_name).digest()
            out.verified = base64.b64decode(extra) == b"v=" + base64.b64encode(
                hmac.new(server_key, auth_msg, hash_name).digest())
        return out

    async def plain(self, user: str, password: str = PASSWORD, inline: str = "") -> Answer:
        self.s.send(f"<authenticate xmlns='{SASL2}' mechanism='PLAIN'><initial-response>"
                    f"{b64(chr(0) + user + chr(0) + password)}</initial-response>"
                    f"{self._ua()}{inline}</authenticate>")
        return await self._finish(await self._answer())

    async def fast(self, user: str, token: str, *, mech: str = "HT-SHA-256-NONE",
                   inline: str = "", fast_attrs: str = "") -> Answer:
        """A FAST login (XEP-0484 §4.4) with the hashed token mechanism ``mech``."""
        cb = {"HT-SHA-256-NONE": b"", "HT-SHA-256-ENDP": None, "HT-SHA-256-EXPR": None}[mech]
        if cb is None:
            cb = self.cb_data("tls-server-end-point" if mech.endswith("ENDP")
                              else "tls-exporter")
        key = token.encode()
        proof = hmac.new(key, b"Initiator" + cb, "sha256").digest()
        initial = b64(user.encode() + b"\0" + proof)
        self.s.send(f"<authenticate xmlns='{SASL2}' mechanism='{mech}'><initial-response>"
                    f"{initial}</initial-response>{self._ua()}"
                    f"<fast xmlns='{FAST}'{fast_attrs}/>{inline}</authenticate>")
        out = await self._finish(await self._answer())
        extra = out.find(rb"<additional-data>([^<]+)</additional-data>")
        if extra is not None:
            out.verified = hmac.compare_digest(
                base64.b64decode(extra), hmac.new(key, b"Responder" + cb, "sha256").digest())
        return out

    async def next(self, name: str, timeout: float = 5.0) -> bytes:
        """The next top-level element named ``name`` after the login (others are skipped),
        serialized again, read with an XML parser of the client's own."""
        if self._parser is None:
            self._parser = StreamParser(max_stanza_size=1 << 20)
            self._parser.feed(HEADER.format(to="localhost").encode())
            data, self.s.buffer = self.s.buffer, b""
            self._events += self._parser.feed(data)

        async def loop() -> bytes:
            assert self._parser is not None
            while True:
                while self._events:
                    ev = self._events.pop(0)
                    if isinstance(ev, Element) and ev.name == name:
                        return ev.to_bytes(ev.xmlns)
                chunk = await self.s.more()
                assert chunk, "the server closed the stream"
                self._events += self._parser.feed(chunk)

        return await asyncio.wait_for(loop(), timeout)

    def close(self) -> None:
        self.s.close()


def bind2(tag: str = "Phone", extra: str = "") -> str:
    return f"<bind xmlns='{BIND2}'><tag>{tag}</tag>{extra}</bind>"


def request_token(mech: str = "HT-SHA-256-NONE") -> str:
    return f"<request-token xmlns='{FAST}' mechanism='{mech}'/>"


# ---- features ------------------------------------------------------------------------------


async def test_features_offer_sasl2_inline_bind2_fast_and_limits(harness: Harness) -> None:
    c = await Sasl2Client.open(harness)
    f = c.features
    # the same mechanisms as RFC 6120 SASL, in SASL2's list
    assert c.mechanisms() == ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1-PLUS",
                              "SCRAM-SHA-1", "PLAIN"]
    assert c.cb_types() == ["tls-exporter", "tls-server-end-point"]  # TLS 1.3 here
    inline = re.search(rb"<inline>(.*)</inline></authentication>", f)
    assert inline is not None, f
    bind = re.search(rb"<bind xmlns='urn:xmpp:bind:0'><inline>(.*?)</inline></bind>",
                     inline.group(1))
    assert bind is not None
    assert set(re.findall(rb"<feature var='([^']+)'/>", bind.group(1))) == {
        CARBONS.encode(), CSI.encode(), SM.encode()}
    assert b"<sm xmlns='urn:xmpp:sm:3'/>" in inline.group(1)
    assert re.search(rb"<fast xmlns='urn:xmpp:fast:0'><mechanism>HT-SHA-256-NONE</mechanism>"
                     rb"<mechanism>HT-SHA-256-ENDP</mechanism><mechanism>HT-SHA-256-EXPR"
                     rb"</mechanism></fast>", inline.group(1)), inline.group(1)
    assert (b"<limits xmlns='urn:xmpp:stream-limits:0'><max-bytes>16384</max-bytes>"
            b"<idle-seconds>30</idle-seconds></limits>") in f
    c.close()
    # in the clear: no mechanisms at all, so no SASL2 either
    s = await RawStream.open(harness.port)
    f = await s.header()
    assert b"urn:xmpp:sasl:2" not in f and b"urn:xmpp:fast:0" not in f
    s.close()


# ---- SCRAM, PLAIN, failures ------------------------------------------------------------------


@pytest.mark.parametrize("cb_type", ["tls-exporter", "tls-server-end-point"])
async def test_scram_sha256_plus_with_each_channel_binding(harness: Harness,
                                                           cb_type: str) -> None:
    await harness.user("alice")
    c = await Sasl2Client.open(harness)
    a = await c.scram("alice", cb_type=cb_type)
    assert a.ok and a.verified, a.raw
    assert a.ssdp_ok, a.server_first  # XEP-0474 hash of what was advertised
    assert a.identifier == "alice@localhost"  # no bind: the bare JID
    # no restart: the authenticated stream's features, with the full stanza size
    assert b"<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>" in a.features
    assert b"<max-bytes>262144</max-bytes>" in a.features
    # RFC 6120 resource binding on that stream, then a stanza round trip
    c.s.send("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
             "<resource>laptop</resource></bind></iq>")
    assert b"<jid>alice@localhost/laptop</jid>" in await c.s.read_until(b"</iq>")
    c.s.send("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert b"id='p1'" in await c.next("iq")
    c.close()


async def test_channel_binding_to_another_connection_fails(harness: Harness) -> None:
    await harness.user("alice")
    other = await Sasl2Client.open(harness)
    c = await Sasl2Client.open(harness)
    c.cb_data = other.cb_data  # type: ignore[method-assign]  # a relayed (MITM) exchange
    a = await c.scram("alice", cb_type="tls-exporter")
    assert not a.ok
    assert b"<not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>" in a.raw
    other.close()
    c.close()


async def test_downgrade_protection_hash_reveals_a_stripped_list(harness: Harness) -> None:
    """A man in the middle that removed tls-exporter and the -PLUS mechanisms from the
    features: the client computes the hash over what it saw, the server over what it sent."""
    await harness.user("alice")
    c = await Sasl2Client.open(harness)
    stripped = ([m for m in c.mechanisms() if not m.endswith("-PLUS")],
                ["tls-server-end-point"])
    a = await c.scram("alice", mech="SCRAM-SHA-256", seen=stripped)
    assert a.ssdp_ok is False  # a real client aborts here
    # and the same hash over the true lists matches (the attribute is signed by the proof)
    c2 = await Sasl2Client.open(harness)
    b = await c2.scram("alice", mech="SCRAM-SHA-1")
    assert b.ok and b.ssdp_ok and b.verified
    c.close()
    c2.close()


async def test_scram_sha1_plus_and_plain(harness: Harness) -> None:
    await harness.user("alice")
    c = await Sasl2Client.open(harness, direct_tls=True)
    a = await c.scram("alice", mech="SCRAM-SHA-1-PLUS", cb_type="tls-server-end-point")
    assert a.ok and a.verified and a.ssdp_ok
    c.close()
    c = await Sasl2Client.open(harness)
    a = await c.plain("alice")
    assert a.ok and a.identifier == "alice@localhost"
    c.close()


async def test_wrong_password_is_a_failure_with_text_and_the_stream_goes_on(
        harness: Harness) -> None:
    await harness.user("alice")
    c = await Sasl2Client.open(harness)
    a = await c.scram("alice", "wrong")
    assert re.fullmatch(rb"<failure xmlns='urn:xmpp:sasl:2'><not-authorized xmlns='urn:ietf:"
                        rb"params:xml:ns:xmpp-sasl'/><text>[^<]+</text></failure>", a.raw), a.raw
    a = await c.plain("nobody", "x")
    assert b"<not-authorized " in a.raw and b"<text>" in a.raw
    # XEP-0388 §3.5.2: the stream is unchanged; the right password now works
    a = await c.scram("alice")
    assert a.ok and a.verified
    c.close()


async def test_five_failures_end_the_stream_across_sasl_and_sasl2(harness: Harness) -> None:
    await harness.user("alice")
    c = await Sasl2Client.open(harness)
    for i in range(4):
        if i % 2:
            wrong = b64(chr(0) + "alice" + chr(0) + "x")
            c.s.send(f"<auth xmlns='{SASL}' mechanism='PLAIN'>{wrong}</auth>")
            assert b"<not-authorized" in await c._answer()
        else:
            assert not (await c.plain("alice", "x")).ok
    await c.plain("alice", "x")
    assert b"<policy-violation" in await c.s.read_to_close()
    c.close()


async def test_unknown_mechanism_and_sasl2_stanzas_before_auth(harness: Harness) -> None:
    c = await Sasl2Client.open(harness)
    c.s.send(f"<authenticate xmlns='{SASL2}' mechanism='DIGEST-MD5'/>")
    a = await c._answer()
    assert b"<invalid-mechanism xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>" in a
    c.s.send(f"<frobnicate xmlns='{SASL2}'/>")
    assert b"<unsupported-stanza-type" in await c.s.read_to_close()
    c.close()


# ---- Bind2 -----------------------------------------------------------------------------------


async def test_bind2_resource_carbons_csi_and_sm_inline(harness: Harness) -> None:
    await harness.user("alice")
    bob = await harness.logged_in("bob")
    other = await harness.client("alice@localhost/desk")
    c = await Sasl2Client.open(harness)
    a = await c.scram("alice", inline=bind2("Phone", f"<enable xmlns='{CARBONS}'/>"
                                             f"<enable xmlns='{SM}' resume='true'/>"))
    assert a.ok
    jid = a.identifier
    m = re.fullmatch(r"alice@localhost/Phone\.([0-9a-f]{8})", jid)
    assert m is not None, jid
    enabled = a.find(rb"<bound xmlns='urn:xmpp:bind:0'>.*(<enabled [^>]+/>).*</bound>")
    assert enabled is not None and b"resume='true'" in enabled and b"id='" in enabled
    # bound already: no resource binding offered again
    assert b"urn:ietf:params:xml:ns:xmpp-bind" not in a.features
    # carbons are on: a message bob sends to alice's other resource reaches the phone too
    c.s.send("<presence/>")
    await c.next("presence")  # its own, back
    bob.send_message(mto="alice@localhost/desk", mbody="to the desk", mtype="chat")
    got = await c.next("message")
    assert b"<received xmlns='urn:xmpp:carbons:2'>" in got and b"to the desk" in got
    # SM is on: the server counted the client's one stanza (its presence) and takes its ack
    c.s.send(f"<a xmlns='{SM}' h='1'/><r xmlns='{SM}'/>")
    assert b"h='1'" in await c.next("a")
    c.close()
    # the same user agent gets the same resource back
    c2 = await Sasl2Client.open(harness, agent=c.agent)
    b = await c2.scram("alice", inline=bind2("Phone", f"<inactive xmlns='{CSI}'/>"))
    assert b.identifier == jid
    # CSI inactive from the start: bob's presence is held, a message body is not
    bob.send_presence(pto="alice@localhost", pstatus="away for lunch")
    bob.send_message(mto=jid, mbody="urgent", mtype="chat")
    got = await c2.next("message")
    assert b"urgent" in got
    c2.close()
    del other


async def test_bind2_sm_enable_then_resumption_inline_after_a_drop(harness: Harness) -> None:
    await harness.user("alice")
    bob = await harness.logged_in("bob")
    c = await Sasl2Client.open(harness)
    a = await c.scram("alice", inline=bind2("Phone", f"<enable xmlns='{SM}' resume='true'/>"))
    jid = a.identifier
    rid = a.find(rb"<enabled xmlns='urn:xmpp:sm:3' id='([^']+)'")
    assert rid is not None, a.raw
    bob.send_message(mto=jid, mbody="while you drive", mtype="chat")
    assert b"while you drive" in await c.next("message")
    c.s.writer.transport.abort()  # the phone loses its network: no ack was sent
    await asyncio.sleep(0.2)
    bob.send_message(mto=jid, mbody="in the tunnel", mtype="chat")
    await asyncio.sleep(0.2)
    c2 = await Sasl2Client.open(harness)
    b = await c2.scram("alice", inline=f"<resume xmlns='{SM}' previd='{rid.decode()}' h='0'/>"
                                        + bind2("Phone"))
    assert b.ok, b.raw
    assert b.find(rb"(<resumed xmlns='urn:xmpp:sm:3' [^>]+/>)") is not None, b.raw
    assert b"<bound" not in b.raw  # resumed: nothing bound anew
    assert b.identifier == jid
    # both messages again, in order, after the <success/>
    first = await c2.next("message")
    second = await c2.next("message")
    assert b"while you drive" in first and b"in the tunnel" in second
    c2.close()
    # a resumption id that is gone: <failed/> inside the success, and Bind2 binds afresh
    c3 = await Sasl2Client.open(harness)
    d = await c3.scram("alice", inline=f"<resume xmlns='{SM}' previd='nope' h='0'/>"
                                        + bind2("Phone"))
    assert d.ok and b"<failed xmlns='urn:xmpp:sm:3'><item-not-found" in d.raw
    assert b"<bound xmlns='urn:xmpp:bind:0'" in d.raw
    c3.close()


async def test_bind2_bound_carries_the_archive_catch_up_hint(harness: Harness) -> None:
    await harness.user("alice")
    bob = await harness.logged_in("bob")
    c = await Sasl2Client.open(harness)
    a = await c.scram("alice", inline=bind2())
    # an empty archive: metadata without start or end (XEP-0313 §6)
    assert b"<bound xmlns='urn:xmpp:bind:0'><metadata xmlns='urn:xmpp:mam:2'/></bound>" in a.raw
    c.s.send("<presence/>")
    ids = []
    for text in ("first", "second", "third"):
        bob.send_message(mto=a.identifier, mbody=text, mtype="chat")
        got = await c.next("message")
        m = re.search(rb"<stanza-id xmlns='urn:xmpp:sid:0' by='alice@localhost' id='(\d+)'", got)
        assert m is not None and text.encode() in got, got
        ids.append(m.group(1).decode())
    c.close()
    c2 = await Sasl2Client.open(harness, agent=c.agent)
    b = await c2.scram("alice", inline=bind2())
    meta = b.find(rb"<bound xmlns='urn:xmpp:bind:0'>(<metadata .*</metadata>)</bound>")
    assert meta is not None, b.raw
    assert re.fullmatch(rf"<metadata xmlns='urn:xmpp:mam:2'><start id='{ids[0]}' timestamp="
                        rf"'[^']+Z'/><end id='{ids[-1]}' timestamp='[^']+Z'/></metadata>"
                        .encode(), meta), meta
    c2.close()


# ---- FAST ------------------------------------------------------------------------------------


async def test_fast_token_login_rotation_and_hashed_storage(harness: Harness) -> None:
    await harness.user("alice")
    c = await Sasl2Client.open(harness)
    a = await c.scram("alice", inline=bind2() + request_token())
    token = a.token
    assert a.ok and token, a.raw
    assert re.search(rb"<token xmlns='urn:xmpp:fast:0' expiry='\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ'",
                     a.raw)
    c.close()
    # one round trip, no password, bound in the same step
    c2 = await Sasl2Client.open(harness, agent=c.agent)
    b = await c2.fast("alice", token, inline=bind2())
    assert b.ok and b.verified, b.raw
    assert b.identifier.startswith("alice@localhost/Phone.")
    assert b.token is None  # fresh token: no rotation yet
    # the token is bound to the user agent
    other = await Sasl2Client.open(harness)
    assert not (await other.fast("alice", token)).ok
    # the database holds no token
    assert harness.node is not None
    rows = await harness.node.db.fetchall("SELECT * FROM fast_tokens")
    assert rows and all(token.encode() not in repr(r).encode() for r in rows)
    # asked again: a new token; the old one works until the new one is used
    c3 = await Sasl2Client.open(harness, agent=c.agent)
    d = await c3.fast("alice", token, inline=request_token())
    new = d.token
    assert d.ok and new and new != token
    for _ in range(2):  # the new token's <success/> was lost: the old one still works
        cx = await Sasl2Client.open(harness, agent=c.agent)
        assert (await cx.fast("alice", token)).ok
        cx.close()
    cy = await Sasl2Client.open(harness, agent=c.agent)
    assert (await cy.fast("alice", new)).ok
    cz = await Sasl2Client.open(harness, agent=c.agent)
    gone = await cz.fast("alice", token)  # the new one was used: the old one is gone
    assert b"<not-authorized " in gone.raw
    # in the second half of its life the token is rotated without being asked
    await harness.clock.advance(8 * 86400)
    cw = await Sasl2Client.open(harness, agent=c.agent)
    e = await cw.fast("alice", new)
    assert e.ok and e.token and e.token != new
    # and past its expiry a token is refused
    await harness.clock.advance(15 * 86400)
    cv = await Sasl2Client.open(harness, agent=c.agent)
    assert not (await cv.fast("alice", e.token)).ok
    for x in (c2, other, c3, cy, cz, cw, cv):
        x.close()


@pytest.mark.parametrize("mech", ["HT-SHA-256-ENDP", "HT-SHA-256-EXPR"])
async def test_fast_with_channel_binding_is_bound_to_its_mechanism(harness: Harness,
                                                                   mech: str) -> None:
    await harness.user("alice")
    c = await Sasl2Client.open(harness)
    token = (await c.scram("alice", inline=request_token(mech))).token
    assert token
    c2 = await Sasl2Client.open(harness, direct_tls=True, agent=c.agent)
    a = await c2.fast("alice", token, mech=mech)
    assert a.ok and a.verified
    c3 = await Sasl2Client.open(harness, agent=c.agent)
    assert not (await c3.fast("alice", token, mech="HT-SHA-256-NONE")).ok
    for x in (c, c2, c3):
        x.close()


async def test_fast_token_ends_with_a_password_change_and_on_request(harness: Harness) -> None:
    await harness.user("alice")
    c = await Sasl2Client.open(harness)
    token = (await c.scram("alice", inline=request_token())).token
    assert token
    # the user asks to forget the token ("log out"): success, then it is refused
    c2 = await Sasl2Client.open(harness, agent=c.agent)
    a = await c2.fast("alice", token, fast_attrs=" invalidate='true'")
    assert a.ok and a.token is None
    c3 = await Sasl2Client.open(harness, agent=c.agent)
    assert not (await c3.fast("alice", token)).ok
    # a new token, then the password changes (in-band, XEP-0077): the token is refused
    c4 = await Sasl2Client.open(harness, agent=c.agent)
    token = (await c4.scram("alice", inline=request_token())).token
    assert token
    alice = await harness.client("alice@localhost/cli")
    iq = alice.make_iq_set()
    await alice.send_raw_iq(iq, "<query xmlns='jabber:iq:register'><username>alice"
                                "</username><password>n3w-passw0rd</password></query>", 10)
    c5 = await Sasl2Client.open(harness, agent=c.agent)
    refused = await c5.fast("alice", token)
    assert b"<not-authorized " in refused.raw and b"<text>" in refused.raw
    for x in (c, c2, c3, c4, c5):
        x.close()


async def test_classic_clients_still_log_in(harness: Harness) -> None:
    """slixmpp (no SASL2) logs in with RFC 6120 SASL and binds, beside the new features."""
    await harness.user("alice")
    c = await harness.client("alice@localhost/classic")
    assert isinstance(c, Client) and str(c.boundjid) == "alice@localhost/classic"


# ---- workers ---------------------------------------------------------------------------------


async def test_fast_login_with_two_workers(tmp_path: Path, storage_url: str) -> None:
    from tests.integration.test_process import PW
    from tests.integration.test_workers import A0, A1, serving

    assert home_of(A0, 2) == 0 and home_of(A1, 2) == 1
    EXPR = "HT-SHA-256-EXPR"
    async with serving(tmp_path, storage_url) as node:
        for user in (A0, A1):
            agent = str(uuid.uuid4())
            tokens = []
            for round_ in range(6):  # the kernel picks the worker: some logins move
                c = await Sasl2Client.connect(node.tls_port)
                c.agent = agent
                if not tokens:
                    a = await c.scram(user, PW, inline=bind2("W") + request_token(EXPR))
                    assert a.ok and a.token, a.raw
                    tokens.append(a.token)
                else:  # tls-exporter bound: checked by the worker that holds the TLS
                    a = await c.fast(user, tokens[-1], mech=EXPR, inline=bind2("W")
                                     + (request_token(EXPR) if round_ == 2 else ""))
                    assert a.ok and a.verified, a.raw
                    if a.token:
                        tokens.append(a.token)
                assert a.identifier.startswith(f"{user}@localhost/W.")
                c.s.send("<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
                assert b"id='p'" in await c.next("iq")
                c.close()
            assert len(tokens) == 2
