"""PEP (XEP-0163) across the federation, between two Hongyan nodes: a contact at another
server whose entity capabilities ask for a node gets the user's last item when it comes
online and each new one as it is published, and nothing once it is gone (the same path a
contact at ejabberd takes for OMEMO device lists, test_s2s_ejabberd.py)."""

from __future__ import annotations

import asyncio

import pytest

from hongyan.modules.pep import Pep
from hongyan.modules.roster import Roster, RosterItem
from hongyan.server.hooks import PresenceInbound
from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element
from hongyan.xmpp.jid import JID
from tests.integration.clients import Client
from tests.integration.conftest import Harness
from tests.integration.federation import A, B, Pair, pair
from tests.integration.pepkit import EVENT, PLUGINS, TUNE, Events, tune

__all__ = ["pair"]


async def friends(h: Harness, user: str, contact: str) -> None:
    assert h.node is not None
    roster = h.node.modules["roster"]
    assert isinstance(roster, Roster)
    await roster.change(user, contact, lambda _c: RosterItem(contact, subscription="both"))


async def listener(h: Harness, jid: str) -> tuple[Client, Events]:
    c = await h.client(jid, login=False, plugins=PLUGINS)
    events = Events(c)
    c.plugin["xep_0163"].add_interest(TUNE)
    await c.plugin["xep_0115"].update_caps(broadcast=False)
    assert await c.login(h.port)
    return c, events


def title(ev: object) -> str | None:
    el = ev.find(f".//{{{EVENT}}}item/{{{TUNE}}}tune/{{{TUNE}}}title")  # type: ignore[attr-defined]
    return None if el is None else str(el.text)


async def test_remote_contact_gets_last_item_and_notifications(pair: Pair) -> None:
    await pair.a.user("alice")
    await pair.b.user("bob")
    await friends(pair.a, "alice", f"bob@{B}")
    await friends(pair.b, "bob", f"alice@{A}")
    alice = await pair.a.client(f"alice@{A}/test", plugins=PLUGINS)
    await alice.plugin["xep_0060"].publish(None, TUNE, id="t1", payload=tune("first song"))

    # bob comes online: his server tells alice's, whose PEP asks bob's client what its
    # capabilities hash stands for and sends alice's last tune
    bob, events = await listener(pair.b, f"bob@{B}/phone")
    assert title(await events.next(15)) == "first song"

    # a new item reaches him as it is published
    await alice.plugin["xep_0060"].publish(None, TUNE, id="t2", payload=tune("second song"))
    assert title(await events.next(15)) == "second song"

    # gone: a.test forgets his resource and sends him nothing more
    assert pair.a.node is not None
    pep = pair.a.node.modules["pep"]
    assert isinstance(pep, Pep)
    assert f"bob@{B}/phone" in pep.remote.get(f"bob@{B}", {})
    await bob.close()
    for _ in range(100):
        if not pep.remote:
            break
        await asyncio.sleep(0.05)
    assert not pep.remote


async def test_remote_resources_kept_are_bounded(pair: Pair, monkeypatch: pytest.MonkeyPatch
                                                 ) -> None:
    """Past MAX_REMOTE remembered resources the oldest goes first; unavailable forgets."""
    import hongyan.modules.pep as pep_module

    assert pair.a.node is not None
    pep = pair.a.node.modules["pep"]
    assert isinstance(pep, Pep)
    monkeypatch.setattr(pep_module, "MAX_REMOTE", 2)
    pep.caps["sha-1 k"] = frozenset({TUNE})
    alice = JID.parse(f"alice@{A}")

    def presence(full: str, ptype: str | None = None) -> PresenceInbound:
        stanza = Element("presence", attrs={"from": full, "to": alice.text})
        if ptype is None:
            stanza.add("c", NS.CAPS, attrs={"hash": "sha-1", "ver": "k", "node": "n"})
        else:
            stanza.attrs["type"] = ptype
        return PresenceInbound(stanza, JID.parse(full), alice)

    for full in (f"x@{B}/1", f"x@{B}/2", f"y@{B}/1"):
        pep.on_remote_presence(presence(full))
    assert {b: sorted(r) for b, r in pep.remote.items()} == {f"x@{B}": [f"x@{B}/2"],
                                                             f"y@{B}": [f"y@{B}/1"]}
    assert pep._remote_count == 2
    pep.on_remote_presence(presence(f"y@{B}/1", "unavailable"))
    pep.on_remote_presence(presence(f"x@{B}/2", "unavailable"))
    assert pep.remote == {} and pep._remote_count == 0
