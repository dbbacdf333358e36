"""What a stream management ack waits for: that everything routed so far has landed.

XEP-0198's ``<a h/>`` tells a client that the server *handled* its first ``h`` stanzas; the
client then forgets them and will never send them again. So an ack must not come before
what the stanzas caused survives a crash of the server (``kill -9``): a message stored for
an offline recipient is committed (the session awaits that before it reads on), and so must be
the archive rows that writers batch off the message path, and the handling of what went to
another process of the node. :class:`Settle` collects those: modules that batch writes
register a *provider* (``ModuleAPI.durable``), a function returning a future that is done
once what they queued so far is committed (or None: nothing outstanding); the cluster gives
its own (every process that this one handed stanzas to has handled them). :meth:`pending`
combines them into one future, or None when nothing is outstanding (the ack goes at once).
No task: futures and their callbacks only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hongyan.server.cluster import Cluster

#: a future done once what its owner queued so far is committed, or None
Provider = Callable[[], "asyncio.Future[None] | None"]


class Settle:
    __slots__ = ("_providers", "cluster")

    def __init__(self) -> None:
        self._providers: list[Provider] = []
        self.cluster: Cluster | None = None

    def add(self, provider: Provider) -> Callable[[], None]:
        """Register ``provider``; returns what removes it."""
        self._providers.append(provider)

        def undo() -> None:
            if provider in self._providers:
                self._providers.remove(provider)
        return undo

    def pending(self) -> asyncio.Future[None] | None:
        """Done (or failed) once everything routed before this call is durable or handled
        where it went; None when nothing is outstanding."""
        waits = [f for p in self._providers if (f := p()) is not None]
        cluster = self.cluster
        if cluster is not None and (f := cluster.settle()) is not None:
            waits.append(f)
        if not waits:
            return None
        if len(waits) == 1:
            return waits[0]
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        left = [len(waits)]

        def one(f: asyncio.Future[None]) -> None:
            left[0] -= 1
            if done.done():
                return
            exc = None if f.cancelled() else f.exception()
            if f.cancelled() or exc is not None:
                done.set_exception(exc or asyncio.CancelledError())
            elif not left[0]:
                done.set_result(None)

        for f in waits:
            f.add_done_callback(one)
        return done


def retrieved(f: asyncio.Future[None]) -> None:
    """A done callback that marks a failed future's exception as seen (whoever waits for it
    may be gone; the failure itself is logged where it happened)."""
    if not f.cancelled():
        f.exception()
