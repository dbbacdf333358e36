"""``hongyan``: serve, manage accounts, admin API tokens and invitations, check and migrate."""

from __future__ import annotations

import argparse
import asyncio
import gc
import getpass
import logging
import os
import resource
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from hongyan.config.loader import ConfigError, check_config, load_config
from hongyan.config.schema import Config
from hongyan.server.accounts import AccountError
from hongyan.server.node import Node
from hongyan.xmpp.jid import JID, JIDError

DEFAULT_CONFIG = "hongyan.toml"


def _config_path(arg: str | None) -> str | None:
    if arg:
        return arg
    env = os.environ.get("HONGYAN_CONFIG")
    if env:
        return env
    return DEFAULT_CONFIG if Path(DEFAULT_CONFIG).exists() else None


def _load(arg: str | None) -> Config:
    try:
        return load_config(_config_path(arg))
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        raise SystemExit(2) from None


def tune_gc() -> None:
    """Stanzas are trees without back-references, freed by reference counting; the cyclic
    collector only has to find rare cycles. Its default gen-0 threshold (700 allocations)
    makes it run every few messages and, now and then, walk every long-lived object: a
    latency spike of milliseconds under load. Move what start-up built out of its sight and
    let it run far less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def raise_fd_limit() -> int:
    """Each connection is a file descriptor: lift the soft limit (often 1,024) to the hard one,
    as a server holding many sessions must. Returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else 1_048_576
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


async def _serve(config: Config) -> bool:
    fds = raise_fd_limit()
    if fds < 4096:
        logging.getLogger("hongyan").warning(
            "only %d file descriptors allowed: at most about that many connections "
            "(raise the hard limit, e.g. LimitNOFILE= in systemd)", fds)
    node = Node(config)
    await run_node(node, lambda _stop: print(
        f"hongyan: serving {node.domain} on c2s port {node.c2s_port}"
        f", direct TLS port {node.direct_tls_port or 'off'}, HTTP port {node.http_port or 'off'}"
        f" and HTTPS port {node.https_port or 'off'}", flush=True))
    return node.shutdown_asked is True


async def run_node(node: Node, ready: Callable[[asyncio.Event], object]) -> None:
    """Start ``node``, call ``ready`` with the event that stops it (SIGINT and SIGTERM set
    it), and stop the node once it is set (a single-process server and each worker)."""
    await node.start()
    tune_gc()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if node.on_shutdown is None:
        node.on_shutdown = lambda _restart: stop.set()
    ready(stop)
    await stop.wait()
    await node.stop()


def reexec() -> None:
    """Start this program again with the same arguments (a restart asked by an admin)."""
    logging.getLogger("hongyan").warning("restarting")
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, "-m", "hongyan", *sys.argv[1:]])


def _user(config: Config, text: str) -> str:
    try:
        jid = JID.parse(text) if "@" in text else JID.parse(f"{text}@{config.server.domain}")
    except JIDError as exc:
        raise SystemExit(f"hongyan: invalid JID {text!r}: {exc}") from None
    if jid.domain != config.server.domain or not jid.local or jid.resource:
        raise SystemExit(f"hongyan: {text} is not an account of {config.server.domain}")
    return jid.local


def _password(prompt_twice: bool) -> str:
    if not sys.stdin.isatty():
        line = sys.stdin.readline()
        pw = line.rstrip("\r\n")
    else:
        pw = getpass.getpass("Password: ")
        if prompt_twice and getpass.getpass("Again: ") != pw:
            raise SystemExit("hongyan: the passwords differ")
    if not pw:
        raise SystemExit("hongyan: empty password")
    return pw


async def _with_storage(config: Config, args: argparse.Namespace) -> int:
    node = Node(config)
    await node.open_storage()
    try:
        cmd = args.command
        if cmd == "adduser":
            user = _user(config, args.jid)
            pw = _password(True)
            try:
                await node.accounts.create(user, pw, time.time())
            except AccountError as exc:
                print(f"hongyan: {exc}", file=sys.stderr)
                return 1
            print(f"created {user}@{config.server.domain}")
        elif cmd == "passwd":
            user = _user(config, args.jid)
            pw = _password(True)
            try:
                await node.accounts.set_password(user, pw)
            except AccountError as exc:
                print(f"hongyan: {exc}", file=sys.stderr)
                return 1
            print(f"changed the password of {user}@{config.server.domain}")
        elif cmd == "deluser":
            user = _user(config, args.jid)
            if not await node.delete_account(user):
                print(f"hongyan: no account {user}@{config.server.domain}", file=sys.stderr)
                return 1
            print(f"deleted {user}@{config.server.domain}")
        elif cmd == "users":
            for u in await node.accounts.list():
                print(f"{u}@{config.server.domain}")
        elif cmd == "migrate":
            print("the database is up to date")
        elif cmd == "token":
            return await _token(node, args)
        elif cmd == "invite":
            return await _invite(node, args)
        return 0
    finally:
        await node.db.close()


