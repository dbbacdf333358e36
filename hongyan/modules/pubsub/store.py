"""PubSub tables (SQLite and PostgreSQL): nodes with their configuration, items, affiliations
and subscriptions, keyed by service (an account's bare JID for PEP, ``pubsub.<domain>`` for the
service).

Nodes, affiliations and subscriptions of a service are read once, when the service is first
used, and kept in memory; items are read on request (only each node's last item is kept in
memory). An item's ``seq`` orders a node's items (newest highest); republishing an id moves it
to the end, as XEP-0060 §7.1.2 wants.
"""

from __future__ import annotations

from dataclasses import dataclass

from hongyan.storage.db import Database, Executor
from hongyan.storage.migrations import Migration

MIGRATIONS = (
    Migration("pubsub", 1, (
        """CREATE TABLE pubsub_nodes (
            service TEXT NOT NULL,
            node TEXT NOT NULL,
            config TEXT NOT NULL,
            created {bigint} NOT NULL,
            PRIMARY KEY (service, node)
        )""",
        """CREATE TABLE pubsub_items (
            service TEXT NOT NULL,
            node TEXT NOT NULL,
            item_id TEXT NOT NULL,
            publisher TEXT NOT NULL,
            payload TEXT NOT NULL,
            seq {bigint} NOT NULL,
            PRIMARY KEY (service, node, item_id)
        )""",
        "CREATE INDEX pubsub_items_seq ON pubsub_items (service, node, seq)",
        """CREATE TABLE pubsub_affiliations (
            service TEXT NOT NULL,
            node TEXT NOT NULL,
            jid TEXT NOT NULL,
            affiliation TEXT NOT NULL,
            PRIMARY KEY (service, node, jid)
        )""",
        """CREATE TABLE pubsub_subscriptions (
            service TEXT NOT NULL,
            node TEXT NOT NULL,
            jid TEXT NOT NULL,
            subid TEXT NOT NULL,
            PRIMARY KEY (service, node, jid)
        )""",
        "CREATE INDEX pubsub_subscriptions_jid ON pubsub_subscriptions (jid)",
    )),
)


@dataclass(slots=True)
class StoredItem:
    id: str
    publisher: str
    payload: str
    seq: int


@dataclass(slots=True)
class StoredNode:
    name: str
    config: str
    created: int
    affiliations: dict[str, str]
    subscriptions: dict[str, str]
    last: StoredItem | None


class PubSubStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def services(self) -> set[str]:
        """Every service that has at least one node."""
        return {r[0] for r in await self.db.fetchall("SELECT DISTINCT service FROM pubsub_nodes")}

    async def all_subscriptions(self) -> list[tuple[str, str, str]]:
        """(service, node, jid) of every subscription."""
        return [(r[0], r[1], r[2]) for r in await self.db.fetchall(
            "SELECT service, node, jid FROM pubsub_subscriptions")]

    async def max_seq(self) -> int:
        return int(await self.db.fetchval("SELECT COALESCE(MAX(seq), 0) FROM pubsub_items"))

    async def load(self, service: str) -> list[StoredNode]:
        nodes = {r[0]: StoredNode(r[0], r[1], int(r[2]), {}, {}, None) for r in
                 await self.db.fetchall(
                     "SELECT node, config, created FROM pubsub_nodes WHERE service = ?", service)}
        if not nodes:
            return []
        for node, jid, aff in await self.db.fetchall(
                "SELECT node, jid, affiliation FROM pubsub_affiliations WHERE service = ?",
                service):
            if node in nodes:
                nodes[node].affiliations[jid] = aff
        for node, jid, subid in await self.db.fetchall(
                "SELECT node, jid, subid FROM pubsub_subscriptions WHERE service = ?", service):
            if node in nodes:
                nodes[node].subscriptions[jid] = subid
        # each node's newest item: one query for the service
        for node, item_id, publisher, payload, seq in await self.db.fetchall(
                "SELECT i.node, i.item_id, i.publisher, i.payload, i.seq FROM pubsub_items i "
                "WHERE i.service = ? AND i.seq = (SELECT MAX(j.seq) FROM pubsub_items j "
                "WHERE j.service = i.service AND j.node = i.node)", service):
            if node in nodes:
                nodes[node].last = StoredItem(item_id, publisher, payload, int(seq))
        return list(nodes.values())

    async def create_node(self, service: str, node: str, config: str, created: int,
                          owner: str) -> None:
        async with self.db.transaction() as tx:
            await tx.execute("INSERT INTO pubsub_nodes (service, node, config, created) "
                             "VALUES (?, ?, ?, ?)", service, node, config, created)
            await tx.execute("INSERT INTO pubsub_affiliations (service, node, jid, affiliation) "
                             "VALUES (?, ?, ?, 'owner')", service, node, owner)

    async def set_config(self, service: str, node: str, config: str) -> None:
        await self.db.execute("UPDATE pubsub_nodes SET config = ? WHERE service = ? AND node = ?",
                              config, service, node)

    async def delete_node(self, service: str, node: str) -> None:
        async with self.db.transaction() as tx:
            for table in ("pubsub_items", "pubsub_affiliations", "pubsub_subscriptions",
                          "pubsub_nodes"):
                await tx.execute(f"DELETE FROM {table} WHERE service = ? AND node = ?",
                                 service, node)

    async def delete_service(self, service: str) -> None:
        async with self.db.transaction() as tx:
            for table in ("pubsub_items", "pubsub_affiliations", "pubsub_subscriptions",
                          "pubsub_nodes"):
                await tx.execute(f"DELETE FROM {table} WHERE service = ?", service)

    async def delete_subscriber(self, jid: str) -> None:
        await self.db.execute("DELETE FROM pubsub_subscriptions WHERE jid = ?", jid)
        await self.db.execute("DELETE FROM pubsub_affiliations WHERE jid = ?", jid)

    async def publish(self, service: str, node: str, item: StoredItem, max_items: int) -> None:
        """Store (or replace) an item, then keep only the node's ``max_items`` newest."""
        async with self.db.transaction() as tx:
            await tx.execute(
                "INSERT INTO pubsub_items (service, node, item_id, publisher, payload, seq) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (service, node, item_id) DO UPDATE SET "
                "publisher = excluded.publisher, payload = excluded.payload, seq = excluded.seq",
                service, node, item.id, item.publisher, item.payload, item.seq)
            await self._trim(tx, service, node, max_items)

    async def trim(self, service: str, node: str, max_items: int) -> None:
        async with self.db.transaction() as tx:
            await self._trim(tx, service, node, max_items)

    @staticmethod
    async def _trim(tx: Executor, service: str, node: str, max_items: int) -> None:
        row = await tx.fetchone(
            "SELECT seq FROM pubsub_items WHERE service = ? AND node = ? ORDER BY seq DESC "
            "LIMIT 1 OFFSET ?", service, node, max_items - 1)
        if row is not None:
            await tx.execute("DELETE FROM pubsub_items WHERE service = ? AND node = ? AND seq < ?",
                             service, node, int(row[0]))

    async def retract(self, service: str, node: str, item_id: str) -> bool:
        return await self.db.execute(
            "DELETE FROM pubsub_items WHERE service = ? AND node = ? AND item_id = ?",
            service, node, item_id) > 0

    async def purge(self, service: str, node: str) -> None:
        await self.db.execute("DELETE FROM pubsub_items WHERE service = ? AND node = ?",
                              service, node)

    async def items(self, service: str, node: str, max_items: int | None,
                    ids: list[str] | None) -> list[StoredItem]:
        """Items oldest first: the ``max_items`` newest, or those with the given ids."""
        if ids is not None:
            out: list[StoredItem] = []
            for item_id in ids:
                r = await self.db.fetchone(
                    "SELECT item_id, publisher, payload, seq FROM pubsub_items "
                    "WHERE service = ? AND node = ? AND item_id = ?", service, node, item_id)
                if r is not None:
                    out.append(StoredItem(r[0], r[1], r[2], int(r[3])))
            return sorted(out, key=lambda i: i.seq)
        limit = max_items if max_items is not None else 1_000_000
        rows = await self.db.fetchall(
            "SELECT item_id, publisher, payload, seq FROM pubsub_items WHERE service = ? AND "
            "node = ? ORDER BY seq DESC LIMIT ?", service, node, limit)
        return [StoredItem(r[0], r[1], r[2], int(r[3])) for r in reversed(rows)]

    async def newest(self, service: str, node: str) -> StoredItem | None:
        items = await self.items(service, node, 1, None)
        return items[0] if items else None

    async def set_affiliation(self, service: str, node: str, jid: str, aff: str | None) -> None:
        async with self.db.transaction() as tx:
            await tx.execute("DELETE FROM pubsub_affiliations WHERE service = ? AND node = ? "
                             "AND jid = ?", service, node, jid)
            if aff is not None:
                await tx.execute("INSERT INTO pubsub_affiliations (service, node, jid, "
                                 "affiliation) VALUES (?, ?, ?, ?)", service, node, jid, aff)

    async def set_subscription(self, service: str, node: str, jid: str, subid: str | None
                               ) -> None:
        async with self.db.transaction() as tx:
            await tx.execute("DELETE FROM pubsub_subscriptions WHERE service = ? AND node = ? "
                             "AND jid = ?", service, node, jid)
            if subid is not None:
                await tx.execute("INSERT INTO pubsub_subscriptions (service, node, jid, subid) "
                                 "VALUES (?, ?, ?, ?)", service, node, jid, subid)
