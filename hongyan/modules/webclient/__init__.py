"""The bundled web client: Converse.js at ``/`` on the HTTP listener (ports 5280 and 5281).

Converse.js is a pinned npm dependency (``web/package.json`` and its lock file); the set-up
command (``./scripts/serve.sh``) installs it with ``npm ci`` into ``web/node_modules``, and it
is never committed. This module serves:

- ``GET /``: a small page that loads Converse from this server, with the connection settings
  in a JSON block (not a script: the page's CSP allows no inline script) that
  ``/webclient/hongyan.js`` hands to ``converse.initialize``. The transport is
  ``[webclient] transport``, or ``?transport=websocket|bosh`` for one visit. When Converse is
  not installed, the page says how to install it (503).
- ``GET /webclient/hongyan.js``: that start-up script (``static/`` beside this file).
- ``GET /webclient/dist/*``: Converse's own built files (scripts, styles, fonts, sounds,
  emoji JSON, locales), from ``[webclient] assets_dir``.

Nothing is loaded from elsewhere: Converse is told to use the system's emoji font instead of
its default image CDN and not to embed third-party players, and the page's
``Content-Security-Policy`` lets it reach only its own origin, the WebSocket on its own host
(ws/wss) and this listener's HTTPS port (where the upload service's URLs point by default), plus
``[webclient] connect_origins``.
"""

from __future__ import annotations

import html
import json
import mimetypes
import re
from pathlib import Path

from aiohttp import web

from hongyan.modules.webclient.options import WebClientOptions
from hongyan.server.module import Module

PREFIX = "/webclient"
DIST = PREFIX + "/dist"
SCRIPT = PREFIX + "/hongyan.js"
WEBSOCKET_PATH = "/xmpp-websocket"
BOSH_PATH = "/http-bind"
OMEMO_WASM = "curve25519_compiled.wasm"
STATIC = Path(__file__).parent / "static"
#: this checkout's ``web/`` folder (hongyan/modules/webclient/__init__.py → the repository)
WEB_DIR = Path(__file__).resolve().parents[3] / "web"
DEFAULT_ASSETS = WEB_DIR / "node_modules" / "converse.js" / "dist"
_HOST = re.compile(r"[A-Za-z0-9.-]+(:\d{1,5})?|\[[0-9A-Fa-f:.]+\](:\d{1,5})?")

#: the headers of every answer of this module
SAFE = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
#: and of the page itself
PAGE = {**SAFE, "X-Frame-Options": "DENY", "Cross-Origin-Opener-Policy": "same-origin",
        "Cache-Control": "no-store"}

for _ext, _type in ((".js", "text/javascript"), (".mjs", "text/javascript"),
                    (".json", "application/json"), (".wasm", "application/wasm"),
                    (".woff2", "font/woff2"), (".woff", "font/woff"), (".ttf", "font/ttf"),
                    (".svg", "image/svg+xml"), (".map", "application/json"),
                    (".mp3", "audio/mpeg"), (".ogg", "audio/ogg")):
    mimetypes.add_type(_type, _ext)