def _parse_lifetime(text: str) -> float:
    """``30d``, ``12h``, ``90m``, ``3600`` (seconds) or ``never``."""
    text = text.strip().lower()
    if text in ("never", "0"):
        return 0.0
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    try:
        value = float(text[:-1]) * units[text[-1]] if text[-1:] in units else float(text)
    except ValueError:
        raise SystemExit(f"hongyan: --expires {text!r}: use e.g. 30d, 12h, 90m or never"
                         ) from None
    if not 0 < value < 100 * 365 * 86400:
        raise SystemExit("hongyan: --expires must be positive and under 100 years (or never)")
    return value


def _stamp(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(t)) if t else "never"


async def _token(node: Node, args: argparse.Namespace) -> int:
    """``hongyan token create|list|revoke``: the admin API's bearer tokens."""
    from hongyan.modules.adminapi.tokens import Tokens

    tokens = Tokens(node.db)
    now = time.time()
    if args.token_command == "create":
        row, token = await tokens.create(args.scope, args.name, _parse_lifetime(args.expires),
                                         now)
        print(f"created token {row.id} (scope {row.scope}, expires "
              f"{_stamp(row.expires_at)} UTC); it is shown only now:", file=sys.stderr)
        print(token)
    elif args.token_command == "list":
        print(f"{'id':<12}  {'scope':<5}  {'created (UTC)':<16}  {'expires (UTC)':<16}  "
              f"{'state':<7}  name")
        for t in await tokens.list():
            print(f"{t.id:<12}  {t.scope:<5}  {_stamp(t.created_at):<16}  "
                  f"{_stamp(t.expires_at):<16}  {t.state(now):<7}  {t.name}")
    else:
        if not await tokens.revoke(args.id):
            print(f"hongyan: no token {args.id}", file=sys.stderr)
            return 1
        print(f"revoked token {args.id}")
    return 0


def _lifetime(text: str, option: str) -> float:
    """``7d``, ``12h``, ``90m`` or seconds."""
    text = text.strip().lower()
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    try:
        return float(text[:-1]) * units[text[-1]] if text[-1:] in units else float(text)
    except ValueError:
        raise SystemExit(f"hongyan: {option} {text!r}: use e.g. 7d, 12h, 90m or seconds"
                         ) from None


