"""Driving XEP-0050 commands with slixmpp's client side (``xep_0050``): a session's steps as
awaitable calls, and one-off requests whose errors the tests look at."""

from __future__ import annotations

import asyncio
from typing import Any

from slixmpp import JID
from slixmpp.exceptions import IqError

from tests.integration.clients import TIMEOUT, Client

COMMANDS = "http://jabber.org/protocol/commands"
ADMIN = "http://jabber.org/protocol/admin#"
PLUGINS = ("xep_0004", "xep_0050")

FormValues = dict[str, str | list[str]]


class Run:
    """One command session, driven through slixmpp's workflow API (start_command,
    continue_command, complete_command, cancel_command)."""

    def __init__(self, client: Client, node: str) -> None:
        self.client = client
        self.node = node if "#" in node or ":" in node else ADMIN + node
        self.session: dict[str, Any] = {}
        self._answer: asyncio.Future[Any] | None = None

    def _expect(self) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def got(iq: Any, _session: dict[str, Any]) -> None:
            if not fut.done():
                fut.set_result(iq)

        self.session["next"] = got
        self.session["error"] = got
        return fut

    def _form(self, values: FormValues | None) -> Any:
        if values is None:
            return None
        form = self.client.plugin["xep_0004"].make_form(ftype="submit")
        for var, value in values.items():
            form.add_field(var=var, value=value)
        return form

    async def start(self) -> Any:
        fut = self._expect()
        self.client.plugin["xep_0050"].start_command(JID("localhost"), self.node, self.session)
        return await asyncio.wait_for(fut, TIMEOUT)

    async def act(self, action: str, values: FormValues | None = None) -> Any:
        fut = self._expect()
        self.session["payload"] = self._form(values)
        plugin = self.client.plugin["xep_0050"]
        if action == "complete":
            plugin.complete_command(self.session)
        elif action == "cancel":
            plugin.cancel_command(self.session)
        else:
            plugin.continue_command(self.session, direction=action)
        return await asyncio.wait_for(fut, TIMEOUT)


async def run(client: Client, node: str, values: FormValues | None = None) -> Any:
    """Execute a command and complete it with ``values``: the final answer."""
    r = Run(client, node)
    first = await r.start()
    assert first["type"] == "result", first
    if first["command"]["status"] == "completed":
        return first
    return await r.act("complete", values or {})


def field_values(iq: Any, var: str) -> list[str]:
    """The values of field ``var`` of the answer's form."""
    form = iq["command"]["form"]
    value = form.get_fields()[var].get_value()
    return value if isinstance(value, list) else [value]


async def send(client: Client, node: str, action: str = "execute",
               sessionid: str | None = None, values: FormValues | None = None) -> Any:
    """One raw request; returns the answer (an error answer too)."""
    payload = Run(client, node)._form(values) if values is not None else None
    try:
        return await client.plugin["xep_0050"].send_command(
            JID("localhost"), Run(client, node).node, action=action, payload=payload,
            sessionid=sessionid, timeout=TIMEOUT)
    except IqError as exc:
        return exc.iq


def error_of(iq: Any) -> tuple[str, set[str]]:
    """(condition, the XEP-0050 application conditions) of an error answer."""
    assert iq["type"] == "error", iq
    apps = {el.tag.split("}")[1] for el in iq["error"].xml
            if el.tag.startswith("{" + COMMANDS + "}")}
    return iq["error"]["condition"], apps
