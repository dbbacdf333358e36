"""Federation with a real Prosody (Debian's): its own domain (prosody.lan) and address, a
certificate from the tests' CA, DNS from a real dnsmasq. A Hongyan user (hongyan.lan) and a Prosody
user chat both ways, subscribe to each other and see each other's presence; the Hongyan user
joins a Prosody room and the Prosody user joins a Hongyan room.

Prosody runs on a host of its own: a network namespace the test makes (``ip netns``), joined
to the test's by a veth pair: .2 on its end of a /24 of this process's (``netns.subnet``), .1
on the host's, where Hongyan listens on 5269 and the DNS server on 53 (Prosody's resolver
takes a resolv.conf, which has no port). One test function: the addresses are this process's,
so the scenario must not run twice at once in one process."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from slixmpp import JID

from tests.integration import dnsserver, netns, prosody
from tests.integration.clients import Client
from tests.integration.conftest import Harness
from tests.integration.federation import free_port
from tests.integration.rawstream import PASSWORD
from tests.integration.test_im import manual, raw_iq, roster_items, wait_presence
from tests.integration.testca import TestCA

# (not under .test: Prosody's resolver, libunbound, answers NXDOMAIN for that whole zone)
H, P = "hongyan.lan", "prosody.lan"
# Prosody's host: a network namespace, joined to the test's by a veth pair
NET = netns.subnet(0)
H_ADDR, P_ADDR = f"{NET}.1", f"{NET}.2"
DNS_ADDR = H_ADDR


async def _join(c: Client, room: str, nick: str) -> Any:
    pres, _subject, _occ, _hist = await c.plugin["xep_0045"].join_muc_wait(JID(room), nick,
                                                                         timeout=15)
    return pres


async def _groupchat(c: Client, room: str, body: str, timeout: float = 15) -> Any:
    async def loop() -> Any:
        while True:
            m = await c.messages.get()
            if m["type"] == "groupchat" and m["from"].bare == room and m["body"] == body:
                return m

    return await asyncio.wait_for(loop(), timeout)


async def test_hongyan_and_prosody(tmp_path: Path) -> None:
    dnsserver.require()
    prosody.require()
    netns.require()
    ca = TestCA(tmp_path / "ca")
    h_cert, h_key = ca.issue(H)
    p_cert, p_key = ca.issue(P)
    host = netns.NetNs("hy-pr", H_ADDR, P_ADDR)
    dns = dnsserver.DnsServer(tmp_path, DNS_ADDR, 53, ["lan"], [
        ("a", H, H_ADDR), ("a", f"conference.{H}", H_ADDR),
        ("a", P, P_ADDR), ("a", f"conference.{P}", P_ADDR),
    ])
    await dns.start()
    p_c2s = free_port()
    peer = prosody.Prosody(tmp_path / "prosody", P, P_ADDR, p_c2s, DNS_ADDR, p_cert, p_key,
                           ca.ca_file, netns=host)
    peer.add_user("pat", PASSWORD)
    (tmp_path / "h").mkdir()
    h = Harness(tmp_path / "h", f"sqlite:///{tmp_path / 'h' / 'h.db'}", H)
    h.s2s_extra = (f'enabled = true\nbind = ["{H_ADDR}"]\nport = 5269\n'
                   f'resolver = "{DNS_ADDR}"\nca_file = "{ca.ca_file}"\n')
    try:
        await peer.start()
        await h.start(extra=f'[tls]\ncert_file = "{h_cert}"\nkey_file = "{h_key}"\n')
        alice = manual(await h.logged_in("alice", plugins=("xep_0045",)))
        pat = manual(Client(f"pat@{P}/phone", PASSWORD, ("xep_0045",)))
        h.clients.append(pat)
        assert await pat.login(p_c2s, host=P_ADDR), "pat could not log in to Prosody"

        # chat, both ways
        alice.send_message(mto=f"pat@{P}", mbody="hello Prosody", mtype="chat")
        got = await pat.next_message(timeout=20)
        assert got["body"] == "hello Prosody" and got["from"].full == f"alice@{H}/test"
        pat.send_message(mto=f"alice@{H}/test", mbody="hello Hongyan", mtype="chat")
        got = await alice.next_message(timeout=20)
        assert got["body"] == "hello Hongyan" and got["from"].full == f"pat@{P}/phone"

        # Hongyan checked Prosody's certificate (the test CA) and Prosody Hongyan's: SASL
        # EXTERNAL (XEP-0178) authenticated Hongyan's stream; Prosody's used dialback
        assert h.node is not None and h.node.federation is not None
        out = h.node.federation.outgoing[(H, P)]
        assert out.verified and out.method == "external"
        (inc,) = [s for s in h.node.federation.incoming if (P, H) in s.domains]
        assert inc.method == "dialback" and inc.transport.secure
        assert inc.transport.peer_host == P_ADDR  # from Prosody's own host

        # subscriptions both ways, and presence
        alice.send_presence(pto=f"pat@{P}", ptype="subscribe")
        await wait_presence(pat, f"alice@{H}", "subscribe")
        pat.send_presence(pto=f"alice@{H}", ptype="subscribed")
        await wait_presence(alice, f"pat@{P}", "subscribed")
        await wait_presence(alice, f"pat@{P}/phone")
        pat.send_presence(pto=f"alice@{H}", ptype="subscribe")
        await wait_presence(alice, f"pat@{P}", "subscribe")
        alice.send_presence(pto=f"pat@{P}", ptype="subscribed")
        await wait_presence(pat, f"alice@{H}/test")
        assert (await roster_items(alice))[f"pat@{P}"]["subscription"] == "both"
        alice.send_presence(pstatus="coffee", pshow="away")
        p = await wait_presence(pat, f"alice@{H}/test")
        assert p["status"] == "coffee"
        pat.send_presence(pstatus="on the bus", pshow="xa")
        p = await wait_presence(alice, f"pat@{P}/phone")
        assert p["status"] == "on the bus"

        # a Hongyan user in a Prosody room
        proom, hroom = f"lounge@conference.{P}", f"garden@conference.{H}"
        await _join(pat, proom, "Pat")
        await _join(alice, proom, "Alice")
        pat.send_message(mto=proom, mbody="welcome Alice", mtype="groupchat")
        await _groupchat(alice, proom, "welcome Alice")
        alice.send_message(mto=proom, mbody="thanks Pat", mtype="groupchat")
        await _groupchat(pat, proom, "thanks Pat")

        # a Prosody user in a Hongyan room
        await _join(alice, hroom, "Alice")
        await raw_iq(alice, "<query xmlns='http://jabber.org/protocol/muc#owner'>"
                     "<x xmlns='jabber:x:data' type='submit'/></query>", "set", hroom)
        await _join(pat, hroom, "Pat")
        alice.send_message(mto=hroom, mbody="welcome Pat", mtype="groupchat")
        await _groupchat(pat, hroom, "welcome Pat")
        pat.send_message(mto=hroom, mbody="nice garden", mtype="groupchat")
        await _groupchat(alice, hroom, "nice garden")
    except BaseException:
        print("--- prosody log ---\n" + peer.tail(80))
        raise
    finally:
        await h.stop_node()
        peer.stop()
        dns.stop()
        host.close()


