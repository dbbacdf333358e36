"""IRC with two workers (``hongyan serve``, processes): a connection accepted by the worker
that is not its account's home is relayed there after the login, over TCP and TLS."""

from __future__ import annotations

from pathlib import Path

from tests.integration.ircclient import IrcClient
from tests.integration.test_process import PW, free_port
from tests.integration.test_workers import A0, A1, serving


async def test_irc_users_of_both_homes_chat_whatever_worker_accepts(
        tmp_path: Path, storage_url: str) -> None:
    port, tls_port = free_port(), free_port()
    extra = f"""
[irc]
enabled = true
bind = ["127.0.0.1"]
port = {port}
tls_port = {tls_port}
allow_plaintext_auth = true
lines_burst = 200
"""
    clients: list[IrcClient] = []
    async with serving(tmp_path, storage_url, extra=extra) as node:
        try:
            xmpp = {A0: await node.login(A0, "x"), A1: await node.login(A1, "x")}
            # several connections each: the workers share the listening sockets, so some
            # land on the home and some on the other worker
            for i in range(4):
                for user, other in ((A0, A1), (A1, A0)):
                    c = IrcClient()
                    clients.append(c)
                    if i % 2:
                        await c.login_sasl(tls_port, user, PW, tls=True)
                    else:
                        await c.login_pass(port, user, PW)
                    c.send(f"PRIVMSG {other} :from irc {user} {i}")
                    msg = await xmpp[other].next_message()
                    assert msg["body"] == f"from irc {user} {i}"
                    assert str(msg["from"]).startswith(f"{user}@localhost/irc-")
                    xmpp[other].send_message(mto=str(msg["from"]), mbody=f"back {i}",
                                             mtype="chat")
                    await c.expect(rf"PRIVMSG {user} :back {i}$")
                    c.send("JOIN #both")
                    await c.expect(rf" 366 {user} #both ")
            await clients[-1].close()
        finally:
            for c in clients:
                await c.close()
