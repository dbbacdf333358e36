"""The real command line and the real server process: accounts from the CLI, config checks, and
offline messages that survive ``kill -9``."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.clients import Client
from tests.ports import free_port

PW = "cli-password"


def hongyan(*args: str, stdin: str = "", config: Path | None = None
            ) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "hongyan", *args]
    if config is not None:
        cmd += ["--config", str(config)]
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=60,
                          check=False)


@pytest.fixture
def config(tmp_path: Path, storage_url: str) -> Path:
    return process_config(tmp_path, storage_url)


def process_config(tmp_path: Path, storage_url: str, server_extra: str = "") -> Path:
    """A config file for ``hongyan serve`` on free ports (``server_extra``: more of its
    [server] section)."""
    path = tmp_path / "hongyan.toml"
    path.write_text(f"""
[server]
data_dir = "{tmp_path / 'data'}"
{server_extra}
[c2s]
bind = ["127.0.0.1"]
port = {free_port()}
direct_tls_port = {free_port()}
[http]
bind = ["127.0.0.1"]
port = {free_port()}
tls_port = {free_port()}
[storage]
url = "{storage_url}"
[auth]
failure_delay = 0.05
""")
    return path


def http_port(config: Path) -> int:
    return int(config.read_text().split("[http]")[1].split("\nport = ")[1].split("\n")[0])


def c2s_port(config: Path) -> int:
    for line in config.read_text().splitlines():
        if line.startswith("port = "):
            return int(line.split("=")[1])
    raise AssertionError("no port")


class Server:
    def __init__(self, config: Path) -> None:
        self.config = config
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, own_group: bool = False) -> None:
        """``own_group``: in a process group of its own, as a shell starts a job (so that a
        signal to the group reaches the server and its children, not pytest)."""
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hongyan", "serve", "--config", str(self.config),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            start_new_session=own_group)
        assert self.proc.stdout is not None
        said: list[bytes] = []
        # (the supervisor gives its workers 120 s to start; a loaded machine needs more than
        # 30 s to start two workers on PostgreSQL)
        deadline = asyncio.get_running_loop().time() + 120
        while True:
            left = deadline - asyncio.get_running_loop().time()
            try:
                line = await asyncio.wait_for(self.proc.stdout.readline(), max(left, 0.1))
            except TimeoutError:
                raise AssertionError("the server did not say it was serving in 120 s:\n" +
                                     b"".join(said).decode(errors="replace")) from None
            assert line, "the server exited before serving:\n" + \
                b"".join(said).decode(errors="replace")
            said.append(line)
            if b"serving" in line:
                return

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)

    async def wait(self) -> int:
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), 30)


@pytest.fixture
async def server(config: Path) -> AsyncIterator[Server]:
    srv = Server(config)
    yield srv
    if srv.proc is not None and srv.proc.returncode is None:
        srv.proc.terminate()
        await srv.wait()


async def login(config: Path, jid: str) -> Client:
    c = Client(jid, PW)
    assert await c.login(c2s_port(config))
    return c


async def test_offline_messages_survive_kill_9(config: Path, server: Server) -> None:
    for user in ("romeo", "juliet"):
        assert hongyan("adduser", f"{user}@localhost", stdin=PW + "\n",
                       config=config).returncode == 0
    await server.start()
    romeo = await login(config, "romeo@localhost/r")
    for i in range(10):
        romeo.send_message(mto="juliet@localhost", mbody=f"before the crash {i}", mtype="chat")
    # The session handles its stanzas in order, each offline write committed before the next:
    # once this ping is answered, all ten are on disk.
    await romeo.plugin["xep_0199"].ping(jid="localhost", timeout=10)
    server.kill9()
    assert await server.wait() == -signal.SIGKILL
    await romeo.close()
    await server.start()
    juliet = await login(config, "juliet@localhost/j")
    got = [(await juliet.next_message())["body"] for _ in range(10)]
    assert got == [f"before the crash {i}" for i in range(10)]
    await juliet.close()


async def test_graceful_stop_on_sigterm(config: Path, server: Server) -> None:
    await server.start()
    assert server.proc is not None
    server.proc.terminate()
    assert await server.wait() == 0


async def test_archive_written_when_ctrl_c_hits_the_process_group(config: Path,
                                                                 server: Server) -> None:
    """A Ctrl-C in a terminal signals the server and its archive writer process alike: the
    writer must outlive the server's flush, so that nothing archived is lost."""
    from tests.integration.test_mam import bodies
    from tests.integration.test_mam import query as mam_query

    for user in ("romeo", "juliet"):
        assert hongyan("adduser", f"{user}@localhost", stdin=PW + "\n",
                       config=config).returncode == 0
    await server.start(own_group=True)
    assert server.proc is not None
    romeo = await login(config, "romeo@localhost/r")
    juliet = await login(config, "juliet@localhost/j")
    for i in range(50):
        romeo.send_message(mto="juliet@localhost", mbody=f"m{i}", mtype="chat")
    for _ in range(50):
        await juliet.next_message()
    os.killpg(server.proc.pid, signal.SIGINT)
    assert await server.wait() == 0
    assert server.proc.stdout is not None
    stopped = (await server.proc.stdout.read()).decode(errors="replace")  # for a failure
    await romeo.close()
    await juliet.close()
    await server.start()
    juliet = await login(config, "juliet@localhost/j")
    _, results = await mam_query(juliet, rsm="<max>100</max>")
    assert bodies(results) == [f"m{i}" for i in range(50)], stopped
    await juliet.close()


