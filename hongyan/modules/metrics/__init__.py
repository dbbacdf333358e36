"""``GET /metrics``: the node's numbers in Prometheus text format (prometheus-client).

What is shown is what the core and the modules registered (``ModuleAPI.metric``): connections
and sessions by transport, stanzas in and out, routed messages, logins and failed logins,
offline messages stored, the archive queues, uploads, memory. Each number is shown for the
whole node (``hongyan_<name>``) and for each worker process (``hongyan_worker_<name>``,
label ``worker``). With several workers, the worker that got the request asks every other one
for its numbers (``ModuleAPI.ask``: notices ``metrics:ask`` / ``metrics:answer``) and answers
with all of them, so any worker answers for the node; one that does not answer within
``peer_timeout`` is left out (its ``hongyan_worker_*`` series are missing, and the log says so).

Not public: a client must come from ``allow_from`` (loopback by default; behind a trusted
reverse proxy, the address it forwards) or send ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import hmac
import json

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from hongyan.modules.metrics.options import MetricsOptions
from hongyan.server.metrics import Snapshot, render
from hongyan.server.module import Module
from hongyan.transport.http import Networks

METRICS_PATH = "/metrics"


class Metrics(Module):
    name = "metrics"

    async def start(self) -> None:
        opts = self.api.options(MetricsOptions)
        self._allowed = Networks(opts.allow_from)
        self._token = opts.token.encode()
        self._timeout = opts.peer_timeout
        self.api.on_ask("metrics", self._snapshot)
        self.api.http_route("GET", METRICS_PATH, self.serve)
        # /health's details (domain, sessions, workers) for the same readers as the numbers
        self.api.health_readers(lambda request: self._refused(request) is None)

    # -- who may read ---------------------------------------------------------------------------
    def _refused(self, request: web.BaseRequest) -> web.Response | None:
        """None when ``request`` may read the numbers, else the answer that says why not."""
        auth = request.headers.get("Authorization", "")
        if self._token and auth[:7].lower() == "bearer ":
            if hmac.compare_digest(auth[7:].strip().encode(), self._token):
                return None
            return web.Response(status=403, text="wrong token\n")
        if (request.remote or "") in self._allowed:
            return None
        if self._token:
            return web.Response(status=401, text="a bearer token is needed\n",
                                headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
        return web.Response(status=403, text="/metrics is not served to this address\n")

    # -- the numbers ----------------------------------------------------------------------------
    async def serve(self, request: web.BaseRequest) -> web.StreamResponse:
        refused = self._refused(request)
        if refused is not None:
            return refused
        body = render(self.api.metrics.sources, await self.node_snapshots())
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST,
                                                "Cache-Control": "no-store"})

    async def node_snapshots(self) -> dict[int, Snapshot]:
        """Every worker's numbers, by worker index (this process alone: index 0)."""
        answers = await self.api.ask("metrics", timeout=self._timeout)
        return {index: {name: [(list(labels), float(value)) for labels, value in rows]
                        for name, rows in json.loads(body).items()}
                for index, body in answers.items()}

    def _snapshot(self, _body: bytes) -> bytes:
        return json.dumps(self.api.metrics.snapshot()).encode()


MODULE = Metrics
