"""A real ejabberd (Debian's) as a federation peer: its own domain, config, Mnesia spool and
logs in a directory it owns, its own address (a loopback one, or a host of its own: a
network namespace, ``netns.py``), its own Erlang node name (nothing clashes with another
ejabberd on the machine), DNS from the tests' dnsmasq (an ``inetrc`` naming it as Erlang's
only resolver) and a certificate from the tests' CA, which it trusts (``s2s_cafile``).

ejabberd runs as the ``ejabberd`` user (``setpriv``; ``ejabberdctl`` refuses root), in the
foreground, so the test owns its process, in a mount namespace of its own whose
/etc/resolv.conf names the tests' DNS server. In a network namespace, ``ejabberdctl`` runs
there too (the node's Erlang port mapper is on that namespace's loopback)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.integration.netns import NetNs

EJABBERDCTL = shutil.which("ejabberdctl") or "/usr/sbin/ejabberdctl"


def require() -> None:
    if not Path(EJABBERDCTL).exists():
        if os.environ.get("CI"):
            pytest.fail("ejabberd is missing (apt-get install ejabberd)")
        pytest.skip("ejabberd is not installed (apt-get install ejabberd)")


def _erl_ip(address: str) -> str:
    return "{" + ",".join(address.split(".")) + "}"


class Ejabberd:
    """ejabberd for ``domain`` on ``address`` (c2s on ``c2s_port``, s2s on 5269), with MUC on
    ``conference.<domain>``, PEP (mod_pubsub), caps, rosters, vCards and MAM."""

    def __init__(self, domain: str, address: str, c2s_port: int, nameserver: str,
                 cert: Path, key: Path, ca_file: Path, dialback: bool = True,
                 netns: NetNs | None = None) -> None:
        self.netns = netns
        # the test's tmp dir is root's alone: ejabberd gets a directory it owns
        self.dir = Path(tempfile.mkdtemp(prefix="hongyan-ejabberd-"))
        self.domain = domain
        self.address = address
        self.c2s_port = c2s_port
        self.node = f"s2stest{os.getpid()}x{c2s_port}@localhost"
        for sub in ("etc", "db", "log"):
            (self.dir / sub).mkdir()
        etc = self.dir / "etc"
        (etc / "server.pem").write_text(cert.read_text() + key.read_text())
        shutil.copy(ca_file, etc / "ca.pem")
        # SRV records are Erlang's resolver's (inet_res: the inetrc), addresses the C
        # library's (net:getaddrinfo: /etc/resolv.conf, which ejabberd's own mount namespace
        # replaces with this one)
        (etc / "resolv.conf").write_text(f"nameserver {nameserver}\n")
        (etc / "inetrc").write_text(
            # the node's own name (…@localhost) from the table, every other name from dnsmasq
            '{lookup, [file, dns]}.\n{hosts_file, ""}.\n{resolv_conf, ""}.\n'
            '{host, {127,0,0,1}, ["localhost"]}.\n'
            f"{{nameserver, {_erl_ip(nameserver)}, 53}}.\n"
            "{timeout, 2000}.\n{retry, 2}.\n")
        (etc / "ejabberdctl.cfg").write_text(
            f"ERLANG_NODE={self.node}\nINET_DIST_INTERFACE=127.0.0.1\n"
            "ERL_EPMD_ADDRESS=127.0.0.1\n"
            'ERL_OPTIONS="-env ERL_CRASH_DUMP_BYTES 0"\n')
        dialback_mod = "  mod_s2s_dialback: {}\n" if dialback else ""
        (etc / "ejabberd.yml").write_text(f"""
loglevel: debug
log_rotate_count: 0
hosts:
  - "{domain}"
certfiles:
  - "{etc}/server.pem"
ca_file: "{etc}/ca.pem"
s2s_cafile: "{etc}/ca.pem"
s2s_use_starttls: required
s2s_dns_timeout: 5
s2s_dns_retries: 1
listen:
  -
    port: {c2s_port}
    ip: "{address}"
    module: ejabberd_c2s
    max_stanza_size: 262144
    starttls: true
    starttls_required: false
  -
    port: 5269
    ip: "{address}"
    module: ejabberd_s2s_in
    max_stanza_size: 524288
auth_method: internal
auth_password_format: plain
disable_sasl_mechanisms:
  - "digest-md5"
  - "X-OAUTH2"
