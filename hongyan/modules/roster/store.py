"""Roster storage: items, per-user roster versions, and inbound subscription requests.

Every change is one transaction: the item row and the user's version counter move together, so
two sessions of one user changing the roster at once can neither lose an update nor reuse a
version. Items are cached in memory per user while the user has sessions (the presence hot path
reads them on every broadcast).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from hongyan.storage.migrations import Migration

if TYPE_CHECKING:
    from hongyan.storage.db import Database

MIGRATIONS = (
    Migration("roster", 1, (
        """CREATE TABLE roster_items (
            username TEXT NOT NULL,
            contact TEXT NOT NULL,
            name TEXT NOT NULL DEFAULT '',
            subscription TEXT NOT NULL DEFAULT 'none',
            ask INTEGER NOT NULL DEFAULT 0,
            approved INTEGER NOT NULL DEFAULT 0,
            groups_json TEXT NOT NULL DEFAULT '[]',
            PRIMARY KEY (username, contact)
        )""",
        """CREATE TABLE roster_versions (
            username TEXT PRIMARY KEY,
            version {bigint} NOT NULL
        )""",
        """CREATE TABLE subscription_requests (
            username TEXT NOT NULL,
            contact TEXT NOT NULL,
            stanza TEXT NOT NULL,
            PRIMARY KEY (username, contact)
        )""",
    )),
)

SUBSCRIPTIONS = ("none", "to", "from", "both")


@dataclass(frozen=True, slots=True)
class RosterItem:
    contact: str
    name: str = ""
    subscription: str = "none"
    ask: bool = False
    approved: bool = False
    groups: tuple[str, ...] = ()

    @property
    def has_to(self) -> bool:
        """The user receives the contact's presence."""
        return self.subscription in ("to", "both")

    @property
    def has_from(self) -> bool:
        """The contact receives the user's presence."""
        return self.subscription in ("from", "both")

    def evolve(self, **changes: object) -> RosterItem:
        return replace(self, **changes)  # type: ignore[arg-type]


class RosterStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def load(self, username: str) -> tuple[dict[str, RosterItem], int]:
        rows = await self._db.fetchall(
            "SELECT contact, name, subscription, ask, approved, groups_json FROM roster_items "
            "WHERE username=?", username)
        items = {
            r[0]: RosterItem(r[0], r[1], r[2], bool(r[3]), bool(r[4]), tuple(json.loads(r[5])))
            for r in rows
        }
        ver = await self._db.fetchval("SELECT version FROM roster_versions WHERE username=?",
                                      username)
        return items, int(ver or 0)

    async def save(self, username: str, contact: str, item: RosterItem | None) -> int:
        """Write (or delete, when ``item`` is None) one item; return the new roster version."""
        async with self._db.transaction() as tx:
            if item is None:
                await tx.execute("DELETE FROM roster_items WHERE username=? AND contact=?",
                                 username, contact)
            else:
                await tx.execute(
                    "INSERT INTO roster_items (username, contact, name, subscription, ask, "
                    "approved, groups_json) VALUES (?,?,?,?,?,?,?) "
                    "ON CONFLICT (username, contact) DO UPDATE SET name=excluded.name, "
                    "subscription=excluded.subscription, ask=excluded.ask, "
                    "approved=excluded.approved, groups_json=excluded.groups_json",
                    username, contact, item.name, item.subscription, int(item.ask),
                    int(item.approved), json.dumps(list(item.groups)))
            ver = await tx.fetchval(
                "INSERT INTO roster_versions (username, version) VALUES (?, 1) "
                "ON CONFLICT (username) DO UPDATE SET version = roster_versions.version + 1 "
                "RETURNING version", username)
        return int(ver)

    async def requests(self, username: str) -> list[tuple[str, str]]:
        return [(r[0], r[1]) for r in await self._db.fetchall(
            "SELECT contact, stanza FROM subscription_requests WHERE username=? "
            "ORDER BY contact", username)]

    async def add_request(self, username: str, contact: str, stanza: str) -> None:
        await self._db.execute(
            "INSERT INTO subscription_requests (username, contact, stanza) VALUES (?,?,?) "
            "ON CONFLICT (username, contact) DO UPDATE SET stanza=excluded.stanza",
            username, contact, stanza)

    async def remove_request(self, username: str, contact: str) -> bool:
        return await self._db.execute(
            "DELETE FROM subscription_requests WHERE username=? AND contact=?",
            username, contact) > 0

    async def delete_user(self, username: str) -> None:
        async with self._db.transaction() as tx:
            for table in ("roster_items", "roster_versions", "subscription_requests"):
                await tx.execute(f"DELETE FROM {table} WHERE username=?", username)
