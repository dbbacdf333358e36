"""What an archive's table layout costs SQLite per message: the user archive's version-1 layout
(a row per archive, keyed (owner, id), plus an (owner, peer, id) index) against version 2 (one
row per message appended in id order, with (sender, id), (recipient, id) and the conversation
index), and version 2's table without indexes (the floor). 100 users (``--users``), each
message between two of them, written in batches as the archive writer writes them; reports
SQLite's CPU time per message (the executemany and the commit only).

    .venv/bin/python -m bench.archive_layout                 # 116,000 messages, batches 500, 10000
    .venv/bin/python -m bench.archive_layout --smoke         # what the test suite runs
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

STANZA = ("<message to='user12@localhost/r' from='user13@localhost/r' type='chat' id='m123456'>"
          "<body>" + "x" * 64 + "</body><stanza-id xmlns='urn:xmpp:sid:0' by='user12@localhost' "
          "id='1763904000123456'/></message>")
LAYOUTS = {
    "v1": ["CREATE TABLE m (owner TEXT NOT NULL, id INTEGER NOT NULL, peer TEXT NOT NULL, "
           "peer_res TEXT NOT NULL, stanza TEXT NOT NULL, PRIMARY KEY (owner, id))",
           "CREATE INDEX m_peer ON m (owner, peer, id)"],
    "v2": ["CREATE TABLE m (id INTEGER PRIMARY KEY, sender TEXT, recipient TEXT, from_jid TEXT "
           "NOT NULL, from_res TEXT NOT NULL, to_jid TEXT NOT NULL, to_res TEXT NOT NULL, "
           "conv TEXT NOT NULL, stanza TEXT NOT NULL)",
           "CREATE INDEX m_s ON m (sender, id)", "CREATE INDEX m_r ON m (recipient, id)",
           "CREATE INDEX m_c ON m (conv, id, sender, recipient)"],
}
# version 2's table without its indexes: the floor of an SQL archive, an append and a commit
LAYOUTS["v2-bare"] = LAYOUTS["v2"][:1]


def run(layout: str, messages: int, batch: int, path: Path, users: int = 100) -> float:
    """SQLite CPU seconds per message."""
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "cache_size=-65536"):
        conn.execute(f"PRAGMA {pragma}")
    for ddl in LAYOUTS[layout]:
        conn.execute(ddl)
    mid = 1_763_904_000_000_000
    spent = 0.0
    for _ in range(messages // batch):
        rows: list[tuple[object, ...]] = []
        for _ in range(batch):
            mid += 1
            a = (mid * 7) % users
            b = (a + 1 + mid % 7) % users
            ja, jb = f"user{a}@localhost", f"user{b}@localhost"
            if layout == "v1":
                rows.append((f"user{b}", mid, ja, "r", STANZA))
                rows.append((f"user{a}", mid, jb, "r", STANZA))
            else:
                conv = f"{ja} {jb}" if ja < jb else f"{jb} {ja}"
                rows.append((mid, f"user{a}", f"user{b}", ja, "r", jb, "r", conv, STANZA))
        sql = ("INSERT INTO m VALUES (?,?,?,?,?)" if layout == "v1"
               else "INSERT INTO m VALUES (?,?,?,?,?,?,?,?,?)")
        t0 = time.process_time()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(sql, rows)
        conn.execute("COMMIT")
        spent += time.process_time() - t0
    conn.close()
    return spent / messages


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--messages", type=int, default=116_000)
    ap.add_argument("--users", type=int, default=100, help="accounts the messages are between")
    ap.add_argument("--smoke", action="store_true", help="a few batches, only to prove it runs")
    args = ap.parse_args(argv)
    messages = 2_000 if args.smoke else args.messages
    with tempfile.TemporaryDirectory() as d:
        for layout in LAYOUTS:
            for batch in (500, 10_000 if not args.smoke else 1_000):
                us = run(layout, messages, batch, Path(d) / f"{layout}-{batch}.db",
                         args.users) * 1e6
                print(f"{layout} batch {batch:6,}: {us:6.2f} µs of SQLite CPU per message")
    return 0


if __name__ == "__main__":
    sys.exit(main())
