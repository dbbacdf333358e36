"""The node's own HTTP routes: ``/health``. Modules add theirs through ``ModuleAPI.http_route``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from hongyan.server.c2s import Host
    from hongyan.server.cluster import Cluster


def health(node: Host) -> web.Response:
    """``GET /health``: 200 and a small JSON while the node (this process of it) runs."""
    cluster: Cluster | None = node.cluster
    body = {"status": "ok", "domain": node.config.server.domain,
            "sessions": node.sessions.count(),
            "worker": cluster.index if cluster is not None else None}
    return web.Response(text=json.dumps(body), content_type="application/json",
                        headers={"Cache-Control": "no-store"})


__all__ = ["health"]
