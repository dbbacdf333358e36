"""Federation with a real ejabberd (Debian's): its own domain (ejabberd.lan), address and Erlang
node, a certificate from the tests' CA (each server trusts the CA; ejabberd has no dialback
module, so only certificates can authenticate, in both directions: SASL EXTERNAL, XEP-0178),
DNS from a real dnsmasq. A Hongyan user (hongyan.lan) and an ejabberd user subscribe to each
other, see each other's presence and chat both ways; each fetches the other's avatar
(XEP-0084; the Hongyan user's metadata reaches the ejabberd user as a PEP notification); the
Hongyan user reads an OMEMO message (XEP-0384, slixmpp-omemo) for which the
ejabberd user's client fetched the Hongyan user's device list and bundle over PEP, and
answers it the same way; each user joins a room on the other's server.

ejabberd runs on a host of its own: a network namespace the test makes (``ip netns``), joined
to the test's by a veth pair: .2 on its end of a /24 of this process's (``netns.subnet``), .1
on the host's, where Hongyan listens on 5269 and the DNS server on 53. One test function: the
addresses are this process's, so the scenario must not run twice at once in one process."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import sys
from pathlib import Path

import pytest

from tests.integration import dnsserver, ejabberd, netns
from tests.integration import test_omemo as omemo
from tests.integration.clients import Client
from tests.integration.conftest import Harness
from tests.integration.federation import free_port
from tests.integration.pepkit import EVENT, PUBSUB, Events
from tests.integration.rawstream import PASSWORD
from tests.integration.test_im import manual, raw_iq, roster_items, wait_presence
from tests.integration.test_s2s_prosody import _groupchat, _join
from tests.integration.testca import TestCA

H, E = "hongyan.lan", "ejabberd.lan"
# ejabberd's host: a network namespace, joined to the test's by a veth pair
NET = netns.subnet(1)
H_ADDR, E_ADDR = f"{NET}.1", f"{NET}.2"
DNS_ADDR = H_ADDR
AVATAR_DATA = "urn:xmpp:avatar:data"
AVATAR_META = "urn:xmpp:avatar:metadata"
IMAGE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
IMAGE_2 = b"\x89PNG\r\n\x1a\n" + bytes(range(255, -1, -1)) * 6
SECRET = "the key is under the third flowerpot"
PLUGINS = ("xep_0045", "xep_0084")


async def omemo_client(jid: str, port: int, host: str, store: Path, h: Harness) -> Client:
    """A slixmpp-omemo client (test_omemo's plugin: file storage, blind trust) for ``jid``,
    on either server, once its own device list and bundle are published."""
    c = Client(jid, PASSWORD, omemo.OMEMO_PLUGINS)
    h.clients.append(c)
    c.use_message_ids = True
    c.register_plugin("xep_0384", {"json_file_path": str(store)}, module=sys.modules[
        omemo.__name__])
    ready = asyncio.Event()
    c.add_event_handler("omemo_initialized", lambda _e: ready.set())
    await c.plugin["xep_0115"].update_caps(broadcast=False)  # the hash presence carries
    assert await c.login(port, host=host), f"{jid} could not log in"
    await asyncio.wait_for(ready.wait(), 30)
    # the plugin adds its +notify features after the login presence went out with a hash
    # of the features before: ejabberd keeps only capabilities whose hash verifies, so a
    # presence with the right one (what a client does when its features change)
    await c.plugin["xep_0115"].update_caps()
    return c


async def test_hongyan_and_ejabberd(tmp_path: Path,
                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="hongyan")
    dnsserver.require()
    ejabberd.require()
    netns.require()
    ca = TestCA(tmp_path / "ca")
    h_cert, h_key = ca.issue(H)
    e_cert, e_key = ca.issue(E)
    host = netns.NetNs("hy-ej", H_ADDR, E_ADDR)
    dns = dnsserver.DnsServer(tmp_path, DNS_ADDR, 53, ["lan"], [
        ("a", H, H_ADDR), ("a", f"conference.{H}", H_ADDR), ("a", f"pubsub.{H}", H_ADDR),
        ("a", E, E_ADDR), ("a", f"conference.{E}", E_ADDR),
        ("srv", f"_xmpp-server._tcp.{H}", H, 5269), ("srv", f"_xmpp-server._tcp.{E}", E, 5269),
    ])
    await dns.start()
    e_c2s = free_port()
    peer = ejabberd.Ejabberd(E, E_ADDR, e_c2s, DNS_ADDR, e_cert, e_key, ca.ca_file,
                             dialback=False, netns=host)
    (tmp_path / "h").mkdir()
    h = Harness(tmp_path / "h", f"sqlite:///{tmp_path / 'h' / 'h.db'}", H)
    h.s2s_extra = (f'enabled = true\nbind = ["{H_ADDR}"]\nport = 5269\n'
                   f'resolver = "{DNS_ADDR}"\nca_file = "{ca.ca_file}"\n'
                   "require_valid_certificates = true\n")
    try:
        await peer.start()
        await peer.register("erin", PASSWORD)
        await h.start(extra=f'[tls]\ncert_file = "{h_cert}"\nkey_file = "{h_key}"\n')
        alice = manual(await h.logged_in("alice", plugins=PLUGINS))
        erin = manual(Client(f"erin@{E}/phone", PASSWORD, PLUGINS))
        h.clients.append(erin)
        assert await erin.login(e_c2s, host=E_ADDR), "erin could not log in to ejabberd"

        # chat, both ways
        alice.send_message(mto=f"erin@{E}", mbody="hello ejabberd", mtype="chat")
        got = await erin.next_message(timeout=20)
        assert got["body"] == "hello ejabberd" and got["from"].full == f"alice@{H}/test"
        erin.send_message(mto=f"alice@{H}/test", mbody="hello Hongyan", mtype="chat")
        got = await alice.next_message(timeout=20)
        assert got["body"] == "hello Hongyan" and got["from"].full == f"erin@{E}/phone"

        # each server checked the other's certificate (the test CA), and each stream was
        # authenticated by SASL EXTERNAL (ejabberd has no dialback to fall back on)
        assert h.node is not None and h.node.federation is not None
        out = h.node.federation.outgoing[(H, E)]
        assert out.verified and out.method == "external"
        (inc,) = [s for s in h.node.federation.incoming if (E, H) in s.domains]
        assert inc.method == "external" and inc.transport.secure
        assert inc.transport.peer_host == E_ADDR  # from ejabberd's own host

        # subscriptions both ways, and presence
        alice.send_presence(pto=f"erin@{E}", ptype="subscribe")
        await wait_presence(erin, f"alice@{H}", "subscribe", timeout=20)
        erin.send_presence(pto=f"alice@{H}", ptype="subscribed")
        await wait_presence(alice, f"erin@{E}", "subscribed", timeout=20)
        await wait_presence(alice, f"erin@{E}/phone", timeout=20)
        erin.send_presence(pto=f"alice@{H}", ptype="subscribe")
        await wait_presence(alice, f"erin@{E}", "subscribe", timeout=20)
        alice.send_presence(pto=f"erin@{E}", ptype="subscribed")
        await wait_presence(erin, f"alice@{H}/test", timeout=20)
        assert (await roster_items(alice))[f"erin@{E}"]["subscription"] == "both"
        alice.send_presence(pstatus="coffee", pshow="away")
        p = await wait_presence(erin, f"alice@{H}/test", timeout=20)
        assert p["status"] == "coffee"
        erin.send_presence(pstatus="on the bus", pshow="xa")
        p = await wait_presence(alice, f"erin@{E}/phone", timeout=20)
        assert p["status"] == "on the bus"

        # erin's avatar (XEP-0084), in her PEP on ejabberd, fetched by alice
        digest = hashlib.sha1(IMAGE).hexdigest()
        await erin.plugin["xep_0084"].publish_avatar(IMAGE)
        await erin.plugin["xep_0084"].publish_avatar_metadata(
            [{"id": digest, "type": "image/png", "bytes": len(IMAGE)}])
        res = await alice.plugin["xep_0084"].retrieve_avatar(f"erin@{E}", digest, timeout=20)
        data = res.xml.find(f".//{{{PUBSUB}}}item/{{{AVATAR_DATA}}}data")
        assert data is not None and base64.b64decode(data.text) == IMAGE

        # and alice's, in Hongyan's PEP: her metadata reaches erin's client as a notification
        # (her capabilities ask for it), and erin fetches the data (presence access: a contact)
        erin_events = Events(erin)
        digest2 = hashlib.sha1(IMAGE_2).hexdigest()
        await alice.plugin["xep_0084"].publish_avatar(IMAGE_2)
        await alice.plugin["xep_0084"].publish_avatar_metadata(
            [{"id": digest2, "type": "image/png", "bytes": len(IMAGE_2)}])
        for _ in range(10):
            ev = await erin_events.next(20)
            info = ev.find(f".//{{{EVENT}}}items/{{{EVENT}}}item/{{{AVATAR_META}}}metadata/"
                           f"{{{AVATAR_META}}}info")
            if info is not None and ev.get("from") == f"alice@{H}":
                break
        assert info is not None and info.get("id") == digest2
        res = await erin.plugin["xep_0084"].retrieve_avatar(f"alice@{H}", digest2, timeout=20)
        data = res.xml.find(f".//{{{PUBSUB}}}item/{{{AVATAR_DATA}}}data")
        assert data is not None and base64.b64decode(data.text) == IMAGE_2

        # OMEMO: each user's OMEMO device learns the other's from PEP, across s2s; erin's
        # message is encrypted for alice's device, alice's answer for erin's
        a_dev = await omemo_client(f"alice@{H}/omemo", h.port, "127.0.0.1",
                                   tmp_path / "alice.json", h)
        e_dev = await omemo_client(f"erin@{E}/omemo", e_c2s, E_ADDR, tmp_path / "erin.json", h)
        await omemo.devices(e_dev, f"alice@{H}", 1)
        await omemo.devices(a_dev, f"erin@{E}", 1)
        await omemo.send_encrypted(e_dev, f"alice@{H}", SECRET)
        assert await omemo.receive_decrypted(a_dev, 20) == SECRET
        await omemo.send_encrypted(a_dev, f"erin@{E}", "and " + SECRET)
        assert await omemo.receive_decrypted(e_dev, 20) == "and " + SECRET

        # a Hongyan user in an ejabberd room (ejabberd locks a new room until its owner
        # configures it: erin takes the default configuration)
        eroom, hroom = f"lounge@conference.{E}", f"garden@conference.{H}"
        await _join(erin, eroom, "Erin")
        await raw_iq(erin, "<query xmlns='http://jabber.org/protocol/muc#owner'>"
                     "<x xmlns='jabber:x:data' type='submit'/></query>", "set", eroom)
        await _join(alice, eroom, "Alice")
        erin.send_message(mto=eroom, mbody="welcome Alice", mtype="groupchat")
        await _groupchat(alice, eroom, "welcome Alice", 20)
        alice.send_message(mto=eroom, mbody="thanks Erin", mtype="groupchat")
        await _groupchat(erin, eroom, "thanks Erin", 20)

        # an ejabberd user in a Hongyan room
        await _join(alice, hroom, "Alice")
        await raw_iq(alice, "<query xmlns='http://jabber.org/protocol/muc#owner'>"
                     "<x xmlns='jabber:x:data' type='submit'/></query>", "set", hroom)
        await _join(erin, hroom, "Erin")
        alice.send_message(mto=hroom, mbody="welcome Erin", mtype="groupchat")
        await _groupchat(erin, hroom, "welcome Erin", 20)
        erin.send_message(mto=hroom, mbody="nice garden", mtype="groupchat")
        await _groupchat(alice, hroom, "nice garden", 20)

        # the streams from the rooms' domains were certified too
        assert h.node.federation.outgoing[(f"conference.{H}", E)].method == "external"
        assert h.node.federation.outgoing[(H, f"conference.{E}")].method == "external"
        # and ejabberd says the same of each direction between the two servers' domains (its
        # log is written in the background: looked at until every line is there, or 10 s).
        # The rooms' domains' streams are checked on Hongyan's side above only: one CI run
        # found two of ejabberd's lines for them missing after 10 s while both rooms had
        # worked and nothing in its log was dialback
        wanted = [f"Accepted inbound s2s EXTERNAL authentication {H} -> {E} ",
                  f"Accepted outbound s2s EXTERNAL authentication {E} -> {H} "]
        for _ in range(100):
            logged = peer.log_text()
            if all(w in logged for w in wanted):
                break
            await asyncio.sleep(0.1)
        assert [w for w in wanted if w not in logged] == []
        assert "db:result" not in logged and "db:verify" not in logged  # (no dialback)
        # both found each other through the DNS server's SRV records
        queries = (tmp_path / "dnsmasq.log").read_text()
        assert f"query[SRV] _xmpp-server._tcp.{H}" in queries
        assert f"query[SRV] _xmpp-server._tcp.{E}" in queries
    except BaseException:
        print("--- ejabberd log ---\n" + peer.tail(150))
        raise
    finally:
        await h.stop_node()
        peer.stop()
        peer.remove(keep_log=tmp_path / "ejabberd.log")
        host.close()
        dns.stop()