async def _invite(node: Node, args: argparse.Namespace) -> int:
    """``hongyan invite create|list|revoke``: invitations (XEP-0401), as the invites module
    keeps them; a token is printed once, when it is made."""
    from hongyan.modules.invites import invite_uri
    from hongyan.modules.invites.options import MAX_TTL, MAX_USES, InvitesOptions
    from hongyan.modules.invites.store import InviteStore

    config = node.config
    options = config.options(InvitesOptions)
    store = InviteStore(node.db)
    now = time.time()
    if args.invite_command == "create":
        username = _user(config, args.account) if args.account else ""
        inviter = _user(config, args.inviter) if args.inviter else ""
        if username and await node.accounts.exists(username):
            raise SystemExit(f"hongyan: the account {username}@{config.server.domain} "
                             "exists already")
        if inviter and not await node.accounts.exists(inviter):
            raise SystemExit(f"hongyan: no account {inviter}@{config.server.domain}")
        uses = options.uses if args.uses is None else args.uses
        if not 1 <= uses <= MAX_USES:
            raise SystemExit(f"hongyan: --uses is between 1 and {MAX_USES}")
        ttl = options.ttl if args.ttl is None else _lifetime(args.ttl, "--ttl")
        if not 60 <= ttl <= MAX_TTL:
            raise SystemExit(f"hongyan: --ttl is between 60 seconds and {MAX_TTL // 86400} "
                             "days")
        invite, token = await store.create("account", inviter, username, uses, ttl, now)
        base = options.base_url
        if not base and config.http.port:
            base = f"http://{config.server.domain}:{config.http.port}"
        print(f"created invitation {invite.id} ({uses} use{'s' if uses > 1 else ''}, "
              f"expires {_stamp(invite.expires_at)} UTC); it is shown only now:",
              file=sys.stderr)
        print(invite_uri(config.server.domain, invite, token))
        if base:
            print(f"{base}/invite/{token}")
    elif args.invite_command == "list":
        print(f"{'id':<12}  {'uses':>9}  {'expires (UTC)':<16}  {'state':<7}  "
              f"{'account':<16}  inviter")
        for i in await store.list():
            print(f"{i.id:<12}  {f'{i.used}/{i.max_uses}':>9}  {_stamp(i.expires_at):<16}  "
                  f"{i.state(now):<7}  {i.username or '-':<16}  {i.inviter or '-'}")
    else:
        if not await store.revoke(args.id):
            print(f"hongyan: no invitation {args.id}", file=sys.stderr)
            return 1
        print(f"revoked invitation {args.id}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hongyan", description="Hongyan XMPP server")
    parser.add_argument("--config", "-c", help="config file (default: ./hongyan.toml if present, "
                        "else built-in defaults; or $HONGYAN_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="run the server")
    p.add_argument("--config", "-c", dest="sub_config")
    for name, helptext in (("adduser", "create an account (password from a prompt or stdin)"),
                           ("deluser", "delete an account and all its data"),
                           ("passwd", "change an account's password")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("jid")
        p.add_argument("--config", "-c", dest="sub_config")
    for name, helptext in (("users", "list accounts"),
                           ("migrate", "create or upgrade the database schema"),
                           ("check", "validate the config file")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--config", "-c", dest="sub_config")
    p = sub.add_parser("token", help="bearer tokens of the admin API (/api/)")
    p.add_argument("--config", "-c", dest="sub_config")
    tok = p.add_subparsers(dest="token_command", required=True)
    t = tok.add_parser("create", help="make a token (printed once, stored hashed)")
    t.add_argument("--scope", choices=("admin", "read"), default="admin",
                   help="admin: every route; read: GET routes only (default: admin)")
    t.add_argument("--expires", default="90d",
                   help="lifetime: 30d, 12h, 90m, seconds, or never (default: 90d)")
    t.add_argument("--name", default="", help="a note to recognise it by in the list")
    t.add_argument("--config", "-c", dest="sub_config")
    t = tok.add_parser("list", help="list tokens (never the tokens themselves)")
    t.add_argument("--config", "-c", dest="sub_config")
    t = tok.add_parser("revoke", help="revoke a token by its id")
    t.add_argument("id")
    t.add_argument("--config", "-c", dest="sub_config")
    p = sub.add_parser("invite", help="invitations to register (XEP-0401)")
    p.add_argument("--config", "-c", dest="sub_config")
    inv = p.add_subparsers(dest="invite_command", required=True)
    t = inv.add_parser("create", help="make an invitation (its token printed once)")
    t.add_argument("--account", help="the username kept for the newcomer (default: the "
                   "newcomer chooses)")
    t.add_argument("--inviter", help="a user the newcomer becomes a contact of, both ways")
    t.add_argument("--uses", type=int, help="how many accounts it makes (default: "
                   "[invites] uses)")
    t.add_argument("--ttl", help="lifetime: 7d, 12h, 90m or seconds (default: [invites] ttl)")
    t.add_argument("--config", "-c", dest="sub_config")
    t = inv.add_parser("list", help="list invitations (never their tokens)")
    t.add_argument("--config", "-c", dest="sub_config")
    t = inv.add_parser("revoke", help="revoke an invitation by its id")
    t.add_argument("id")
    t.add_argument("--config", "-c", dest="sub_config")
    args = parser.parse_args(argv)
    cfg_arg = getattr(args, "sub_config", None) or args.config
    if args.command == "check":
        path = _config_path(cfg_arg)
        if path is None:
            print("hongyan: no config file given and no ./hongyan.toml; defaults are valid")
            return 0
        problems = check_config(path)
        for problem in problems:
            print(str(problem), file=sys.stderr)
        if problems:
            return 1
        print(f"{path}: OK")
        return 0
    config = _load(cfg_arg)
    logging.basicConfig(level=config.server.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "serve":
        if config.server.workers > 1:
            from hongyan.cluster.supervisor import RESTART, serve_workers

            _install_uvloop()
            rc = serve_workers(config, _config_path(cfg_arg))
            if rc == RESTART:
                reexec()
            return rc
        _install_uvloop()
        if asyncio.run(_serve(config)):
            reexec()
        return 0
    return asyncio.run(_with_storage(config, args))


if __name__ == "__main__":
    sys.exit(main())
