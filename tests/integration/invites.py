"""Helpers of the invitation tests: registering with a token as a slixmpp client does it
(XEP-0445: it sees the ``<register xmlns='urn:xmpp:invite'/>`` stream feature, presents
``<preauth/>``, then registers with XEP-0077), and reading a token out of a URI."""

from __future__ import annotations

import asyncio
import re

from slixmpp.exceptions import IqError
from slixmpp.stanza import StreamFeatures
from slixmpp.xmlstream import ET, ElementBase, register_stanza_plugin

from tests.integration.clients import Client
from tests.integration.conftest import Harness

PARS = "urn:xmpp:pars:0"
CONFIG = """
[registration]
enabled = false
"""


class InviteFeature(ElementBase):  # type: ignore[misc]
    """The stream feature that says in-band registration takes a token (XEP-0445)."""

    name = "register"
    namespace = "urn:xmpp:invite"
    plugin_attrib = "ibr_token"
    interfaces: set[str] = set()


register_stanza_plugin(StreamFeatures, InviteFeature)


def token_of(uri: str) -> str:
    m = re.search(r"preauth=([A-Za-z0-9]+)", uri)
    assert m is not None, uri
    return m.group(1)


async def register_with_token(harness: Harness, username: str, password: str, token: str
                              ) -> tuple[str, str]:
    """Connect as a newcomer, present ``token`` once the server offers the feature, register
    ``username``: ("ok", "") or the step that failed ("preauth" / "register") with the error
    condition. The client stays logged in after "ok"."""
    c = Client(f"{username}@localhost/new", password, plugins=("xep_0077",))
    harness.clients.append(c)
    done: asyncio.Future[tuple[str, str]] = asyncio.get_running_loop().create_future()

    async def on_feature(_features: object) -> bool:
        iq = c.Iq()
        iq["type"] = "set"
        iq.xml.append(ET.fromstring(f"<preauth xmlns='{PARS}' token='{token}'/>"))
        # slixmpp holds back every IQ before the session but bind and register ones
        c._always_send_everything = True
        try:
            await iq.send(timeout=10)
        except IqError as exc:
            done.set_result(("preauth", exc.iq["error"]["condition"]))
            c.disconnect()
        finally:
            c._always_send_everything = False
        return False  # on to the registration feature

    async def on_register(_form: object) -> None:
        resp = c.Iq()
        resp["type"] = "set"
        resp["register"]["username"] = username
        resp["register"]["password"] = password
        try:
            await resp.send(timeout=10)
        except IqError as exc:
            done.set_result(("register", exc.iq["error"]["condition"]))
            c.disconnect()
            return
        done.set_result(("ok", ""))

    c.register_feature("ibr_token", on_feature, restart=False, order=40)
    c.add_event_handler("register", on_register)
    c.enable_starttls = True
    c.enable_direct_tls = False
    c.enable_plaintext = False
    c.connect("127.0.0.1", harness.port)
    result = await asyncio.wait_for(done, 15)
    if result[0] == "ok":
        assert await asyncio.wait_for(c._started, 10)
    return result
