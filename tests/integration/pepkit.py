"""Helpers for the PEP/PubSub tests: slixmpp clients with the pubsub plugins, raw requests,
error reading, and roster set-up."""

from __future__ import annotations

import asyncio
from typing import Any

from slixmpp.plugins.xep_0004 import Form
from slixmpp.xmlstream import ET
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from hongyan.modules.roster import Roster, RosterItem
from tests.integration.clients import Client
from tests.integration.conftest import Harness

PUBSUB = "http://jabber.org/protocol/pubsub"
EVENT = PUBSUB + "#event"
ERRORS = PUBSUB + "#errors"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
TUNE = "http://jabber.org/protocol/tune"
MOOD = "http://jabber.org/protocol/mood"
PLUGINS = ("xep_0004", "xep_0060", "xep_0115", "xep_0163")


def tune(title: str) -> Any:
    el = ET.Element(f"{{{TUNE}}}tune")
    ET.SubElement(el, f"{{{TUNE}}}title").text = title
    return el


def options(fields: dict[str, str], form_type: str = PUBSUB + "#publish-options") -> Form:
    form = Form()
    form["type"] = "submit"
    form.add_field(var="FORM_TYPE", ftype="hidden", value=form_type)
    for k, v in fields.items():
        form.add_field(var=k, value=v)
    return form


async def befriend(h: Harness, a: str, b: str) -> None:
    """Mutual presence subscription, set up on the server (not what these tests test)."""
    assert h.node is not None
    roster = h.node.modules["roster"]
    assert isinstance(roster, Roster)
    for x, y in ((a, b), (b, a)):
        await roster.change(x, f"{y}@localhost",
                            lambda _c, y=y: RosterItem(f"{y}@localhost", subscription="both"))


class Events:
    """Every pubsub event message a client receives, as raw XML."""

    def __init__(self, c: Client) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        c.register_handler(Callback("pep-events", MatchXPath(f"{{jabber:client}}message/"
                                                             f"{{{EVENT}}}event"),
                                    lambda m: self.queue.put_nowait(m.xml)))

    async def next(self, timeout: float = 10) -> Any:
        return await asyncio.wait_for(self.queue.get(), timeout)

    async def none(self, wait: float = 0.5) -> None:
        try:
            el = await asyncio.wait_for(self.queue.get(), wait)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected event {ET.tostring(el)!r}")


async def pep_client(h: Harness, name: str, interests: tuple[str, ...] = (),
                     resource: str = "test", create: bool = True,
                     plugins: tuple[str, ...] = ()) -> tuple[Client, Events]:
    jid = await h.user(name) if create else f"{name}@{h.domain}"
    c = await h.client(f"{jid}/{resource}", login=False, plugins=PLUGINS + plugins)
    events = Events(c)
    for ns in interests:
        c.plugin["xep_0163"].add_interest(ns)
    if interests:  # the hash slixmpp's initial presence carries
        await c.plugin["xep_0115"].update_caps(broadcast=False)
    assert await c.login(h.port)
    return c, events


def error_of(iq: Any) -> tuple[str, str | None, str]:
    """(condition, pubsub#errors condition, text) of an error IQ."""
    err = iq.xml.find("{jabber:client}error")
    assert err is not None, ET.tostring(iq.xml)
    cond = next(c.tag.split("}")[1] for c in err if c.tag.startswith(f"{{{STANZAS}}}")
                and not c.tag.endswith("}text"))
    app = next((c.tag.split("}")[1] for c in err if c.tag.startswith(f"{{{ERRORS}}}")), None)
    text = err.findtext(f"{{{STANZAS}}}text") or ""
    return cond, app, text


async def raw(c: Client, to: str | None, payload: str, itype: str = "get") -> Any:
    iq = c.make_iq_set() if itype == "set" else c.make_iq_get()
    if to:
        iq["to"] = to
    return await c.send_raw_iq(iq, payload, 10)


def item_ids(iq: Any) -> list[str]:
    return [i.get("id") for i in iq.xml.iter(f"{{{PUBSUB}}}item")]


async def caps_known(h: Harness, *jids: str) -> None:
    """Wait until the server knows what each of these sessions asked for (+notify): it asks
    the client about an unknown capabilities hash in the background."""
    from hongyan.xmpp.jid import JID

    assert h.node is not None
    for _ in range(200):
        sessions = [h.node.sessions.get(JID.parse(j)) for j in jids]
        if all(s is not None and s.data and s.data.get("pep.notify") for s in sessions):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the server never learned the capabilities of {jids}")
