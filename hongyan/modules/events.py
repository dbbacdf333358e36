"""The events feature modules fire for each other (the core's own are in
:mod:`hongyan.server.hooks`). They live here, beside the feature folders and in none of them,
so that a module listening to another's event (push to stream management's and MUC's, carbons
to resumption) does not stop loading when that other module's folder is deleted or disabled:
its handler then simply never runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from hongyan.xmpp.element import Element
from hongyan.xmpp.jid import JID

if TYPE_CHECKING:
    from hongyan.server.session import ClientSession, Session


@dataclass(slots=True)
class OfflineStored:
    """A message from :class:`MessageUndeliverable` was stored in offline storage for
    ``username`` (push notifications). Fired only while a handler is registered; async hook."""

    username: str
    stanza: Element


@dataclass(slots=True)
class SubscriptionStored:
    """A presence subscription request for ``username`` from bare JID ``contact`` was stored
    while the account had no available session (push notifications). Fired only while a
    handler is registered; async hook."""

    username: str
    contact: str


@dataclass(slots=True)
class SubscriptionApproved:
    """``username`` now has a presence subscription to bare JID ``contact``: the contact
    approved it (PEP sends the contact's last items). Async hook; fired only while a handler is
    registered."""

    username: str
    contact: str


@dataclass(slots=True)
class QueuedForResumption:
    """A stanza (serialized) was queued to a XEP-0198 session that is hibernated: its
    connection dropped and it waits to be resumed (push notifications). Sync hook."""

    SYNC: ClassVar[bool] = True

    session: Session
    data: bytes


@dataclass(slots=True)
class InitialPresence:
    """A session sent its first available presence (async hook: offline delivery)."""

    session: ClientSession


@dataclass(slots=True)
class SessionResumed:
    """XEP-0198 resumption moved a bound session onto a new connection (sync hook): ``session``
    continues ``old`` (same JID, presence, ``data`` and queue), and ``old`` is dead. A module
    that keeps references to session objects (carbons, MUC occupants) points them at
    ``session`` here; nothing fires ``SessionClosed`` for ``old``."""

    SYNC: ClassVar[bool] = True

    session: ClientSession
    old: ClientSession


@dataclass(slots=True)
class MucMemberMissedMessage:
    """A groupchat message with a body that a persistent members-only room broadcast while
    ``member_bare_jid`` (affiliation member, admin or owner) had no resource in the room: what
    a push service notifies about (XEP-0357). The member gets the message itself from the
    room's archive (XEP-0313) when its client catches up. Sync hook: a handler must not await
    (it queues its work), and must not change ``stanza``, which is shared by every handler and
    every member; ``body`` is its text."""

    SYNC: ClassVar[bool] = True

    room_jid: JID
    member_bare_jid: JID
    sender_nick: str
    body: str
    stanza: Element


@dataclass(slots=True)
class RoomActivity:
    """Something happened in a MUC room (the event stream publishes it): ``kind`` is
    ``join`` (a new occupant), ``leave`` (its last resource left, or it was kicked or banned:
    ``codes`` say which), ``message`` (a groupchat message broadcast; ``size``: its bytes as
    sent, ``body``: its text or None) or ``subject``. Fired only while a handler is
    registered; sync hook (a handler queues its work)."""

    SYNC: ClassVar[bool] = True

    kind: str
    room: str
    nick: str
    #: the occupant's real bare JID
    jid: str
    size: int = 0
    body: str | None = None
    codes: tuple[str, ...] = ()
