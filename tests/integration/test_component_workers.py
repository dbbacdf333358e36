"""External components on a node of two worker processes (``hongyan serve``, workers = 2).

A component lives on the home worker of its domain; which worker accepts its connection is the
kernel's choice, so each test connects several times, for two components homed on different
workers, with users homed on both: whichever way it came in, it must see one server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from slixmpp.exceptions import IqError

from hongyan.cluster.workers import home_of
from tests.integration.clients import Client
from tests.integration.components import SECRET, Component, components_config
from tests.integration.rawstream import RawStream
from tests.integration.test_component import HEADER, handshake, stream_error
from tests.integration.test_process import free_port
from tests.integration.test_workers import A0, A1, Node, serving

#: two components, homed on worker 1 and on worker 0 (checked below)
C1, C0 = "comp.localhost", "gw.localhost"


def test_the_components_have_the_homes_the_tests_assume() -> None:
    assert [home_of("service:" + c, 2) for c in (C1, C0)] == [1, 0]


class ComponentNode(Node):
    def __init__(self, config: Path) -> None:
        super().__init__(config)
        text = config.read_text()
        self.component_port = int(text.split("[component_listener]")[1]
                                  .split("\nport = ")[1].split("\n")[0])

    async def component(self, name: str) -> Component:
        c = Component(name, SECRET)
        assert await c.start(self.component_port), f"{name} was not accepted"
        return c


@pytest.fixture
async def node(tmp_path: Path, storage_url: str) -> AsyncIterator[ComponentNode]:
    extra = components_config(free_port(), (C1, SECRET), (C0, SECRET))
    async with serving(tmp_path, storage_url, extra, ComponentNode) as n:
        assert isinstance(n, ComponentNode)
        yield n


async def disco_items(client: Client) -> set[str]:
    iq = client.make_iq_get(queryxmlns="http://jabber.org/protocol/disco#items",
                            ito="localhost")
    res = await iq.send(timeout=10)
    return {str(i[0]) for i in res["disco_items"]["items"]}


async def test_components_serve_users_of_both_homes_whichever_worker_accepts(
        node: ComponentNode) -> None:
    a0 = await node.login(A0, "a")
    a1 = await node.login(A1, "b")
    for round_ in range(4):
        for name in (C1, C0):
            comp = await node.component(name)
            for user in (a0, a1):
                for _ in range(20):
                    if name in await disco_items(user):
                        break
                    await asyncio.sleep(0.05)
                assert name in await disco_items(user)
                for i in range(5):
                    user.send_message(mto=f"x@{name}", mbody=f"{round_} {i}", mtype="chat")
                got = [(await comp.next_message())["body"] for _ in range(5)]
                assert got == [f"{round_} {i}" for i in range(5)]
                comp.send_message(mto=str(user.boundjid), mfrom=f"x@{name}/r",
                                  mbody="back", mtype="chat")
                m = await user.next_message()
                assert (m["body"], str(m["from"])) == ("back", f"x@{name}/r")
                # IQ both ways
                iq = user.make_iq_get(queryxmlns="http://jabber.org/protocol/disco#info",
                                      ito=name)
                assert (await iq.send(timeout=10))["type"] == "result"
                ping = comp.make_iq_get(ito=str(user.boundjid), ifrom=name)
                ping.enable("ping")
                assert (await comp.request(ping))["type"] == "result"
            await comp.close()
            for user in (a0, a1):
                for _ in range(40):
                    if name not in await disco_items(user):
                        break
                    await asyncio.sleep(0.05)
                assert name not in await disco_items(user)
                iq = user.make_iq_get(queryxmlns="http://jabber.org/protocol/disco#info",
                                      ito=name)
                with pytest.raises(IqError) as exc:
                    await iq.send(timeout=10)
                assert exc.value.iq["error"]["condition"] == "service-unavailable"


async def raw(node: ComponentNode, name: str) -> tuple[RawStream, str]:
    s = await RawStream.open(node.component_port)
    s.send(HEADER.format(to=name))
    await s.read_until(b"id='")
    sid = (await s.read_until(b"'"))[:-1].decode()
    assert (await s.read_until(b">")).endswith(b" from='" + name.encode() + b"'>")
    return s, sid


async def test_refusals_whichever_worker_accepts(node: ComponentNode) -> None:
    for name in (C1, C0):
        first = await node.component(name)
        for _ in range(4):
            # a second connection, moved to the home or not, meets the first one there
            s, sid = await raw(node, name)
            s.send(handshake(sid))
            assert stream_error(await s.read_to_close()) == "conflict"
            s.close()
            s, sid = await raw(node, name)
            s.send(handshake(sid, "wrong"))
            assert stream_error(await s.read_to_close()) == "not-authorized"
            s.close()
            s = await RawStream.open(node.component_port)
            s.send(HEADER.format(to=name) + f"<message from='x@{name}' to='{A0}@localhost'/>")
            assert stream_error(await s.read_to_close()) == "not-authorized"
            s.close()
            s = await RawStream.open(node.component_port)
            s.send(HEADER.format(to="unknown.localhost"))
            assert stream_error(await s.read_to_close()) == "host-unknown"
            s.close()
        await first.close()
        await asyncio.sleep(0.1)
        for _ in range(4):
            s, sid = await raw(node, name)
            s.send(handshake(sid))
            await s.read_until(b"<handshake/>")
            s.send(f"<message from='x@other.localhost' to='{A1}@localhost'/>")
            assert stream_error(await s.read_to_close()) == "invalid-from"
            s.close()
            await asyncio.sleep(0.1)