class WebClient(Module):
    name = "webclient"

    async def start(self) -> None:
        self.options = self.api.options(WebClientOptions)
        self.assets = (Path(self.options.assets_dir) if self.options.assets_dir
                       else DEFAULT_ASSETS).resolve()
        self.api.http_route("GET", "/", self.page)
        self.api.http_route("GET", SCRIPT, self.script)
        self.api.http_route("GET", DIST + "/*", self.asset)
        # libomemo (OMEMO's crypto, loaded by Converse) fetches its WebAssembly from the
        # page's folder, not from the assets path
        self.api.http_route("GET", "/" + OMEMO_WASM, self.asset)

    @property
    def installed(self) -> bool:
        return (self.assets / "converse.min.js").is_file()

    # -- the page -------------------------------------------------------------------------------
    def _host(self, request: web.BaseRequest) -> str:
        return request.host if _HOST.fullmatch(request.host or "") else self.api.domain

    def csp(self, request: web.BaseRequest) -> str:
        """The page's policy: its own origin, the WebSocket on its own host, this listener's
        HTTPS port (the upload service's URLs by default) and the configured origins."""
        host = self._host(request)
        extra = [f"ws://{host}", f"wss://{host}"]
        own = self.api.http_url
        if own.startswith("https://"):
            extra.append(own)
        for url in (self.options.websocket_url, self.options.bosh_url):
            if url:
                extra.append(re.sub(r"^(\w+://[^/]+).*$", r"\1", url))
        extra += self.options.connect_origins
        others = " ".join(dict.fromkeys(extra))
        media = " ".join(dict.fromkeys(
            ([own] if own.startswith("https://") else []) +
            [o for o in self.options.connect_origins if o.startswith("http")]))
        return "; ".join((
            "default-src 'none'",
            "script-src 'self' 'wasm-unsafe-eval'",
            "style-src 'self' 'unsafe-inline'",
            f"img-src 'self' data: blob: {media}".rstrip(),
            f"media-src 'self' blob: {media}".rstrip(),
            "font-src 'self'",
            f"connect-src 'self' {others}",
            "worker-src 'self' blob:",
            "manifest-src 'self'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ))

    def settings(self, request: web.BaseRequest) -> dict[str, object]:
        """What ``hongyan.js`` gives ``converse.initialize`` (and the URLs it completes)."""
        transport = request.query.get("transport", self.options.transport)
        if transport not in ("websocket", "bosh"):
            transport = self.options.transport
        return {
            "transport": transport,
            "websocket_url": self.options.websocket_url or WEBSOCKET_PATH,
            "bosh_url": self.options.bosh_url or BOSH_PATH,
            "converse": {
                "assets_path": DIST,
                "default_domain": self.api.domain,
                "discover_connection_methods": False,
                "view_mode": "fullscreen",
                "use_system_emojis": True,
                "emoji_image_path": DIST + "/",
                "embed_3rd_party_media_players": False,
                "show_client_info": False,
                "allow_registration": True,
                "registration_domain": self.api.domain,
                "providers_link": "",
                "muc_nickname_from_jid": True,
                "play_sounds": False,
                "sounds_path": DIST + "/sounds/",
                "persistent_store": "IndexedDB",
                "loglevel": "info",
            },
        }

    async def page(self, request: web.BaseRequest) -> web.StreamResponse:
        headers = {**PAGE, "Content-Security-Policy": self.csp(request)}
        if not self.installed:
            return web.Response(status=503, text=_missing(self.assets), content_type="text/html",
                                charset="utf-8", headers=headers)
        # "<" escaped: the JSON cannot close its <script> element
        data = json.dumps(self.settings(request)).replace("<", "\\u003c")
        body = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Hongyan — {html.escape(self.api.domain)}</title>
<link rel="icon" href="{DIST}/images/favicon.ico">
<link rel="stylesheet" href="{DIST}/converse.min.css">
<script type="application/json" id="hongyan-settings">{data}</script>
<script type="module" src="{SCRIPT}"></script>
</head>
<body class="converse-fullscreen">
<noscript>This chat client needs JavaScript.</noscript>
</body>
</html>
"""
        return web.Response(text=body, content_type="text/html", charset="utf-8",
                            headers=headers)

    async def script(self, _request: web.BaseRequest) -> web.StreamResponse:
        return web.FileResponse(STATIC / "hongyan.js", headers={
            **SAFE, "Content-Type": "text/javascript; charset=utf-8",
            "Cache-Control": "no-cache"})

    # -- Converse's files -----------------------------------------------------------------------
    async def asset(self, request: web.BaseRequest) -> web.StreamResponse:
        rel = (OMEMO_WASM if request.path == "/" + OMEMO_WASM
               else request.path[len(DIST) + 1:])
        path = self._file(rel)
        if path is None:
            return web.Response(status=404, text="not found\n", headers=SAFE)
        ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return web.FileResponse(path, headers={**SAFE, "Content-Type": ctype,
                                               "Cache-Control": "public, max-age=3600"})

    def _file(self, rel: str) -> Path | None:
        """The file ``rel`` names under the assets folder, or None: nothing outside it (``..``,
        absolute or encoded paths, links that lead out), no folder, no hidden name."""
        if not rel or "\\" in rel or "\0" in rel:
            return None
        parts = rel.split("/")
        if any(p in ("", ".", "..") or p.startswith(".") for p in parts):
            return None
        path = (self.assets / rel).resolve()
        if not path.is_relative_to(self.assets) or not path.is_file():
            return None
        return path


def _missing(assets: Path) -> str:
    where = html.escape(str(assets))
    return f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Hongyan — web client not installed</title></head>
<body>
<h1>The web client is not installed</h1>
<p>Hongyan serves <a href="https://conversejs.org/">Converse.js</a> here, installed from the npm
registry by the set-up command. It was not found in <code>{where}</code>.</p>
<p>Install it from the checkout (Node.js and npm needed):</p>
<pre>./scripts/serve.sh          # installs it, then starts the server
# or only the web client:
npm ci --prefix web</pre>
<p>or point <code>[webclient] assets_dir</code> at a folder holding Converse's built files
(<code>converse.min.js</code> and its assets), then reload this page.</p>
<p>XMPP clients connect as usual meanwhile: port 5222, or WebSocket at
<code>/xmpp-websocket</code>.</p>
</body>
</html>
"""


MODULE = WebClient
