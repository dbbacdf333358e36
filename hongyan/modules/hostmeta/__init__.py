"""XEP-0156: Discovering Alternative XMPP Connection Methods, over HTTP (host-meta).

``/.well-known/host-meta`` (XRD, RFC 6415) and ``/.well-known/host-meta.json`` (JRD) list the
WebSocket address (RFC 7395) and the BOSH address (XEP-0206) when the node serves them, with
``Access-Control-Allow-Origin: *`` so that a web client on another origin may read them. Each
address is ``[hostmeta] websocket_url`` / ``bosh_url`` when set, else the one the request came
to: its scheme (``wss``/``https`` for https, also behind a trusted proxy that says so) and its
``Host``, when that is a plausible host name.
"""

from __future__ import annotations

import json
import re

from aiohttp import web

from hongyan.modules.hostmeta.options import HostMetaOptions
from hongyan.server.module import Module
from hongyan.xmpp.element import escape_attr

WEBSOCKET_REL = "urn:xmpp:alt-connections:websocket"
WEBSOCKET_PATH = "/xmpp-websocket"
BOSH_REL = "urn:xmpp:alt-connections:xbosh"
BOSH_PATH = "/http-bind"
_HOST = re.compile(r"[A-Za-z0-9.-]+(:\d{1,5})?|\[[0-9A-Fa-f:.]+\](:\d{1,5})?")
CORS = {"Access-Control-Allow-Origin": "*", "Cache-Control": "max-age=300"}


class HostMeta(Module):
    name = "hostmeta"
    xeps = {"0156": "1.4.0"}

    async def start(self) -> None:
        self._options = self.api.options(HostMetaOptions)
        self.api.http_route("GET", "/.well-known/host-meta", self.xrd)
        self.api.http_route("GET", "/.well-known/host-meta.json", self.jrd)

    def links(self, request: web.BaseRequest) -> list[tuple[str, str]]:
        """(rel, href) of each connection method this node serves."""
        http = self.api.config.http
        host = request.host if _HOST.fullmatch(request.host or "") else self.api.domain
        tls = request.scheme == "https"
        links = []
        if http.websocket:
            url = self._options.websocket_url or \
                f"{'wss' if tls else 'ws'}://{host}{WEBSOCKET_PATH}"
            links.append((WEBSOCKET_REL, url))
        if http.bosh:
            url = self._options.bosh_url or f"{'https' if tls else 'http'}://{host}{BOSH_PATH}"
            links.append((BOSH_REL, url))
        return links

    async def xrd(self, request: web.BaseRequest) -> web.StreamResponse:
        links = "".join(f"\n  <Link rel='{escape_attr(rel)}' href='{escape_attr(href)}'/>"
                        for rel, href in self.links(request))
        body = ("<?xml version='1.0' encoding='utf-8'?>\n"
                f"<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>{links}\n</XRD>\n")
        return web.Response(text=body, content_type="application/xrd+xml", headers=CORS)

    async def jrd(self, request: web.BaseRequest) -> web.StreamResponse:
        body = {"links": [{"rel": rel, "href": href} for rel, href in self.links(request)]}
        return web.Response(text=json.dumps(body), content_type="application/json",
                            headers=CORS)


MODULE = HostMeta
