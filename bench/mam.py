"""MAM query benchmark: one user's archive of N messages, pages of 50.

Fills ``mam_messages`` directly (executemany, one transaction per 10,000 rows) for one owner
talking to 10 contacts (plus as many rows of another owner, so the owner's index range matters),
then times the module's query handler (SQL, rows, count; result stanzas are built but not sent)
for: the first page, the last page (empty ``<before/>``), a page in the middle forward and
backward, a page filtered by ``with``, and a ``start`` range. ``--smoke`` uses 200 rows.

    .venv/bin/python -m bench.mam                       # 1,000,000 rows on SQLite
    .venv/bin/python -m bench.mam --pg postgresql://postgres@127.0.0.1:5432/mambench
    .venv/bin/python -m bench.mam --smoke
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from hongyan.config.loader import load_config
from hongyan.modules.mam import MAM, RSM, Mam
from hongyan.server.module import Iq
from hongyan.server.node import Node
from hongyan.xmpp.element import Element
from hongyan.xmpp.jid import JID
from hongyan.xmpp.stamps import xmpp_datetime

OWNER = "owner"
BASE = 1_700_000_000_000_000  # microseconds: ids are times
STANZA = ("<message xmlns='jabber:client' type='chat' to='owner@localhost' "
          "from='c{c}@localhost/r' id='m{i}'><body>message number {i} with some text</body>"
          "</message>")


async def fill(node: Node, n: int) -> None:
    db = node.db
    batch: list[tuple[str, int, str, str]] = []
    for i in range(n):
        c = i % 10
        batch.append((OWNER, BASE + i * 1000, f"c{c}@localhost", STANZA.format(c=c, i=i)))
        batch.append(("other", BASE + i * 1000 + 1, "x@localhost", STANZA.format(c=c, i=i)))
        if len(batch) >= 20_000:
            async with db.transaction() as tx:
                await tx.executemany(
                    "INSERT INTO mam_messages (owner, id, with_jid, stanza) VALUES (?,?,?,?)",
                    batch)
            batch = []
    if batch:
        async with db.transaction() as tx:
            await tx.executemany(
                "INSERT INTO mam_messages (owner, id, with_jid, stanza) VALUES (?,?,?,?)", batch)
    if db.dialect == "postgresql":
        await db.execute("ANALYZE mam_messages")


def make_iq(form: dict[str, str], rsm: dict[str, str | None]) -> Iq:
    sender = JID.parse(f"{OWNER}@localhost/bench")
    stanza = Element("iq", attrs={"type": "set", "id": "q"})
    q = stanza.add("query", MAM, {"queryid": "b"})
    if form:
        x = q.add("x", "jabber:x:data", {"type": "submit"})
        for var, value in form.items():
            x.add("field", None, {"var": var}).add("value", None, None, value)
    s = q.add("set", RSM)
    for name, value in rsm.items():
        s.add(name, RSM, None, value)
    return Iq(stanza, sender, sender.bare, None, q)


async def bench(url: str | None, n: int, repeat: int) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "hongyan.toml"
        storage = url or f"sqlite:///{tmp}/mam.db"
        cfg.write_text(f"[server]\ndata_dir = '{tmp}'\nlog_level = 'error'\n"
                       f"[storage]\nurl = '{storage}'\n")
        node = Node(load_config(cfg))
        await node.start(listen_c2s=False)
        try:
            t0 = time.perf_counter()
            await fill(node, n)
            fill_s = time.perf_counter() - t0
            mam = node.modules["mam"]
            assert isinstance(mam, Mam)
            mid = str(BASE + (n // 2) * 1000)
            cases: dict[str, tuple[dict[str, str], dict[str, str | None]]] = {
                "first page": ({}, {"max": "50"}),
                "last page (before/)": ({}, {"max": "50", "before": None}),
                "middle, forward (after)": ({}, {"max": "50", "after": mid}),
                "middle, backward (before)": ({}, {"max": "50", "before": mid}),
                "with, last page": ({"with": "c3@localhost"}, {"max": "50", "before": None}),
                "start range": ({"start": xmpp_datetime((BASE + (n // 3) * 1000) / 1e6)},
                                {"max": "50"}),
            }
            out = [{"case": "fill", "rows": 2 * n, "seconds": round(fill_s, 2)}]
            for name, (form, rsm) in cases.items():
                times = []
                for _ in range(repeat):
                    iq = make_iq(form, {k: (v if v is not None else "") for k, v in rsm.items()})
                    t = time.perf_counter()
                    reply = await mam.on_query(iq)
                    times.append(time.perf_counter() - t)
                    assert reply.find("fin", MAM) is not None
                out.append({"case": name, "rows": n, "ms_median": round(
                    statistics.median(times) * 1000, 2), "ms_max": round(max(times) * 1000, 2)})
            return out
        finally:
            await node.stop()


def run(n: int, url: str | None = None, repeat: int = 20) -> list[dict[str, Any]]:
    return asyncio.run(bench(url, n, repeat))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--rows", type=int, default=1_000_000, help="messages in the owner's archive")
    ap.add_argument("--pg", help="a PostgreSQL URL (an empty database) instead of SQLite")
    ap.add_argument("--smoke", action="store_true", help="200 rows, only to prove it runs")
    args = ap.parse_args(argv)
    results = run(200 if args.smoke else args.rows, args.pg, 3 if args.smoke else 20)
    json.dump(results, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
