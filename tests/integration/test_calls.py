"""One-to-one calls through the server: Jingle Message Initiation (XEP-0353) messages and the
Jingle session IQs (XEP-0166, RTP XEP-0167, ICE-UDP XEP-0176) between slixmpp clients, each
user with several devices (resources, carbons enabled, XEP-0280), the archive and offline
storage of a call invitation, and a push notification (XEP-0357) when the callee's only device
is a phone whose XEP-0198 session is hibernated. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from typing import Any

from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from hongyan.xmpp.jid import JID
from tests.integration.clients import TIMEOUT
from tests.integration.conftest import Harness
from tests.integration.rawstream import authed_stream
from tests.integration.test_carbons import CARBONS, Device, device, forwarded
from tests.integration.test_mam import query
from tests.integration.test_push import app_server, enable_xml
from tests.integration.test_sm import SM, authed_only, cut, enable
from tests.integration.waiting import until

JMI = "urn:xmpp:jingle-message:0"
JINGLE = "urn:xmpp:jingle:1"
RTP = "urn:xmpp:jingle:apps:rtp:1"
ICE = "urn:xmpp:jingle:transports:ice-udp:1"
HINTS = "urn:xmpp:hints"
C = "{jabber:client}"
ROMEO = "romeo@localhost"
JULIET = "juliet@localhost"

PROPOSE = (f"<propose xmlns='{JMI}' id='{{sid}}'><description xmlns='{RTP}' media='audio'/>"
           f"</propose><store xmlns='{HINTS}'/>")


def jmi(el: ET.Element, action: str) -> ET.Element | None:
    return el.find(f"{{{JMI}}}{action}")


def session_initiate(sid: str, initiator: str) -> str:
    """A Jingle session-initiate for an audio call (RTP with Opus) over ICE-UDP with a host
    and a relay candidate (the relay one from a TURN server, as XEP-0215 announced it)."""
    return (
        f"<jingle xmlns='{JINGLE}' action='session-initiate' initiator='{initiator}' "
        f"sid='{sid}'><content creator='initiator' name='voice'>"
        f"<description xmlns='{RTP}' media='audio'>"
        "<payload-type id='111' name='opus' clockrate='48000' channels='2'/></description>"
        f"<transport xmlns='{ICE}' pwd='asd88fgpdd777uzjYhagZg' ufrag='8hhy'>"
        "<candidate component='1' foundation='1' generation='0' id='el0747fg11' "
        "ip='10.0.1.1' network='1' port='8998' priority='2130706431' protocol='udp' "
        "type='host'/>"
        "<candidate component='1' foundation='3' generation='0' id='y3s2b30v3r' "
        "ip='192.0.2.3' network='1' port='45664' priority='16777215' protocol='udp' "
        "rel-addr='10.0.1.1' rel-port='8998' type='relay'/>"
        "</transport></content></jingle>")


class Phone:
    """A device that answers Jingle IQs the way a call app does: a result for each, and a
    record of what came."""

    def __init__(self, dev: Device) -> None:
        self.dev = dev
        self.jingle: asyncio.Queue[ET.Element] = asyncio.Queue()
        dev.client.register_handler(Callback(
            f"jingle {dev.jid}", MatchXPath(f"{C}iq/{{{JINGLE}}}jingle"), self._on_jingle))

    def _on_jingle(self, iq: Any) -> None:
        el: ET.Element = iq.xml
        self.jingle.put_nowait(el)
        if el.get("type") == "set":
            self.dev.client.send_raw(f"<iq type='result' id='{el.get('id')}' "
                                     f"to='{el.get('from')}'/>")

    async def next_jingle(self) -> ET.Element:
        return await asyncio.wait_for(self.jingle.get(), TIMEOUT)

    async def jingle_iq(self, to: str, payload: str) -> ET.Element:
        c = self.dev.client
        answer = await c.send_raw_iq(c.make_iq_set(ito=to), payload, TIMEOUT)
        return answer.xml  # type: ignore[no-any-return]


async def jmi_message(dev: Device, action: str) -> ET.Element:
    """The next message this device gets that carries a JMI ``action``, directly or as a
    carbon (other messages are skipped)."""
    for _ in range(20):
        el = await dev.next()
        if jmi(el, action) is not None:
            return el
        for kind in ("sent", "received"):
            if el.find(f"{{{CARBONS}}}{kind}") is not None and \
                    jmi(forwarded(el, kind), action) is not None:
                return el
    raise AssertionError(f"no {action} for {dev.jid}")


async def two_by_two(h: Harness) -> tuple[Device, Device, Device, Device]:
    """Romeo on a laptop and a phone, Juliet on a desktop and a phone: all with carbons."""
    await h.user("romeo")
    await h.user("juliet")
    return (await device(h, "romeo", "laptop"), await device(h, "romeo", "phone"),
            await device(h, "juliet", "desktop"), await device(h, "juliet", "mobile"))


async def test_a_call_rings_every_device_and_one_answers(harness: Harness) -> None:
    laptop, rphone, desktop, mobile = await two_by_two(harness)
    # Romeo proposes a call to Juliet's bare JID: each of her devices rings...
    laptop.send(JULIET, None, "chat", PROPOSE.format(sid="call1"))
    for dev in (desktop, mobile):
        got = await jmi_message(dev, "propose")
        assert got.get("from") == f"{ROMEO}/laptop" and got.get("to") == JULIET
        propose = jmi(got, "propose")
        assert propose is not None and propose.get("id") == "call1"
        assert propose.find(f"{{{RTP}}}description").get("media") == "audio"  # type: ignore[union-attr]
        assert got.find(f"{{{CARBONS}}}received") is None  # the message itself, not a copy
    # ...and Romeo's phone learns of the outgoing call (a sent carbon)
    carbon = await jmi_message(rphone, "propose")
    assert carbon.get("from") == ROMEO
    assert forwarded(carbon, "sent").get("to") == JULIET

    # Juliet's phone rings back, then accepts: to Romeo's laptop, with the carbons telling
    # her desktop to stop ringing and Romeo's phone that the call went elsewhere
    for action in ("ringing", "proceed"):
        mobile.send(f"{ROMEO}/laptop", None, "chat",
                    f"<{action} xmlns='{JMI}' id='call1'/><store xmlns='{HINTS}'/>")
        got = await jmi_message(laptop, action)
        assert got.get("from") == f"{JULIET}/mobile"
        sent = await jmi_message(desktop, action)
        assert forwarded(sent, "sent").get("to") == f"{ROMEO}/laptop"
        received = await jmi_message(rphone, action)
        assert forwarded(received, "received").get("from") == f"{JULIET}/mobile"
    # XEP-0353's <accept/> to her own bare JID reaches every one of her devices
    mobile.send(JULIET, None, "chat", f"<accept xmlns='{JMI}' id='call1'/>")
    for dev in (desktop, mobile):
        got = await jmi_message(dev, "accept")
        assert got.get("from") == f"{JULIET}/mobile"

    # the Jingle session goes to the full JID that accepted, and the results come back
    caller, callee = Phone(laptop), Phone(mobile)
    Phone(desktop)  # the desktop would answer too: it must not get anything
    answer = await caller.jingle_iq(f"{JULIET}/mobile", session_initiate("call1", laptop.jid))
    assert answer.get("type") == "result" and answer.get("from") == f"{JULIET}/mobile"
    init = await callee.next_jingle()
    assert init.get("from") == f"{ROMEO}/laptop"
    j = init.find(f"{{{JINGLE}}}jingle")
    assert j is not None and j.get("action") == "session-initiate" and j.get("sid") == "call1"
    cands = init.findall(f".//{{{ICE}}}candidate")
    assert [c.get("type") for c in cands] == ["host", "relay"]
    assert init.find(f".//{{{RTP}}}payload-type").get("name") == "opus"  # type: ignore[union-attr]
    answer = await callee.jingle_iq(
        f"{ROMEO}/laptop", f"<jingle xmlns='{JINGLE}' action='session-accept' "
        f"responder='{mobile.jid}' sid='call1'><content creator='initiator' name='voice'>"
        f"<description xmlns='{RTP}' media='audio'><payload-type id='111' name='opus' "
        f"clockrate='48000' channels='2'/></description><transport xmlns='{ICE}' "
        "pwd='YH75Fviy6338Vbrhrlp8Yh' ufrag='9uB6'/></content></jingle>")
    assert answer.get("type") == "result"
    accept = await caller.next_jingle()
    assert accept.find(f"{{{JINGLE}}}jingle").get("action") == "session-accept"  # type: ignore[union-attr]
    answer = await caller.jingle_iq(
        f"{JULIET}/mobile", f"<jingle xmlns='{JINGLE}' action='session-terminate' "
        f"sid='call1'><reason><success/></reason></jingle>")
    assert answer.get("type") == "result"
    await callee.next_jingle()
    assert await desktop.quiet() is None


async def test_reject_and_retract(harness: Harness) -> None:
    laptop, rphone, desktop, mobile = await two_by_two(harness)
    laptop.send(JULIET, None, "chat", PROPOSE.format(sid="c2"))
    await jmi_message(desktop, "propose")
    await jmi_message(mobile, "propose")
    desktop.send(f"{ROMEO}/laptop", None, "chat", f"<reject xmlns='{JMI}' id='c2'/>"
                 f"<store xmlns='{HINTS}'/>")
    assert (await jmi_message(laptop, "reject")).get("from") == f"{JULIET}/desktop"
    assert forwarded(await jmi_message(mobile, "reject"), "sent").get("from") == \
        f"{JULIET}/desktop"
    # a second call, hung up before anyone answers: the retract reaches every device
    laptop.send(JULIET, None, "chat", PROPOSE.format(sid="c3"))
    await jmi_message(desktop, "propose")
    await jmi_message(mobile, "propose")
    laptop.send(JULIET, None, "chat", f"<retract xmlns='{JMI}' id='c3'/>"
                f"<store xmlns='{HINTS}'/>")
    for dev in (desktop, mobile):
        assert (await jmi_message(dev, "retract")).get("from") == f"{ROMEO}/laptop"
    assert (await jmi_message(rphone, "retract")).get("from") == ROMEO


async def test_a_legacy_propose_without_type_is_copied_too(harness: Harness) -> None:
    """Clients before XEP-0353 0.4 send JMI as type normal without a body; XEP-0280 §6 counts
    Jingle Message Initiation as an IM payload, so the other devices see it anyway."""
    laptop, rphone, desktop, mobile = await two_by_two(harness)
    laptop.client.send_raw(f"<message to='{JULIET}'>{PROPOSE.format(sid='old')}</message>")
    for dev in (desktop, mobile):
        await jmi_message(dev, "propose")
    carbon = await jmi_message(rphone, "propose")
    assert forwarded(carbon, "sent").get("to") == JULIET
    mobile.client.send_raw(f"<message to='{ROMEO}/laptop'><proceed xmlns='{JMI}' id='old'/>"
                           "</message>")
    await jmi_message(laptop, "proceed")
    assert forwarded(await jmi_message(desktop, "proceed"), "sent").get("to") == \
        f"{ROMEO}/laptop"
    assert forwarded(await jmi_message(rphone, "proceed"), "received").get("from") == \
        f"{JULIET}/mobile"


async def test_a_missed_call_is_archived_and_kept_offline(harness: Harness) -> None:
    await harness.user("romeo")
    await harness.user("juliet")
    laptop = await device(harness, "romeo", "laptop")
    # Juliet is offline: the invitation waits for her, and both archives keep it
    laptop.send(JULIET, None, "chat", PROPOSE.format(sid="missed"))
    laptop.send(JULIET, None, "chat", f"<retract xmlns='{JMI}' id='missed'/>"
                f"<store xmlns='{HINTS}'/>")
    assert await laptop.quiet() is None  # handled, nothing bounced
    c = await harness.client(f"{JULIET}/mobile", presence=False)
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    c.register_handler(Callback("all messages", MatchXPath(C + "message"), inbox.put_nowait))
    c.send_presence()  # the initial presence brings what waited offline
    juliet = Device(c, inbox, f"{JULIET}/mobile")
    got = await jmi_message(juliet, "propose")
    assert got.find("{urn:xmpp:delay}delay") is not None
    assert (await jmi_message(juliet, "retract")) is not None
    for client in (juliet.client, laptop.client):
        res, results = await query(client)
        assert res["type"] == "result"
        actions = [next((c.tag.split("}")[1] for c in m.iter() if c.tag.startswith(
            f"{{{JMI}}}")), None) for m in results]
        # (Romeo's archive also has the markers his device sent itself)
        assert [a for a in actions if a] == ["propose", "retract"], \
            [ET.tostring(m) for m in results]


async def test_a_call_to_a_sleeping_phone_pushes(harness: Harness) -> None:
    """Juliet's only device is a phone whose connection dropped; its XEP-0198 session waits
    for it, and push is enabled: Romeo's call invitation wakes it through the app server, and
    the phone, resuming, gets the invitation."""
    app = await app_server(harness)
    s = await authed_stream(harness, "juliet")
    sid = await enable(s)
    s.send(f"<iq type='set' id='e1'>{enable_xml(node='julphone')}</iq>")
    assert b"type='result'" in await s.read_element(b"id='e1'")
    s.send("<presence/>")
    cut(s)
    assert harness.node is not None
    node = harness.node
    await until(lambda: any(x.sm is not None and x.sm.timer is not None
                            for x in node.sessions.resources(JID.parse(JULIET))))
    await harness.user("romeo")
    laptop = await device(harness, "romeo", "laptop")
    laptop.send(JULIET, None, "chat", PROPOSE.format(sid="wake"))
    n = await app.next()
    assert n.node == "julphone" and n.summary is not None
    assert n.summary["last-message-sender"] == f"{ROMEO}/laptop"
    assert n.summary["message-count"] == "1"
    # the phone wakes, resumes, and finds the call still ringing
    s2 = await authed_only(harness, "juliet")
    s2.send(f"<resume xmlns='{SM}' previd='{sid}' h='0'/>")
    await s2.read_element(b"<resumed")
    got = await s2.read_until(b"</message>")
    assert b"<propose xmlns='urn:xmpp:jingle-message:0' id='wake'>" in got, got
    s2.send(f"<message to='{ROMEO}/laptop' type='chat'><proceed xmlns='{JMI}' id='wake'/>"
            "</message>")
    assert (await jmi_message(laptop, "proceed")).get("from") == f"{JULIET}/raw"
    s2.close()
