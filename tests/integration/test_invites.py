"""Invitations (XEP-0401, XEP-0445, XEP-0379) over real sockets, on SQLite and PostgreSQL:
an administrator's account invitation and a user's contact invitation made with ad-hoc
commands (slixmpp ``xep_0050``), redeemed by a newcomer's slixmpp client with in-band
registration while open registration is off, the XEP's errors for bad, expired, used and
revoked tokens, the inviter and the newcomer subscribed both ways (the inviter's roster push),
and an existing user's pre-authenticated subscription request."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from slixmpp.exceptions import IqError
from slixmpp.xmlstream import ET

from tests.integration.adhoc import PLUGINS, Run, error_of, field_values, run, send
from tests.integration.clients import Client
from tests.integration.conftest import Harness
from tests.integration.invites import CONFIG, PARS, register_with_token, token_of
from tests.integration.rawstream import tls_stream
from tests.integration.test_adhoc import can_login
from tests.integration.test_im import roster_push, track_pushes
from tests.integration.test_process import hongyan

CREATE = "urn:xmpp:invite#create-account"
INVITE = "urn:xmpp:invite#invite"


async def start(harness: Harness, allow_users: bool = False) -> None:
    await harness.stop_node()
    await harness.start(extra=CONFIG + f"\n[invites]\nallow_users = "
                        f"{'true' if allow_users else 'false'}\n",
                        server_extra='admins = ["admin@localhost"]')


async def admin(harness: Harness) -> Client:
    return track_pushes(await harness.logged_in("admin", plugins=PLUGINS))


async def account_invite(a: Client, username: str = "", subscribe: bool = True,
                         uses: int = 1) -> dict[str, str]:
    answer = await run(a, CREATE, {"username": username,
                                   "roster-subscription": "1" if subscribe else "0",
                                   "uses": str(uses)})
    assert answer["command"]["status"] == "completed", answer
    return {var: field_values(answer, var)[0] for var in ("uri", "landing-url", "expire")}


async def test_an_admin_invites_and_the_newcomer_registers_in_band(harness: Harness,
                                                                   caplog: Any) -> None:
    caplog.set_level(logging.DEBUG, logger="hongyan")
    await start(harness)
    a = await admin(harness)
    made = await account_invite(a)
    assert made["uri"].startswith("xmpp:localhost?register;preauth=")
    token = token_of(made["uri"])
    assert made["landing-url"].endswith(f"/invite/{token}")
    assert made["expire"].endswith("Z")
    # without the token, registration is closed (XEP-0077 §3.1: not-allowed)
    s = await tls_stream(harness)
    await s.header()
    s.send("<iq type='get' id='g1'><query xmlns='jabber:iq:register'/></iq>")
    assert b"<not-allowed" in await s.read_element(b"id='g1'")
    s.send("<iq type='set' id='r1'><query xmlns='jabber:iq:register'><username>juliet"
           "</username><password>balcony-pw</password></query></iq>")
    assert b"<not-allowed" in await s.read_element(b"id='r1'")
    s.close()
    assert await register_with_token(harness, "juliet", "balcony-pw", token) == ("ok", "")
    push = await roster_push(a)
    assert push["jid"] == "juliet@localhost" and push["subscription"] == "both"
    assert await can_login(harness, "juliet@localhost", "balcony-pw")
    juliet = await harness.client("juliet@localhost/phone", "balcony-pw")
    assert juliet.client_roster["admin@localhost"]["subscription"] == "both"
    # the single use is spent: the XEP's error at the preauth step
    assert await register_with_token(harness, "nurse", "balcony-pw", token) == \
        ("preauth", "item-not-found")
    lines = [r.getMessage() for r in caplog.records]
    assert any("registered juliet@localhost with invitation" in m for m in lines)
    assert not any(token in m for m in lines)


async def test_the_stream_features_and_the_token_errors(harness: Harness) -> None:
    await start(harness)
    a = await admin(harness)
    s = await tls_stream(harness)
    feats = await s.header()
    assert b"urn:xmpp:invite" in feats and b"urn:xmpp:ibr-token:0" in feats
    assert b"http://jabber.org/features/iq-register" in feats
    s.send(f"<iq type='set' id='p1' to='localhost'><preauth xmlns='{PARS}' token='nope'/></iq>")
    answer = await s.read_element(b"id='p1'")
    assert b"<item-not-found" in answer and b"invalid or expired" in answer
    s.close()
    # expired: checked when the token is presented
    token = token_of((await account_invite(a))["uri"])
    await harness.clock.advance(8 * 86400)
    assert await register_with_token(harness, "juliet", "balcony-pw", token) == \
        ("preauth", "item-not-found")


async def test_an_account_invitation_keeps_its_username(harness: Harness) -> None:
    await start(harness)
    a = await admin(harness)
    made = await account_invite(a, username="juliet", subscribe=False)
    assert made["uri"].startswith("xmpp:juliet@localhost?register;preauth=")
    token = token_of(made["uri"])
    assert await register_with_token(harness, "romeo", "balcony-pw", token) == \
        ("register", "not-allowed")
    assert await register_with_token(harness, "juliet", "balcony-pw", token) == ("ok", "")
    with pytest.raises(asyncio.TimeoutError):
        await roster_push(a, timeout=0.5)  # no roster-subscription asked
    # a username taken, a bad count: XEP-0050's bad-payload
    for values in ({"username": "juliet"}, {"uses": "many"}, {"uses": "0"},
                   {"username": "a@b@c"}):
        r = Run(a, CREATE)
        await r.start()
        assert error_of(await r.act("complete", values)) == ("bad-request", {"bad-payload"})


async def test_a_kept_username_is_taken_for_open_registration(harness: Harness) -> None:
    await harness.stop_node()
    await harness.start(server_extra='admins = ["admin@localhost"]')  # open on localhost
    a = await admin(harness)
    await account_invite(a, username="juliet", subscribe=False)
    s = await tls_stream(harness)
    await s.header()
    s.send("<iq type='set' id='r1'><query xmlns='jabber:iq:register'><username>juliet"
           "</username><password>balcony-pw</password></query></iq>")
    assert b"<conflict" in await s.read_element(b"id='r1'")
    s.send("<iq type='set' id='r2'><query xmlns='jabber:iq:register'><username>romeo"
           "</username><password>balcony-pw</password></query></iq>")
    assert b"type='result'" in await s.read_element(b"id='r2'")
    s.close()


async def test_counted_uses_and_revocation_with_the_cli(harness: Harness) -> None:
    await start(harness)
    cfg = harness.tmp_path / "hongyan.toml"
    r = hongyan("invite", "create", "--uses", "2", "--ttl", "1d", config=cfg)
    assert r.returncode == 0, r.stderr
    uri = r.stdout.splitlines()[0]
    token = token_of(uri)
    assert "shown only now" in r.stderr and token not in r.stderr
    for name in ("juliet", "nurse"):
        assert await register_with_token(harness, name, "balcony-pw", token) == ("ok", "")
    assert await register_with_token(harness, "tybalt", "balcony-pw", token) == \
        ("preauth", "item-not-found")
    r = hongyan("invite", "create", config=cfg)
    other = token_of(r.stdout.splitlines()[0])
    listed = hongyan("invite", "list", config=cfg).stdout
    assert "2/2" in listed and "used" in listed and "active" in listed
    assert token not in listed and other not in listed
    active = [line.split()[0] for line in listed.splitlines() if " active " in line]
    assert len(active) == 1
    assert hongyan("invite", "revoke", active[0], config=cfg).returncode == 0
    assert hongyan("invite", "revoke", "nosuchid", config=cfg).returncode == 1
    assert await register_with_token(harness, "tybalt", "balcony-pw", other) == \
        ("preauth", "item-not-found")
    assert "revoked" in hongyan("invite", "list", config=cfg).stdout


async def test_user_invitations_need_allow_users(harness: Harness) -> None:
    await start(harness, allow_users=False)
    romeo = await harness.logged_in("romeo", plugins=PLUGINS)
    assert error_of(await send(romeo, INVITE))[0] == "forbidden"
    assert error_of(await send(romeo, CREATE))[0] == "forbidden"
    items = await romeo.plugin["xep_0050"].get_commands(jid="localhost")
    assert not {n for _j, n, _n in items["disco_items"]["items"]} & {INVITE, CREATE}
    for node in (INVITE, CREATE):
        with pytest.raises(IqError) as err:
            await romeo.plugin["xep_0030"].get_info(jid="localhost", node=node)
        assert err.value.iq["error"]["condition"] == "forbidden"
    # an admin may always invite
    a = await admin(harness)
    answer = await run(a, INVITE)
    assert field_values(answer, "uri")[0].startswith("xmpp:admin@localhost?roster;preauth=")


async def test_a_user_invites_a_newcomer_and_an_existing_user(harness: Harness) -> None:
    await start(harness, allow_users=True)
    romeo = track_pushes(await harness.logged_in("romeo", plugins=PLUGINS))
    items = await romeo.plugin["xep_0050"].get_commands(jid="localhost")
    assert INVITE in {n for _j, n, _n in items["disco_items"]["items"]}
    assert error_of(await send(romeo, CREATE))[0] == "forbidden"
    answer = await run(romeo, INVITE)
    uri = field_values(answer, "uri")[0]
    assert uri.startswith("xmpp:romeo@localhost?roster;preauth=") and uri.endswith(";ibr=y")
    # a newcomer registers with it (ibr=y) and becomes romeo's contact
    assert await register_with_token(harness, "juliet", "balcony-pw", token_of(uri)) == \
        ("ok", "")
    push = await roster_push(romeo)
    assert push == {"jid": "juliet@localhost", "subscription": "both"}
    # XEP-0379: an existing user sends the token with a subscription request
    answer = await run(romeo, INVITE)
    token = token_of(field_values(answer, "uri")[0])
    romeo.auto_authorize = None  # nobody approves by hand: the token does
    mercutio = await harness.logged_in("mercutio")
    pres = mercutio.make_presence(pto="romeo@localhost", ptype="subscribe")
    pres.xml.append(ET.fromstring(f"<preauth xmlns='{PARS}' token='{token}'/>"))
    pres.send()
    for _ in range(10):
        push = await roster_push(romeo)
        if push["jid"] == "mercutio@localhost" and push["subscription"] == "both":
            break
    assert push == {"jid": "mercutio@localhost", "subscription": "both"}


async def test_a_user_has_a_bounded_number_of_active_invitations(harness: Harness) -> None:
    await harness.stop_node()
    await harness.start(extra=CONFIG + "\n[invites]\nallow_users = true\nper_user = 2\n")
    romeo = await harness.logged_in("romeo", plugins=PLUGINS)
    for _ in range(2):
        assert (await run(romeo, INVITE))["command"]["status"] == "completed"
    assert error_of(await send(romeo, INVITE))[0] == "resource-constraint"
