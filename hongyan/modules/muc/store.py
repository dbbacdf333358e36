"""Persistent rooms: their configuration, subject and affiliations (SQLite and PostgreSQL).

Temporary rooms are never written. A persistent room is written when it becomes persistent,
on each configuration or subject change and on each affiliation change; all rooms are read
once at start (rooms are few and small next to the messages that flow through them).
"""

from __future__ import annotations

from dataclasses import dataclass

from hongyan.storage.db import Database
from hongyan.storage.migrations import Migration

MIGRATIONS = (
    Migration("muc", 1, (
        """CREATE TABLE muc_rooms (
            name TEXT PRIMARY KEY,
            config TEXT NOT NULL,
            subject TEXT NOT NULL,
            subject_by TEXT NOT NULL,
            created {bigint} NOT NULL
        )""",
        """CREATE TABLE muc_affiliations (
            room TEXT NOT NULL,
            jid TEXT NOT NULL,
            affiliation TEXT NOT NULL,
            nick TEXT NOT NULL,
            reason TEXT NOT NULL,
            PRIMARY KEY (room, jid)
        )""",
    )),
)


@dataclass(slots=True)
class Affiliation:
    affiliation: str
    nick: str = ""
    reason: str = ""


@dataclass(slots=True)
class StoredRoom:
    name: str
    config: str
    subject: str
    subject_by: str
    created: int
    affiliations: dict[str, Affiliation]


class RoomStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def load(self) -> list[StoredRoom]:
        rooms = {r[0]: StoredRoom(r[0], r[1], r[2], r[3], int(r[4]), {}) for r in
                 await self.db.fetchall(
                     "SELECT name, config, subject, subject_by, created FROM muc_rooms")}
        for room, jid, aff, nick, reason in await self.db.fetchall(
                "SELECT room, jid, affiliation, nick, reason FROM muc_affiliations"):
            if room in rooms:
                rooms[room].affiliations[jid] = Affiliation(aff, nick, reason)
        return list(rooms.values())

    async def save_room(self, name: str, config: str, subject: str, subject_by: str,
                        created: int) -> None:
        await self.db.execute(
            "INSERT INTO muc_rooms (name, config, subject, subject_by, created) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET config = excluded.config, "
            "subject = excluded.subject, subject_by = excluded.subject_by",
            name, config, subject, subject_by, created)

    async def save_all(self, name: str, config: str, subject: str, subject_by: str,
                       created: int, affiliations: dict[str, Affiliation]) -> None:
        """A room that just became persistent: the room and every affiliation, at once."""
        async with self.db.transaction() as tx:
            await tx.execute(
                "INSERT INTO muc_rooms (name, config, subject, subject_by, created) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "config = excluded.config, subject = excluded.subject, "
                "subject_by = excluded.subject_by",
                name, config, subject, subject_by, created)
            await tx.execute("DELETE FROM muc_affiliations WHERE room = ?", name)
            for jid, a in affiliations.items():
                await tx.execute(
                    "INSERT INTO muc_affiliations (room, jid, affiliation, nick, reason) "
                    "VALUES (?, ?, ?, ?, ?)", name, jid, a.affiliation, a.nick, a.reason)

    async def set_affiliations(self, name: str, changes: dict[str, Affiliation | None]) -> None:
        async with self.db.transaction() as tx:
            for jid, a in changes.items():
                await tx.execute("DELETE FROM muc_affiliations WHERE room = ? AND jid = ?",
                                 name, jid)
                if a is not None:
                    await tx.execute(
                        "INSERT INTO muc_affiliations (room, jid, affiliation, nick, reason) "
                        "VALUES (?, ?, ?, ?, ?)", name, jid, a.affiliation, a.nick, a.reason)

    async def delete_room(self, name: str) -> None:
        async with self.db.transaction() as tx:
            await tx.execute("DELETE FROM muc_affiliations WHERE room = ?", name)
            await tx.execute("DELETE FROM muc_rooms WHERE name = ?", name)
