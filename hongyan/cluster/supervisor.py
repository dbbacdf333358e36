"""The supervisor of a multi-worker node (``server.workers`` > 1).

It prepares what must happen once (the schema migrations, the server's secrets, the self-signed
certificate: one :meth:`Node.start` without listeners), opens the listening sockets, starts the
workers with those sockets inherited, and prints the serving line once every worker is ready.
A worker that dies takes the node down (the others stop, the supervisor exits non-zero) rather
than leave its accounts' sessions in a half-known state; a service manager restarts the node.
SIGINT and SIGTERM stop the workers and then the supervisor.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

from hongyan.config.schema import Config

log = logging.getLogger("hongyan.supervisor")


def _listeners(hosts: list[str], port: int) -> list[socket.socket]:
    """The listening sockets of ``c2s.bind`` (each address a host name resolves to, as a
    one-process node's listener binds them), all on one port (with port 0, the one the kernel
    picked for the first)."""
    socks: list[socket.socket] = []
    seen: set[tuple[int, str]] = set()
    try:
        for host in hosts or ["0.0.0.0"]:
            for family, _, _, _, addr in socket.getaddrinfo(
                    host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE):
                if (family, str(addr[0])) in seen:
                    continue
                seen.add((family, str(addr[0])))
                sock = socket.socket(family, socket.SOCK_STREAM)
                socks.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:  # "::" beside "0.0.0.0": each its own family
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind((addr[0], port, *addr[2:]))
                port = sock.getsockname()[1]
                sock.listen(1024)
                sock.set_inheritable(True)
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


async def prepare(config: Config) -> None:
    """What must happen once before the workers start: migrations, secrets, certificate."""
    from hongyan.server.node import Node

    node = Node(config)
    await node.start(listen_c2s=False)
    await node.stop()


async def _supervise(config: Config, config_path: str | None) -> int:
    c2s = config.c2s
    socks = {"c2s": _listeners(c2s.bind, c2s.port)}
    if c2s.direct_tls:
        socks["tls"] = _listeners(c2s.bind, c2s.direct_tls_port)
    if config.components:
        socks["component"] = _listeners(config.component_listener.bind,
                                        config.component_listener.port)
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
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
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
        port = socks["c2s"][0].getsockname()[1]
        tls = socks["tls"][0].getsockname()[1] if "tls" in socks else "off"
        print(f"hongyan: serving {config.server.domain} on c2s port {port} and direct TLS "
              f"port {tls} ({count} workers)", flush=True)
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
        return 0 if stopped in done else 1
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
