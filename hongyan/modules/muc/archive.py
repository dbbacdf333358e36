"""Room archives: XEP-0313 on the room's JID, with XEP-0359 stanza ids ``by`` the room.

Every groupchat message with a body that a room with archiving on broadcasts gets
``<stanza-id by='room@service' id=.../>`` before the fan-out serializes it once; the same bytes
go into the archive (no second serialization). Writes never happen on the fan-out path: rows are
queued in memory and handed to ``Database.bulk_insert`` (on SQLite, a writer process) every
``[mam] flush_interval`` seconds or ``[mam] flush_rows`` rows (:class:`~hongyan.storage.batch.
BatchWriter`, with the user archive's settings). A query, a room's deletion and shutdown flush
first.

Ids are microseconds since the epoch made strictly increasing per node, as in user archives, so
``start``/``end`` are an id range on the ``(room, id)`` key. Queries share their parsing, paging
and result writing with user archives (:mod:`hongyan.modules.archive_query`).

Who may read a room's archive: nobody banned; in a members-only or password-protected room,
its occupants and its members, admins and owners, joined or not (so that a member's client
catches up on what it missed, by ``after-id`` or ``start``, before or without joining); in any
other room, anyone who could join it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from hongyan.modules import archive_query as query
from hongyan.modules.archive_query import ArchiveOptions
from hongyan.modules.muc.room import AFF_RANK, Room
from hongyan.storage.batch import BatchWriter, IdClock
from hongyan.storage.migrations import Migration
from hongyan.xmpp.element import Element
from hongyan.xmpp.errors import StanzaError
from hongyan.xmpp.jid import JID

if TYPE_CHECKING:
    from hongyan.modules.muc.room import Service

MAM = query.MAM

MIGRATION = Migration("muc", 2, (
    """CREATE TABLE muc_archive (
        room TEXT NOT NULL,
        id {bigint} NOT NULL,
        nick TEXT NOT NULL,
        sender TEXT NOT NULL,
        stanza TEXT NOT NULL,
        PRIMARY KEY (room, id)
    )""",
    "CREATE INDEX muc_archive_nick ON muc_archive (room, nick, id)",
))

#: (room, id, nick, sender's bare JID, the message after ``<message``, as the fan-out wrote it)
QueuedRow = tuple[str, int, str, str, bytes]
_HEAD = b"<message xmlns='jabber:client'"


class RoomArchive:
    def __init__(self, muc: Service) -> None:
        self.muc = muc
        self.api = muc.api
        cfg = self.api.options(ArchiveOptions)
        self._max_page = cfg.max_page
        self.ids = IdClock(self.api.now)
        self._writer: BatchWriter[QueuedRow] = BatchWriter(
            self._write, cfg.flush_interval, cfg.flush_rows, self.api.call_later, self.api.spawn,
            cfg.max_queued)
        #: rooms whose archive is being removed
        self._deleting: dict[str, asyncio.Task[None]] = {}

    async def start(self) -> None:
        last = await self.api.db.fetchval("SELECT MAX(id) FROM muc_archive")
        self.ids.last = int(last or 0)
        self.api.metric("gauge", "room_archive_queue", "room messages queued for the room "
                        "archives, not yet handed to the database", lambda: len(self._writer))

    # -- writing (the fan-out path: memory only) ------------------------------------------------
    def add(self, room: str, mid: int, nick: str, sender: str, tail: bytes
            ) -> Awaitable[None] | None:
        """Queue a broadcast message; ``tail`` is what :func:`.room.spliced` put after the
        recipient's JID (``'`` + the rest of the ``<message``). Past ``mam.max_queued`` queued
        messages it returns what the sender must wait for (see :class:`BatchWriter`)."""
        return self._writer.add((room, mid, nick, sender, tail))

    async def _write(self, queued: list[QueuedRow]) -> None:
        rows = [(room, mid, nick, sender, (_HEAD + tail[1:]).decode())
                for room, mid, nick, sender, tail in queued]
        await self.api.db.bulk_insert(
            "INSERT INTO muc_archive (room, id, nick, sender, stanza) VALUES (?,?,?,?,?)", rows)

    async def flush(self) -> None:
        await self._writer.flush()

    def forget(self, room: str) -> None:
        """Remove a room's archive (destroyed, or a temporary room gone): what was archived up
        to now, not what a new room of the same name archives meanwhile. A query on that room
        waits for the removal."""
        upto = self.ids.last
        previous = self._deleting.get(room)
        task = self.api.spawn(self._delete(room, upto, previous))
        self._deleting[room] = task
        task.add_done_callback(lambda t: self._deleting.pop(room, None)
                               if self._deleting.get(room) is t else None)

    async def _delete(self, room: str, upto: int, previous: asyncio.Task[None] | None) -> None:
        if previous is not None:
            await previous
        await self.flush()
        await self.api.db.execute("DELETE FROM muc_archive WHERE room=? AND id<=?", room, upto)

    # -- queries --------------------------------------------------------------------------------
    def check_access(self, room: Room, sender: JID) -> None:
        if not room.config.archive:
            raise StanzaError("service-unavailable", "this room is not archived")
        aff = room.affiliation(sender.bare_str)
        if aff == "outcast":
            raise StanzaError("forbidden", "you are banned from this room")
        if str(sender) in room.by_jid:
            return
        c = room.config
        if (c.members_only or c.password_protected) and AFF_RANK[aff] < AFF_RANK["member"]:
            raise StanzaError("forbidden", "only members may read this room's archive")

    async def _settled(self, room: Room) -> None:
        """Wait until what the room archived is in the table (and a removal is done)."""
        deleting = self._deleting.get(room.name)
        if deleting is not None:
            await asyncio.shield(deleting)
        await self.flush()

    async def on_metadata(self, room: Room, sender: JID, itype: str) -> Element:
        """XEP-0313 §6: the first and last message of the room's archive."""
        self.check_access(room, sender)
        if itype != "get":
            raise StanzaError("bad-request", "archive metadata is read with a get")
        await self._settled(room)
        return query.metadata_element(
            await query.bounds(self.api.db, "muc_archive", "room", room.name))

    async def on_query(self, room: Room, payload: Element, sender: JID, itype: str) -> Element:
        self.check_access(room, sender)
        if itype == "get":
            return query.form_element()
        form = query.parse_form(payload)
        max_n, after, before = query.parse_rsm(payload, self._max_page)
        sees_jids = room.config.non_anonymous or \
            AFF_RANK[room.affiliation(sender.bare_str)] >= AFF_RANK["admin"]

        def with_filter(peer: JID) -> list[tuple[str, object]]:
            # The room's JID (every message), an occupant JID (a nick), or a real JID where
            # real JIDs are not hidden from the requester.
            if peer.bare_str == room.jid_str:
                return [("nick=?", peer.resource)] if peer.resource else []
            if not sees_jids:
                raise StanzaError("not-allowed", "this room does not show real JIDs")
            return [("sender=?", peer.bare_str)]

        await self._settled(room)
        rows, complete, count = await query.page(self.api.db, "muc_archive", "room", room.name,
                                                 with_filter, form, max_n, after, before)
        flip = payload.find("flip-page", MAM) is not None
        query.send_results(self.api.router.reach(sender), payload, rows, flip, room.jid_str)
        return query.fin_element(rows, complete, count, flip)
