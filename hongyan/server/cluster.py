"""The node's other processes as the core and the feature modules see them: where an account
or a service lives, what reaches a session homed elsewhere, and notices between processes.

The Unix-socket workers of one machine (:mod:`hongyan.cluster.workers`) are the first
implementation; a backend that spans machines implements the same protocol. Modules reach it
only through their :class:`~hongyan.server.module.ModuleAPI` (``is_home``, ``home``,
``notify``, ``broadcast``, ``on_notice``), never by importing ``hongyan.cluster``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from hongyan.server.sasl2 import Outcome
    from hongyan.server.session import Session
    from hongyan.xmpp.element import Element
    from hongyan.xmpp.jid import JID

#: what handles a notice from another process: its body, maybe an awaitable to finish
NoticeHandler = Callable[[bytes], "Awaitable[object] | None"]


class Cluster(Protocol):
    """This process's view of the others (``index`` among ``count``)."""

    @property
    def index(self) -> int: ...
    @property
    def count(self) -> int: ...
    def home(self, username: str) -> int:
        """The process where ``username``'s sessions and stanzas are handled."""
    def service_home(self, domain: str) -> int:
        """The process that runs the service (a MUC host, a component) ``domain``."""
    def notify(self, topic: str, body: bytes = b"", index: int | None = None) -> None:
        """A notice to process ``index``, or to every other one."""
    def notify_all(self, topic: str, body: bytes = b"") -> Awaitable[None]:
        """A notice to every other process, done once each has handled it."""
    def forward(self, el: Element, sender: JID, to: JID, home: int,
                wire: bytes | None = None) -> bool:
        """Hand a stanza to process ``home``, which routes it as if it had arrived there
        (``wire``: a message already serialized as on a client stream)."""
    def unanswered(self, timeout: float) -> Awaitable[list[int]]:
        """The processes that are not up: their link is down, or they did not answer a ping
        within ``timeout`` seconds (``/health``)."""
    def settle(self) -> asyncio.Future[None] | None:
        """Done once every process this one handed stanzas to (``forward``, ``deliver``,
        ``multicast``) before the call has handled them (a message delivered to a session's
        connection or stored offline there); None when there is nothing to wait for."""
    def on(self, topic: str, handler: NoticeHandler) -> Callable[[], None]:
        """Handle notices on ``topic``; returns what removes the handler."""
    def multicast(self, index: int, head: bytes, tail: bytes,
                  recipients: list[tuple[str, bytes]]) -> None:
        """One room message for several sessions homed on ``index``: each copy is
        ``head + esc + tail`` for (full JID, esc) in ``recipients``."""
    def hand_over(self, session: Session, index: int, success: bytes,
                  sasl2: Outcome | None = None) -> Awaitable[None]:
        """``session`` just authenticated as an account homed on ``index``: write ``success``
        and move the connection there (after SASL2: ``sasl2``, which the home finishes)."""
    def hand_over_irc(self, session: Session, index: int, state: dict[str, Any]
                      ) -> Awaitable[None]:
        """An IRC connection whose password checked for an account homed on ``index``: move
        it there, where the session is made again from ``state`` (its core, what it read)."""
    def pass_stream(self, session: Session, index: int, received: bytes) -> None:
        """Move the connection of ``session``, to which nothing was written yet, to process
        ``index``, which reads ``received`` (what came on it so far) first: an external
        component's stream, to the home of its domain."""
    def deliver(self, index: int, full: str, data: bytes) -> None:
        """Write a serialized stanza to the session ``full`` bound on process ``index``."""
