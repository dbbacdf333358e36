"""A worker process of a multi-worker node: ``python -m hongyan.cluster.worker INDEX COUNT RUN_DIR
READY_FD c2s=FD[,FD...] [tls=FD[,FD...]]`` (a listening socket per address), started by
:mod:`hongyan.cluster.supervisor` with the config in ``$HONGYAN_CONFIG`` and the listening
sockets inherited (``... worker prepare``: the one-time storage preparation, run before the
workers start)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys


async def _run(argv: list[str]) -> int:
    from hongyan.cli.main import _load, raise_fd_limit, run_node
    from hongyan.server.node import Node, WorkerSpec

    index, count, run_dir, ready_fd = int(argv[0]), int(argv[1]), argv[2], int(argv[3])
    listeners = {}
    for arg in argv[4:]:
        name, _, fd = arg.partition("=")
        listeners[name] = [socket.socket(fileno=int(f)) for f in fd.split(",")]
    config = _load(None)
    logging.basicConfig(level=config.server.log_level.upper(),
                        format=f"%(asctime)s %(levelname)s w{index} %(name)s: %(message)s")
    raise_fd_limit()
    node = Node(config, worker=WorkerSpec(index, count, run_dir, listeners))
    # an administrator's shutdown or restart is the whole node's: the supervisor's to do
    node.on_shutdown = lambda restart: os.kill(
        os.getppid(), signal.SIGHUP if restart else signal.SIGTERM)

    def ready(stop: asyncio.Event) -> None:
        workers = node.workers
        assert workers is not None
        workers.on_peer_lost = lambda _index: stop.set()
        os.write(ready_fd, b"r")
        os.close(ready_fd)

    await run_node(node, ready)
    return 0


def main() -> int:
    from hongyan.cli.main import _install_uvloop, _load

    if sys.argv[1:] == ["prepare"]:
        from hongyan.cluster.supervisor import prepare

        config = _load(None)
        logging.basicConfig(level=config.server.log_level.upper(),
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        asyncio.run(prepare(config))
        return 0
    _install_uvloop()
    return asyncio.run(_run(sys.argv[1:]))


if __name__ == "__main__":
    sys.exit(main())
