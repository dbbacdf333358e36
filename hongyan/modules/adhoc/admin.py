"""XEP-0133 Service Administration as ad-hoc commands: each one a form whose values go to the
shared operations (:class:`~hongyan.modules.admin.ops.AdminOps`), which check them and act.
The lists (registered and online users) are paged: ``complete`` answers the first page, as
the XEP says, and ``next``/``prev`` walk through the pages."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from hongyan.modules.adhoc.commands import Command, Step
from hongyan.modules.adhoc.forms import Field, Values, bad_payload, checked, form
from hongyan.modules.admin.ops import AdminOps
from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element
from hongyan.xmpp.stamps import xmpp_datetime

ADMIN = "http://jabber.org/protocol/admin"
PAGE_SIZES = ("25", "50", "75", "100", "150", "200", "none")
DELAYS = ("0", "30", "60", "90", "120", "180", "300", "600", "900", "1800", "3600")

ACCOUNT = Field("accountjid", "jid-single", "The Jabber ID of the account", required=True)
ACCOUNTS = Field("accountjids", "jid-multi", "The Jabber IDs of the accounts", required=True)
PASSWORD = Field("password", "text-private", "The password", required=True)
SUBJECT = Field("subject", "text-single", "Subject")
MAX_ITEMS = Field("max_items", "list-single", "How many users to list at a time",
                  options=PAGE_SIZES, values=("25",))
DELAY = Field("delay", "list-single", "Seconds before it happens", options=DELAYS,
              values=("0",))

#: what a form command does with its checked values: a step that completes it
Run = Callable[[Values], Awaitable[Step]]


def one(values: Values, var: str) -> str:
    got = values.get(var) or [""]
    return got[0] if var.startswith("password") else got[0].strip()


def text(values: Values, var: str) -> str:
    return "\n".join(values.get(var, []))


def done(note: str = "", result: Element | None = None) -> Step:
    return Step(form=result, note=note)


class FormCommand(Command):
    """One form, then ``complete``: ``run`` gets the checked values."""

    def __init__(self, node: str, name: str, fields: tuple[Field, ...], run: Run,
                 instructions: str = "") -> None:
        self.node = f"{ADMIN}#{node}"
        self.name = name
        self.fields = fields
        self.run = run
        self.instructions = instructions

    async def start(self, state: dict[str, Any]) -> Step:
        return Step(form(self.fields, ADMIN, self.name, self.instructions),
                    actions=("complete",))

    async def step(self, action: str, values: Values, state: dict[str, Any]) -> Step:
        return await self.run(checked(self.fields, values))


class Count(Command):
    """A number, shown at once (get-registered-users-num, get-online-users-num)."""

    def __init__(self, node: str, name: str, var: str,
                 count: Callable[[], Awaitable[int]]) -> None:
        self.node = f"{ADMIN}#{node}"
        self.name = name
        self.var = var
        self.count = count

    async def start(self, state: dict[str, Any]) -> Step:
        n = await self.count()
        return done(result=form([Field(self.var, "text-single", self.name, values=(str(n),))],
                                ADMIN, kind="result"))


class UserList(Command):
    """A paged list of bare JIDs (get-registered-users-list, get-online-users-list)."""

    def __init__(self, node: str, name: str, var: str,
                 page: Callable[[int, int], Awaitable[tuple[int, list[str]]]]) -> None:
        self.node = f"{ADMIN}#{node}"
        self.name = name
        self.var = var
        self.page = page

    async def start(self, state: dict[str, Any]) -> Step:
        return Step(form([MAX_ITEMS], ADMIN, self.name), actions=("next", "complete"))

    async def step(self, action: str, values: Values, state: dict[str, Any]) -> Step:
        if "limit" not in state:
            size = (checked([MAX_ITEMS], values)[MAX_ITEMS.var] or ["25"])[0]
            state["limit"] = 1000 if size == "none" else int(size)
            state["offset"] = 0
        elif action == "next":
            state["offset"] += state["limit"]
        total, jids = await self.page(state["offset"], state["limit"])
        first = state["offset"] + 1
        note = (f"{first}-{state['offset'] + len(jids)} of {total}" if jids
                else f"none of {total}")
        result = form([Field(self.var, "jid-multi", self.name, values=tuple(jids))], ADMIN,
                      kind="result" if action == "complete" else "form")
        if action == "complete":
            return done(note, result)
        more = state["offset"] + len(jids) < total
        return Step(result, actions=("next", "complete") if more else ("complete",),
                    default="next" if more else "complete", note=note)


def roster_payload(items: list[Any]) -> Element:
    q = Element("query", NS.ROSTER)
    for it in items:
        attrs = {"jid": it.contact, "subscription": it.subscription}
        if it.name:
            attrs["name"] = it.name
        el = q.add("item", attrs=attrs)
        for g in it.groups:
            el.add("group", text=g)
    return q


def admin_commands(ops: AdminOps) -> list[Command]:
    """The XEP-0133 commands over ``ops``."""

    async def add_user(v: Values) -> Step:
        if one(v, "password") != one(v, "password-verify"):
            raise bad_payload("the passwords differ")
        user = await ops.add_user(one(v, "accountjid"), one(v, "password"))
        return done(f"created {ops.jid(user)}")

    async def each(v: Values, act: Callable[[str], Awaitable[object]], what: str) -> Step:
        jids = v["accountjids"]
        users = [await ops.existing(j) for j in jids]  # all checked before any is touched
        for u in users:
            await act(u)
        return done(f"{what}: " + ", ".join(ops.jid(u) for u in users))

    async def disable(u: str) -> None:
        await ops.set_disabled(u, True)

    async def enable(u: str) -> None:
        await ops.set_disabled(u, False)

    async def password(v: Values) -> Step:
        await ops.set_password(one(v, "accountjid"), one(v, "password"))
        return done("the password was changed")

    async def roster(v: Values) -> Step:
        jid = one(v, "accountjid")
        items = await ops.roster(jid)
        x = form([Field("accountjid", "jid-single", values=(ops.jid(ops.username(jid)),))],
                 ADMIN, kind="result")
        x.append(roster_payload(items))
        return done(result=x)

    async def last_login(v: Values) -> Step:
        jid = one(v, "accountjid")
        stamp = await ops.last_login(jid)
        value = xmpp_datetime(stamp) if stamp is not None else "never"
        return done(result=form([ACCOUNT, Field("lastlogin", "text-single", "Last login")],
                                ADMIN, kind="result",
                                values={"accountjid": [ops.jid(ops.username(jid))],
                                        "lastlogin": [value]}))

    async def announce(v: Values) -> Step:
        n = await ops.announce(one(v, "subject"), text(v, "announcement"))
        return done(f"sent to {n} sessions")

    async def set_motd(v: Values) -> Step:
        await ops.set_motd(one(v, "subject"), text(v, "motd"))
        return done("the message of the day was set")

    async def delete_motd(_v: Values) -> Step:
        await ops.delete_motd()
        return done("the message of the day was deleted")

    def stop(restart: bool) -> Run:
        async def run(v: Values) -> Step:
            delay = int(one(v, "delay") or "0")
            await ops.shutdown(delay, text(v, "announcement"), restart)
            return done(f"{'restarting' if restart else 'shutting down'} in {delay} s")
        return run

    announcement = Field("announcement", "text-multi", "Announcement", required=True)
    notice = Field("announcement", "text-multi", "Announcement to online users")
    motd = Field("motd", "text-multi", "Message of the day", required=True)

    async def delete(v: Values) -> Step:
        return await each(v, ops.delete_user, "deleted")

    async def disable_all(v: Values) -> Step:
        return await each(v, disable, "disabled")

    async def enable_all(v: Values) -> Step:
        return await each(v, enable, "enabled")

    async def end(v: Values) -> Step:
        return await each(v, ops.end_sessions, "sessions ended")

    async def registered_num() -> int:
        return (await ops.registered(0, 1))[0]

    async def online_num() -> int:
        return (await ops.online(0, 1))[0]

    return [
        FormCommand("add-user", "Add a user", (
            ACCOUNT, PASSWORD,
            Field("password-verify", "text-private", "Retype the password", required=True),
            Field("email", "text-single", "Email address"),
            Field("given_name", "text-single", "Given name"),
            Field("surname", "text-single", "Family name")), add_user),
        FormCommand("delete-user", "Delete users", (ACCOUNTS,), delete),
        FormCommand("disable-user", "Disable users", (ACCOUNTS,), disable_all,
                    "Disabled users cannot log in; their sessions end."),
        FormCommand("reenable-user", "Re-enable users", (ACCOUNTS,), enable_all),
        FormCommand("end-user-session", "End users' sessions", (ACCOUNTS,), end),
        FormCommand("change-user-password", "Change a user's password", (ACCOUNT, PASSWORD),
                    password),
        FormCommand("get-user-roster", "Get a user's roster", (ACCOUNT,), roster),
        FormCommand("get-user-lastlogin", "Get a user's last login", (ACCOUNT,), last_login),
        Count("get-registered-users-num", "Number of registered users",
              "registeredusersnum", registered_num),
        Count("get-online-users-num", "Number of online users", "onlineusersnum", online_num),
        UserList("get-registered-users-list", "Registered users", "registereduserjids",
                 ops.registered),
        UserList("get-online-users-list", "Online users", "onlineuserjids", ops.online),
        FormCommand("announce", "Send an announcement to all online users",
                    (SUBJECT, announcement), announce),
        FormCommand("set-motd", "Set the message of the day", (SUBJECT, motd), set_motd),
        FormCommand("edit-motd", "Edit the message of the day", (SUBJECT, motd), set_motd),
        FormCommand("delete-motd", "Delete the message of the day", (), delete_motd),
        FormCommand("shutdown", "Shut down the server", (DELAY, notice), stop(False)),
        FormCommand("restart", "Restart the server", (DELAY, notice), stop(True)),
    ]


__all__ = ["ADMIN", "admin_commands"]
