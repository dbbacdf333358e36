"""The supervisor of a multi-worker node (``server.workers`` > 1).

It prepares what must happen once (the schema migrations, the server's secrets, the self-signed
certificate: one :meth:`Node.start` without listeners), opens the listening sockets, starts the
workers with those sockets inherited, and prints the serving line once every worker is ready.
A worker that dies takes the node down (the others stop, the supervisor exits non-zero) rather
than leave its accounts' sessions in a half-known state; a service manager restarts the node.
SIGINT and SIGTERM stop the workers and then the supervisor; SIGHUP (what a worker sends when
an administrator asks for a restart) stops them too, and then the program starts again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile

from hongyan.config.schema import Config
from hongyan.transport.tcp import listening_sockets

log = logging.getLogger("hongyan.supervisor")

#: what :func:`serve_workers` returns when a restart was asked (``hongyan serve`` re-executes)
RESTART = -1


async def prepare(config: Config) -> None:
    """What must happen once before the workers start: migrations, secrets, certificate."""
    from hongyan.server.node import Node

    node = Node(config)
    await node.start(listen_c2s=False)
    await node.stop()


async def _supervise(config: Config, config_path: str | None) -> int:
    c2s = config.c2s
    http = config.http
    socks = {"c2s": listening_sockets(c2s.bind, c2s.port)}
    if c2s.direct_tls:
        socks["tls"] = listening_sockets(c2s.bind, c2s.direct_tls_port)
    if http.enabled:
        socks["http"] = listening_sockets(http.bind, http.port)
        if http.tls:
            socks["https"] = listening_sockets(http.bind, http.tls_port)
    if config.components:
        socks["component"] = listening_sockets(config.component_listener.bind,
                                               config.component_listener.port)
    if config.s2s_enabled:
        socks["s2s"] = listening_sockets(config.s2s.bind, config.s2s.port)
        if config.s2s.direct_tls:
            socks["s2s-tls"] = listening_sockets(config.s2s.bind, config.s2s.direct_tls_port)
    if config.irc.enabled:
        socks["irc"] = listening_sockets(config.irc.bind, config.irc.port)
        if config.irc.tls:
            socks["irc-tls"] = listening_sockets(config.irc.bind, config.irc.tls_port)
    fds = [sock.fileno() for group in socks.values() for sock in group]
    run_dir = tempfile.mkdtemp(prefix="hongyan-workers-")
    ready_r, ready_w = os.pipe()
    count = config.server.workers
    procs: list[asyncio.subprocess.Process] = []
    env = dict(os.environ)
    if config_path:
        env["HONGYAN_CONFIG"] = config_path
    try:
        for index in range(count):
            args = [sys.executable, "-m", "hongyan.cluster.worker", str(index), str(count),
                    run_dir, str(ready_w)]
            for name, group in socks.items():
                args.append(f"{name}={','.join(str(sock.fileno()) for sock in group)}")
            procs.append(await asyncio.create_subprocess_exec(
                *args, env=env, pass_fds=[ready_w, *fds]))
        os.close(ready_w)
        ready_w = -1
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        restart = False

        def restart_asked() -> None:
            nonlocal restart
            restart = True
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, restart_asked)
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                     os.fdopen(ready_r, "rb", buffering=0))
        ready_r = -1
        waits = [asyncio.ensure_future(p.wait()) for p in procs]
        try:
            got = await asyncio.wait_for(reader.readexactly(count), 120)
        except (asyncio.IncompleteReadError, TimeoutError):
            got = b""
        if len(got) != count:
            log.error("the workers did not all start")
            return 1
        def port(name: str) -> int | str:
            return int(socks[name][0].getsockname()[1]) if name in socks else "off"
        print(f"hongyan: serving {config.server.domain} on c2s port {port('c2s')}, direct "
              f"TLS port {port('tls')}, HTTP port {port('http')} and HTTPS port "
              f"{port('https')} ({count} workers)", flush=True)
        stopped = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait([stopped, *waits], return_when=asyncio.FIRST_COMPLETED)
        if stopped not in done:
            dead = [i for i, w in enumerate(waits) if w in done]
            log.error("worker %s exited (status %s): stopping the node", dead,
                      [procs[i].returncode for i in dead])
        for p in procs:
            if p.returncode is None:
                p.send_signal(signal.SIGTERM)
        await asyncio.wait(waits, timeout=30)
        for p in procs:
            if p.returncode is None:
                p.kill()
        if stopped not in done:
            return 1
        return RESTART if restart else 0
    finally:
        for group in socks.values():
            for sock in group:
                sock.close()
        for fd in (ready_r, ready_w):
            if fd >= 0:
                os.close(fd)
        for p in procs:
            if p.returncode is None:
                p.kill()
        shutil.rmtree(run_dir, ignore_errors=True)


def serve_workers(config: Config, config_path: str | None) -> int:
    # in a child process: the supervisor then holds no node (it lives as long as the workers)
    env = dict(os.environ)
    if config_path:
        env["HONGYAN_CONFIG"] = config_path
    if subprocess.run([sys.executable, "-m", "hongyan.cluster.worker", "prepare"], env=env,
                      check=False).returncode != 0:
        log.error("preparing the storage failed")
        return 1
    return asyncio.run(_supervise(config, config_path))
