"""bench/accounts.py - create benchmark accounts user<first>..user<first+N-1> (one password) fast.

In-band registration of 100,000 accounts through the load generator takes minutes and one
generator crash loses the lot; this writes them straight into the server's database (the server
may be stopped), deriving the SCRAM keys in worker threads on every core, exactly as
``hongyan adduser`` does. Existing accounts are left alone.

    .venv/bin/python -m bench.accounts --config /path/hongyan.toml --users 100100
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from hongyan.config.loader import load_config
from hongyan.server.accounts import AccountError
from hongyan.server.node import Node


async def create(config: str, first: int, users: int, prefix: str, password: str,
                 concurrency: int) -> tuple[int, int]:
    node = Node(load_config(config))
    await node.open_storage()
    try:
        have = set(await node.accounts.list())
        todo = iter([f"{prefix}{i}" for i in range(first, first + users)
                     if f"{prefix}{i}" not in have])
        made = 0
        now = time.time()

        async def worker() -> None:
            nonlocal made
            for name in todo:
                try:
                    await node.accounts.create(name, password, now)
                    made += 1
                except AccountError:
                    pass  # created meanwhile by someone else

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return made, users - made
    finally:
        await node.db.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--config", required=True)
    ap.add_argument("--users", type=int, required=True)
    ap.add_argument("--first", type=int, default=1)
    ap.add_argument("--prefix", default="user")
    ap.add_argument("--password", default="pass")
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    made, existed = asyncio.run(create(args.config, args.first, args.users, args.prefix,
                                       args.password, args.concurrency))
    print(f"created {made}, existed {existed}, in {time.monotonic() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
