"""Federation with workers on (``[server] workers = 2``, ``hongyan serve``): a remote
server's stanzas reach accounts homed on either worker, and theirs leave through the worker
that keeps the remote domain's stream."""

from __future__ import annotations

from pathlib import Path

from tests.integration.conftest import Harness
from tests.integration.federation import B, free_port
from tests.integration.pepkit import PLUGINS as PEP_PLUGINS
from tests.integration.pepkit import pep_client, raw
from tests.integration.test_im import manual, subscribe_both, wait_presence
from tests.integration.test_mam import bodies, query
from tests.integration.test_s2s_users import AXOLOTL, DEVICELIST, devicelist, next_event
from tests.integration.test_workers import A0, A1, serving


async def test_chat_and_presence_with_workers(tmp_path: Path, storage_url: str) -> None:
    w_port, b_port = free_port(), free_port()
    routes = f'routes = {{ "{B}" = "127.0.0.1:{b_port}" }}'
    extra = f'[s2s]\nenabled = true\nbind = ["127.0.0.1"]\nport = {w_port}\n{routes}\n'
    (tmp_path / "w").mkdir()
    (tmp_path / "b").mkdir()
    b = Harness(tmp_path / "b", f"sqlite:///{tmp_path / 'b' / 'h.db'}", B)
    b.s2s_extra = (f'enabled = true\nbind = ["127.0.0.1"]\nport = {b_port}\n'
                   f'routes = {{ "localhost" = "127.0.0.1:{w_port}" }}\n')
    await b.start()
    try:
        async with serving(tmp_path / "w", storage_url, extra=extra) as node:
            zoe = manual(await b.logged_in("zoe"))
            users = {u: manual(await node.login(u)) for u in (A0, A1)}
            for u, c in users.items():
                c.send_message(mto=f"zoe@{B}", mbody=f"from {u}", mtype="chat")
            got = {(await zoe.next_message())["body"] for _ in users}
            assert got == {f"from {u}" for u in users}
            for u, c in users.items():
                zoe.send_message(mto=f"{u}@localhost/r", mbody=f"to {u}", mtype="chat")
                assert (await c.next_message())["body"] == f"to {u}"
            # a subscription from the account homed on worker 1, and presence back
            users[A1].send_presence(pto=f"zoe@{B}", ptype="subscribe")
            await wait_presence(zoe, f"{A1}@localhost", "subscribe")
            zoe.send_presence(pto=f"{A1}@localhost", ptype="subscribed")
            await wait_presence(users[A1], f"zoe@{B}", "subscribed")
            await wait_presence(users[A1], f"zoe@{B}/test")
    finally:
        await b.stop_node()


async def test_pep_and_archive_with_a_remote_contact_and_workers(tmp_path: Path,
                                                                 storage_url: str) -> None:
    """The PEP service of an account homed on either worker notifies a remote contact that
    asked by caps (the caps query crosses s2s from that worker); a message to the remote
    contact is in the sender's archive on whichever worker it was sent."""
    w_port, b_port = free_port(), free_port()
    routes = f'routes = {{ "{B}" = "127.0.0.1:{b_port}" }}'
    extra = f'[s2s]\nenabled = true\nbind = ["127.0.0.1"]\nport = {w_port}\n{routes}\n'
    (tmp_path / "w").mkdir()
    (tmp_path / "b").mkdir()
    b = Harness(tmp_path / "b", f"sqlite:///{tmp_path / 'b' / 'h.db'}", B)
    b.s2s_extra = (f'enabled = true\nbind = ["127.0.0.1"]\nport = {b_port}\n'
                   f'routes = {{ "localhost" = "127.0.0.1:{w_port}" }}\n')
    await b.start()
    try:
        async with serving(tmp_path / "w", storage_url, extra=extra) as node:
            zoe, events = await pep_client(b, "zoe", (DEVICELIST,))
            manual(zoe)
            plugins = (*PEP_PLUGINS, "xep_0313", "xep_0059")
            users = {u: manual(await node.login(u, plugins=plugins)) for u in (A0, A1)}
            for c in users.values():
                await subscribe_both(c, zoe)
            for i, (u, c) in enumerate(users.items()):
                res = await raw(c, None, devicelist(100 + i), "set")
                assert res["type"] == "result", res
                el = await next_event(events, DEVICELIST)
                assert el.get("from") == f"{u}@localhost"
                assert {d.get("id") for d in el.iter(f"{{{AXOLOTL}}}device")} == {str(100 + i)}
            for u, c in users.items():
                c.send_message(mto=f"zoe@{B}", mbody=f"kept by {u}", mtype="chat")
                assert (await zoe.next_message())["body"] == f"kept by {u}"
                _res, results = await query(c)
                assert bodies(results) == [f"kept by {u}"]
    finally:
        await b.stop_node()
