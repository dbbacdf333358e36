"""Message archive (XEP-0313) query benchmark: fill one user's archive with N messages straight
into the database (executemany), then time pages of 50 through the module's own query code
(``Mam.page``: the page's rows and the RSM count, which is capped at 1,000), forward,
backward, with ``with``, ``start`` and ``end``, at the start, middle and end of the archive.

    .venv/bin/python -m bench.mam                       # SQLite, 1,000,000 rows
    .venv/bin/python -m bench.mam --pg postgresql://user:pw@127.0.0.1/db   # an empty database
    .venv/bin/python -m bench.mam --smoke               # what the test suite runs
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from hongyan.config.loader import load_config
from hongyan.modules.mam import Mam, conversation
from hongyan.server.node import Node
from hongyan.xmpp.stamps import xmpp_datetime

PEERS = 100
STANZA = ("<message xmlns='jabber:client' from='{peer}/phone' to='alice@localhost' type='chat' "
          "id='m{i}'><body>message number {i}, about as long as a chat message is</body>"
          "<stanza-id xmlns='urn:xmpp:sid:0' by='alice@localhost' id='{id}'/></message>")


async def _node(tmp: Path, url: str) -> Node:
    cfg = tmp / "bench.toml"
    cfg.write_text(f"[server]\ndata_dir = '{tmp}'\nlog_level = 'error'\n"
                   f"[storage]\nurl = '{url}'\n")
    node = Node(load_config(cfg))
    await node.start(listen_c2s=False)
    return node


async def fill(node: Node, rows: int, batch: int = 20000) -> tuple[int, int, float]:
    """``rows`` messages for alice, one a second, with 100 peers; returns first and last id."""
    first = int((time.time() - rows - 10) * 1_000_000)
    t0 = time.perf_counter()
    for start in range(0, rows, batch):
        chunk = []
        for i in range(start, min(rows, start + batch)):
            mid = first + i * 1_000_000
            peer = f"peer{i % PEERS}@localhost"
            # alice receives even messages and sends odd ones; the peers archive nothing
            # (remote, or archiving off), as in an archive of one user.
            received = i % 2 == 0
            chunk.append((mid, None if received else "alice", "alice" if received else None,
                          peer if received else "alice@localhost", "phone",
                          "alice@localhost" if received else peer, "phone",
                          conversation("alice@localhost", peer),
                          STANZA.format(peer=peer, i=i, id=mid)))
        await node.db.executemany(
            "INSERT INTO mam_log (id, sender, recipient, from_jid, from_res, to_jid, to_res, "
            "conv, stanza) VALUES (?,?,?,?,?,?,?,?,?)", chunk)
    await node.db.execute("VACUUM ANALYZE mam_log" if node.db.dialect == "postgresql"
                          else "ANALYZE")  # as autovacuum would; SQLite: stats for the planner
    return first, first + (rows - 1) * 1_000_000, time.perf_counter() - t0


async def bench(url: str | None, rows: int, repeat: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as d:
        node = await _node(Path(d), url or f"sqlite:///{d}/mam.db")
        try:
            mod = node.modules["mam"]
            assert isinstance(mod, Mam)
            first, _last, fill_s = await fill(node, rows)
            mid = first + (rows // 2) * 1_000_000
            cases: dict[str, tuple[dict[str, list[str]], str | None, str | None]] = {
                "forward, first page": ({}, None, None),
                "forward, after an id in the middle": ({}, str(mid), None),
                "backward, last page": ({}, None, ""),
                "backward, before an id in the middle": ({}, None, str(mid)),
                "with, first page": ({"with": ["peer7@localhost"]}, None, None),
                "with, last page": ({"with": ["peer7@localhost"]}, None, ""),
                "start in the middle": ({"start": [xmpp_datetime(mid / 1e6)]}, None, None),
                "end in the middle, backward": ({"end": [xmpp_datetime(mid / 1e6)]}, None, ""),
            }
            out: dict[str, Any] = {"engine": node.db.dialect, "rows": rows,
                                   "fill_s": round(fill_s, 1), "ms": {}}
            for name, (form, after, before) in cases.items():
                times = []
                for _ in range(repeat):
                    t0 = time.perf_counter()
                    page, _complete, count = await mod.page("alice", form, 50, after, before)
                    times.append(time.perf_counter() - t0)
                    assert 0 < len(page) <= 50 and (count is None or count > 0)
                out["ms"][name] = round(statistics.median(times) * 1000, 3)
            return out
        finally:
            await node.stop()


def run(url: str | None = None, smoke: bool = False, rows: int = 1_000_000) -> dict[str, Any]:
    return asyncio.run(bench(url, 2000 if smoke else rows, 3 if smoke else 21))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--pg", help="an empty PostgreSQL database URL (default: SQLite)")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--smoke", action="store_true", help="2,000 rows, only to prove it runs")
    args = ap.parse_args(argv)
    res = run(args.pg, args.smoke, args.rows)
    print(f"{res['engine']}: {res['rows']:,} rows filled in {res['fill_s']} s; "
          "median ms per page of 50:")
    for name, ms in res["ms"].items():
        print(f"  {name:40s} {ms:8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
