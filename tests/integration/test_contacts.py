"""XEP-0157 contact addresses in the server's disco#info, seen by slixmpp: the
``http://jabber.org/network/serverinfo`` form (XEP-0128) with the fields configured in
``[server.contacts]`` and no others, in the caps hash the stream features carry; and none at
all when nothing is configured. SQLite and PostgreSQL."""

from __future__ import annotations

from tests.integration.conftest import Harness
from tests.integration.rawstream import PASSWORD, SASL, b64, tls_stream

SERVERINFO = "http://jabber.org/network/serverinfo"
CONTACTS = """
[server.contacts]
abuse = ["mailto:abuse@example.org", "xmpp:abuse@localhost"]
security = ["https://example.org/security"]
admin = ["xmpp:admin@localhost?message"]
"""


def forms(info: object) -> list[object]:
    return [s for s in info["disco_info"]["substanzas"]  # type: ignore[index]
            if s.name == "x" and s.namespace == "jabber:x:data"]


async def test_contact_addresses_in_the_server_disco(harness: Harness) -> None:
    await harness.stop_node()
    await harness.start(extra=CONTACTS)
    c = await harness.logged_in("romeo", plugins=("xep_0004", "xep_0115", "xep_0128"))
    info = await c.plugin["xep_0030"].get_info(jid="localhost")
    [form] = forms(info)
    values = form.get_values()  # type: ignore[attr-defined]
    assert values == {
        "FORM_TYPE": [SERVERINFO],
        "abuse-addresses": ["mailto:abuse@example.org", "xmpp:abuse@localhost"],
        "admin-addresses": ["xmpp:admin@localhost?message"],
        "security-addresses": ["https://example.org/security"],
    }
    assert form["type"] == "result"  # type: ignore[index]
    # the caps hash of the stream features covers the form (XEP-0115 §5.1 steps 6-7)
    ver = c.plugin["xep_0115"].generate_verstring(info["disco_info"], "sha-1")
    raw = await tls_stream(harness)
    await raw.header()
    raw.send(f"<auth xmlns='{SASL}' mechanism='PLAIN'>"
             f"{b64(chr(0) + 'romeo' + chr(0) + PASSWORD)}</auth>")
    await raw.read_until(b"success>")
    feats = await raw.header()
    assert f"ver='{ver}'".encode() in feats
    raw.close()
    # and the caps node answers the same
    node = await c.plugin["xep_0030"].get_info(jid="localhost",
                                               node=f"https://hongyan.im#{ver}")
    assert len(forms(node)) == 1


async def test_no_contact_form_when_none_is_configured(harness: Harness) -> None:
    c = await harness.logged_in("romeo", plugins=("xep_0004", "xep_0128"))
    info = await c.plugin["xep_0030"].get_info(jid="localhost")
    assert forms(info) == []
