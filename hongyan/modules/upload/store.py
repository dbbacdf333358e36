"""The uploaded files: one row each (who uploaded it, its name, size, type and time) and the
file itself under the data directory, named by its id alone (``upload/<id[:2]>/<id>``).

The rows are what quotas, expiry, account deletion and downloads read; a file without its row
is never served (an upload that failed between its link and its row), nor is a ``.part`` (an
upload still being written): :meth:`FileStore.orphans` sweeps both once they are old.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from hongyan.storage.db import Database
from hongyan.storage.migrations import Migration

#: the suffix of an upload being written
PART = ".part"
#: seconds a file may be without its row before it counts as a crash's leftover (the row is
#: inserted right after the file gets its name)
ORPHAN_GRACE = 600.0

MIGRATIONS = (
    Migration("upload", 1, (
        """CREATE TABLE upload_files (
            id TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            name TEXT NOT NULL,
            size {bigint} NOT NULL,
            content_type TEXT NOT NULL,
            created {bigint} NOT NULL
        )""",
        "CREATE INDEX upload_files_owner ON upload_files (owner)",
        "CREATE INDEX upload_files_created ON upload_files (created)",
    )),
)


@dataclass(frozen=True, slots=True)
class StoredFile:
    id: str
    owner: str
    name: str
    size: int
    content_type: str
    created: int


class FileStore:
    def __init__(self, db: Database, root: Path) -> None:
        self._db = db
        self.root = root

    def path(self, file_id: str) -> Path:
        """Where the file ``file_id`` (a checked id: no separators) lives."""
        return self.root / file_id[:2] / file_id

    async def add(self, f: StoredFile) -> None:
        await self._db.execute(
            "INSERT INTO upload_files (id, owner, name, size, content_type, created) "
            "VALUES (?,?,?,?,?,?)", f.id, f.owner, f.name, f.size, f.content_type, f.created)

    async def get(self, file_id: str) -> StoredFile | None:
        row = await self._db.fetchone(
            "SELECT id, owner, name, size, content_type, created FROM upload_files "
            "WHERE id=?", file_id)
        if row is None:
            return None
        return StoredFile(str(row[0]), str(row[1]), str(row[2]), int(row[3]), str(row[4]),
                          int(row[5]))

    async def used(self, owner: str | None = None) -> int:
        """Bytes stored by ``owner``, or by everybody."""
        if owner is None:
            value = await self._db.fetchval("SELECT COALESCE(SUM(size), 0) FROM upload_files")
        else:
            value = await self._db.fetchval(
                "SELECT COALESCE(SUM(size), 0) FROM upload_files WHERE owner=?", owner)
        return int(value or 0)

    async def oldest(self, owner: str) -> int | None:
        value = await self._db.fetchval(
            "SELECT MIN(created) FROM upload_files WHERE owner=?", owner)
        return None if value is None else int(value)

    async def present(self, ids: list[str]) -> set[str]:
        """Which of ``ids`` have been uploaded."""
        found: set[str] = set()
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            rows = await self._db.fetchall(
                f"SELECT id FROM upload_files WHERE id IN ({','.join('?' * len(chunk))})",
                *chunk)
            found.update(str(r[0]) for r in rows)
        return found

    async def delete_owner(self, owner: str) -> int:
        """Remove everything ``owner`` uploaded; returns how many files."""
        rows = await self._db.fetchall("SELECT id FROM upload_files WHERE owner=?", owner)
        return await self._delete([str(r[0]) for r in rows])

    async def delete_older(self, before: int, limit: int = 1000) -> int:
        """Remove up to ``limit`` files uploaded before ``before``; returns how many."""
        rows = await self._db.fetchall(
            "SELECT id FROM upload_files WHERE created < ? ORDER BY created LIMIT ?",
            before, limit)
        return await self._delete([str(r[0]) for r in rows])

    async def _delete(self, ids: list[str]) -> int:
        for file_id in ids:
            self.unlink(file_id)
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            await self._db.execute(
                f"DELETE FROM upload_files WHERE id IN ({','.join('?' * len(chunk))})", *chunk)
        return len(ids)

    def part_path(self, file_id: str) -> Path:
        """A new name for one PUT's body of ``file_id`` while it is written (each PUT its own:
        two at once never write into each other)."""
        return self.root / file_id[:2] / f"{file_id}.{secrets.token_hex(8)}{PART}"

    async def orphans(self, now: float, part_age: float, grace: float = ORPHAN_GRACE) -> int:
        """Delete what no upload will ever finish: a ``.part`` untouched for ``part_age``
        seconds (longer than a PUT may take), and a file without its row (a crash between the
        link and the insert) untouched for ``grace`` seconds. Returns how many went."""
        if not self.root.is_dir():
            return 0
        gone = 0
        finals: dict[str, Path] = {}
        for folder in self.root.iterdir():
            if not folder.is_dir():
                continue
            for entry in os.scandir(folder):
                try:
                    age = now - entry.stat(follow_symlinks=False).st_mtime
                except FileNotFoundError:
                    continue
                if entry.name.endswith(PART):
                    if age > part_age:
                        gone += self._remove(entry.path)
                elif age > grace:
                    finals[entry.name] = Path(entry.path)
        ids = list(finals)
        for done in await self.present(ids):
            del finals[done]
        for path in finals.values():
            gone += self._remove(str(path))
        return gone

    @staticmethod
    def _remove(path: str) -> int:
        try:
            os.unlink(path)
        except FileNotFoundError:
            return 0
        return 1

    def unlink(self, file_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(file_id))


__all__ = ["MIGRATIONS", "FileStore", "StoredFile"]