async def test_account_commands(config: Path) -> None:
    r = hongyan("adduser", "alice@localhost", stdin=PW + "\n", config=config)
    assert r.returncode == 0, r.stderr
    assert "created alice@localhost" in r.stdout
    r = hongyan("adduser", "alice@localhost", stdin=PW + "\n", config=config)
    assert r.returncode == 1 and "already exists" in r.stderr
    assert hongyan("adduser", "bob", stdin=PW + "\n", config=config).returncode == 0
    r = hongyan("users", config=config)
    assert r.stdout.split() == ["alice@localhost", "bob@localhost"]
    r = hongyan("passwd", "alice@localhost", stdin="new-secret\n", config=config)
    assert r.returncode == 0, r.stderr
    srv = Server(config)
    await srv.start()
    try:
        c = Client("alice@localhost/x", "new-secret")
        assert await c.login(c2s_port(config))
        await c.close()
        old = Client("alice@localhost/y", PW)
        assert not await old.login(c2s_port(config))
        await old.close()
    finally:
        assert srv.proc is not None
        srv.proc.terminate()
        await srv.wait()
    r = hongyan("deluser", "alice@localhost", config=config)
    assert r.returncode == 0 and "deleted" in r.stdout
    assert hongyan("users", config=config).stdout.split() == ["bob@localhost"]
    r = hongyan("deluser", "nobody@localhost", config=config)
    assert r.returncode == 1 and "no account" in r.stderr
    r = hongyan("adduser", "eve@elsewhere.example", stdin=PW + "\n", config=config)
    assert r.returncode != 0 and "not an account of localhost" in r.stderr


def test_check_command(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text("[server]\ndomain = \"example.org\"\n")
    r = hongyan("check", config=good)
    assert r.returncode == 0 and "OK" in r.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\ndomain = \"example.org\"\n\n[c2s]\nport = 99999\nbogus = true\n")
    r = hongyan("check", config=bad)
    assert r.returncode == 1
    assert f"{bad}:5: c2s.port: Input should be less than or equal to 65535" in r.stderr
    assert f"{bad}:6: c2s.bogus: unknown key" in r.stderr


def test_serve_refuses_a_bad_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[storage]\nurl = \"mysql://nope\"\n")
    r = hongyan("serve", config=bad)
    assert r.returncode == 2
    assert f"{bad}:2: storage.url:" in r.stderr


def test_example_config_checks() -> None:
    example = Path(__file__).resolve().parents[2] / "hongyan.example.toml"
    r = hongyan("check", config=example)
    assert r.returncode == 0, r.stderr