acl:
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
  c2s:
    allow: all
  muc_create:
    allow: all
  pubsub_createnode:
    allow: local
  s2s:
    allow: all
shaper_rules:
  max_user_sessions: 10
api_permissions:
  "console commands":
    from:
      - ejabberd_ctl
    who: all
    what: "*"
modules:
  mod_caps: {{}}
  mod_disco: {{}}
  mod_mam:
    default: always
  mod_muc:
    host: "conference.{domain}"
    access: all
    access_create: muc_create
    default_room_options:
      persistent: false
      mam: false
  mod_offline: {{}}
  mod_ping: {{}}
  mod_pubsub:
    access_createnode: pubsub_createnode
    plugins:
      - flat
      - pep
    force_node_config:
      "eu.siacs.conversations.axolotl.*":
        access_model: open
  mod_roster: {{}}
  mod_vcard:
    search: false
{dialback_mod}""")
        shutil.chown(self.dir, "ejabberd", "ejabberd")
        for p in self.dir.rglob("*"):
            shutil.chown(p, "ejabberd", "ejabberd")
        self.proc: subprocess.Popen[bytes] | None = None

    def _ctl(self, *args: str) -> list[str]:
        inside = self.netns.exec_prefix() if self.netns is not None else []
        return [*inside, "setpriv", "--reuid=ejabberd", "--regid=ejabberd", "--init-groups",
                "env", "HOME=/var/lib/ejabberd", EJABBERDCTL,
                "--config-dir", str(self.dir / "etc"), "--spool", str(self.dir / "db"),
                "--logs", str(self.dir / "log"), "--node", self.node, *args]

    async def ctl(self, *args: str, timeout: float = 30) -> str:
        """``ejabberdctl`` against this node; its output (raises when it fails)."""
        p = await asyncio.create_subprocess_exec(*self._ctl(*args), cwd=self.dir / "db",
                                                 stdout=subprocess.PIPE,
                                                 stderr=subprocess.STDOUT)
        try:
            out, _ = await asyncio.wait_for(p.communicate(), timeout)
        except TimeoutError:
            p.kill()
            await p.wait()
            raise
        if p.returncode != 0:
            raise RuntimeError(f"ejabberdctl {' '.join(args)}: {out.decode()}")
        return out.decode()

    async def register(self, user: str, password: str) -> None:
        await self.ctl("register", user, self.domain, password)

    async def start(self) -> None:
        inside = self.netns.exec_prefix() if self.netns is not None else []
        mount = [*inside, "unshare", "--mount", "--propagation", "private", "sh", "-c",
                 'mount --bind "$0" /etc/resolv.conf && exec "$@"',
                 str(self.dir / "etc" / "resolv.conf")]
        command = [*mount, *self._ctl("foreground")[len(inside):]]
        self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                     cwd=self.dir / "db", start_new_session=True)
        for _ in range(600):
            if self.proc.poll() is not None:
                raise RuntimeError(f"ejabberd exited: {self.tail()}")
            try:
                _, w = await asyncio.open_connection(self.address, self.c2s_port)
                w.close()
                break
            except OSError:
                await asyncio.sleep(0.1)
        else:
            raise RuntimeError(f"ejabberd does not listen: {self.tail()}")
        await self.ctl("started", timeout=60)

    def log_text(self) -> str:
        try:
            return (self.dir / "log" / "ejabberd.log").read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, n: int = 60) -> str:
        """The log's last ``n`` lines of XML sent and received, warnings and errors."""
        keep = ("XML on stream", "[warning]", "[error]", "[critical]")
        lines = [ln for ln in self.log_text().splitlines() if any(k in ln for k in keep)]
        return "\n".join(ln[:2000] for ln in lines[-n:])

    def stop(self) -> None:
        """``ejabberdctl stop`` (Mnesia closes cleanly); the process group killed when that
        does not end it in time."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                done = subprocess.run(self._ctl("stop"), cwd=self.dir / "db", timeout=30,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      check=False).returncode == 0
            except subprocess.TimeoutExpired:
                done = False
            try:
                self.proc.wait(20 if done else 1)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(5)
        self.proc = None

    def remove(self, keep_log: Path | None = None) -> None:
        """Delete its directory (its log copied to ``keep_log`` first, when given)."""
        if keep_log is not None:
            keep_log.write_text(self.log_text())
        shutil.rmtree(self.dir, ignore_errors=True)
