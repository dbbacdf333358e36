"""XEP-0215 External Service Discovery against a real TURN server: Hongyan hands a slixmpp
client time-limited TURN REST credentials, coturn (``use-auth-secret``, the same secret)
allocates a relay with them (``turnutils_uclient``), and refuses them once expired."""

from __future__ import annotations

import logging
import secrets
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest

from tests.integration.clients import Client
from tests.integration.conftest import Harness
from tests.integration.turn import Turn, allocate, log, start_coturn

EXTDISCO = "urn:xmpp:extdisco:2"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
S = "{" + EXTDISCO + "}"
TTL = 600


@pytest.fixture
async def turn(tmp_path: Path) -> AsyncIterator[Turn]:
    where = tmp_path / "turn"
    where.mkdir()
    t = await start_coturn(where, secrets.token_hex(16))
    try:
        yield t
    finally:
        await t.program.stop()


@pytest.fixture
async def node(tmp_path: Path, storage_url: str, turn: Turn) -> AsyncIterator[Harness]:
    h = Harness(tmp_path, storage_url)
    await h.start(extra=f"""
[extdisco]
ttl = {TTL}

[[extdisco.service]]
type = "stun"
host = "127.0.0.1"
port = {turn.port}

[[extdisco.service]]
type = "turn"
host = "127.0.0.1"
port = {turn.port}
transport = "udp"
name = "Test relay"
secret = "{turn.secret}"
""")
    try:
        yield h
    finally:
        await h.stop_node()


async def ask(client: Client, payload: str) -> ET.Element:
    """An IQ get to the server's domain, and its answer."""
    answer = await client.send_raw_iq(client.make_iq_get(ito="localhost"), payload, 10)
    return answer.xml  # type: ignore[no-any-return]


def services(answer: ET.Element) -> list[ET.Element]:
    assert answer.get("type") == "result", ET.tostring(answer)
    payload = answer[0]
    return list(payload.iter(S + "service"))


async def test_turn_credentials_from_hongyan_allocate_a_relay_at_coturn(
        node: Harness, turn: Turn, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    assert node.node is not None
    assert turn.secret not in repr(node.node.config)  # a SecretStr: shown as ****
    romeo = await node.logged_in("romeo")
    info = await romeo.plugin["xep_0030"].get_info(jid="localhost")
    assert EXTDISCO in info["disco_info"]["features"]

    every = services(await ask(romeo, f"<services xmlns='{EXTDISCO}'/>"))
    assert [(s.get("type"), s.get("restricted")) for s in every] == [("stun", None),
                                                                     ("turn", "1")]
    stun, relay = every
    assert stun.get("username") is None and stun.get("port") == str(turn.port)
    assert relay.get("name") == "Test relay" and relay.get("transport") == "udp"
    user = relay.get("username")
    assert user is not None and user.endswith(":romeo@localhost")
    expiry = int(user.split(":", 1)[0])
    expires = datetime.fromisoformat(str(relay.get("expires")).replace("Z", "+00:00"))
    assert int(expires.timestamp()) == expiry
    assert abs(expiry - TTL - node.clock.time()) < 5
    assert turn.secret not in ET.tostring(relay, encoding="unicode")

    only = services(await ask(romeo, f"<services xmlns='{EXTDISCO}' type='turn'/>"))
    assert [s.get("type") for s in only] == ["turn"]

    answer = (await ask(romeo, f"<credentials xmlns='{EXTDISCO}'><service type='turn' "
                             f"host='127.0.0.1' port='{turn.port}'/></credentials>"))
    (asked,) = services(answer)
    code, out = await allocate(turn, str(asked.get("username")), str(asked.get("password")))
    assert code == 0 and "Received relay addr" in out, out + log(turn.program.log.parent)

    # the same credentials with another user's name are refused: coturn checks the HMAC
    forged = str(asked.get("username")).replace("romeo", "juliet")
    code, out = await allocate(turn, forged, str(asked.get("password")))
    assert code != 0 and "Cannot complete Allocation" in out, out
    # whatever the server logged, even at debug level, never had the secret in it
    assert turn.secret not in caplog.text


async def test_expired_credentials_are_refused_by_coturn(node: Harness, turn: Turn) -> None:
    romeo = await node.logged_in("romeo")
    # the node's clock runs two TTLs behind: what it hands out has expired already
    node.clock.offset = -2 * TTL
    answer = (await ask(romeo, f"<credentials xmlns='{EXTDISCO}'><service type='turn' "
                             "host='127.0.0.1'/></credentials>"))
    (asked,) = services(answer)
    username = str(asked.get("username"))
    code, out = await allocate(turn, username, str(asked.get("password")))
    assert code != 0 and "Received relay addr" not in out, out
    assert f"Cannot find credentials of user <{username}>" in log(turn.program.log.parent)


async def test_unknown_service_is_item_not_found(node: Harness) -> None:
    romeo = await node.logged_in("romeo")
    for payload, condition in (
            ("<service type='turn' host='turn.elsewhere.example'/>", "item-not-found"),
            ("<service type='turns' host='127.0.0.1'/>", "item-not-found"),
            ("<service host='127.0.0.1'/>", "bad-request"),
            ("", "bad-request")):
        answer = (await ask(romeo, f"<credentials xmlns='{EXTDISCO}'>{payload}"
                                 "</credentials>"))
        assert answer.get("type") == "error", ET.tostring(answer)
        assert answer.find(f"{{jabber:client}}error/{{{STANZAS}}}{condition}") is not None, \
            ET.tostring(answer)
    none = services(await ask(romeo, f"<services xmlns='{EXTDISCO}' type='ftp'/>"))
    assert none == []
