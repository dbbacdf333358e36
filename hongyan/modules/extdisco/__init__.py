"""XEP-0215 External Service Discovery (``urn:xmpp:extdisco:2``): the STUN and TURN servers
of ``[[extdisco.service]]``, for the ICE candidates of calls (XEP-0176).

``<services/>`` (addressed to the server's domain, optionally with ``type``) lists them; a
TURN server configured with a ``secret`` is listed ``restricted='1'`` with credentials of the
TURN REST scheme (coturn's ``use-auth-secret``) made for the asking user: username
``<expiry unix time>:<bare JID>``, password base64(HMAC-SHA1(secret, username)), ``expires``
the same instant (``ttl`` from now, by the node's clock). ``<credentials/>`` asks for one
service's credentials again (by ``host``, ``type`` and optionally ``port``); one that is not
configured is ``item-not-found``. The TURN server checks both parts itself: the HMAC proves the
username came from us, the timestamp that it has not expired; Hongyan keeps no state.

Only the server's own users are answered (another server's users get ``forbidden``): the
credentials are for our relay. The secret never leaves the process and is never logged; the
options hold it as a ``SecretStr``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from hongyan.modules.extdisco.options import ExtdiscoOptions, ExternalService
from hongyan.server.module import Iq, Module, iq_handler
from hongyan.xmpp.element import Element
from hongyan.xmpp.errors import StanzaError
from hongyan.xmpp.jid import JID
from hongyan.xmpp.stamps import xmpp_datetime

EXTDISCO = "urn:xmpp:extdisco:2"


def turn_credentials(secret: str, user: str, expiry: int) -> tuple[str, str]:
    """The TURN REST API's username and password for ``user`` until ``expiry`` (Unix time)."""
    username = f"{expiry}:{user}"
    mac = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(mac).decode()


class Extdisco(Module):
    name = "extdisco"
    xeps = {"0215": "1.0.0"}
    features = frozenset({EXTDISCO})

    async def start(self) -> None:
        self.options = self.api.options(ExtdiscoOptions)

    def _check_sender(self, iq: Iq) -> None:
        if iq.sender.domain != self.api.domain or not iq.sender.local:
            raise StanzaError("forbidden", "external services are for this server's users")

    def _service(self, svc: ExternalService, user: JID, creds: bool) -> Element:
        attrs = {"type": svc.type, "host": svc.host, "port": str(svc.port),
                 "transport": svc.transport}
        if svc.name:
            attrs["name"] = svc.name
        if svc.secret is not None:
            attrs["restricted"] = "1"
            if creds:
                expiry = int(self.api.now()) + self.options.ttl
                username, password = turn_credentials(svc.secret.get_secret_value(),
                                                      user.bare_str, expiry)
                attrs["username"] = username
                attrs["password"] = password
                attrs["expires"] = xmpp_datetime(expiry)
        return Element("service", EXTDISCO, attrs)

    @iq_handler(EXTDISCO, "services", "get", scope="host")
    def on_services(self, iq: Iq) -> Element:
        self._check_sender(iq)
        wanted = iq.payload.attrs.get("type")
        out = Element("services", EXTDISCO, {"type": wanted} if wanted else None)
        for svc in self.options.service:
            if wanted is None or svc.type == wanted:
                out.children.append(self._service(svc, iq.sender, creds=True))
        return iq.result(out)

    @iq_handler(EXTDISCO, "credentials", "get", scope="host")
    def on_credentials(self, iq: Iq) -> Element:
        self._check_sender(iq)
        asked = iq.payload.find("service", EXTDISCO)
        if asked is None:
            raise StanzaError("bad-request", "credentials name one <service/>")
        host = asked.attrs.get("host")
        stype = asked.attrs.get("type")
        if not host or not stype:
            raise StanzaError("bad-request", "the <service/> needs 'host' and 'type'")
        port = asked.attrs.get("port")
        for svc in self.options.service:
            if svc.host == host and svc.type == stype and (port is None or port == str(svc.port)):
                return iq.result(Element("credentials", EXTDISCO, None,
                                         [self._service(svc, iq.sender, creds=True)]))
        raise StanzaError("item-not-found", "no such service")


MODULE = Extdisco
