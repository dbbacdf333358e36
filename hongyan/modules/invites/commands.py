"""XEP-0401's ad-hoc commands: ``urn:xmpp:invite#invite`` (a contact invitation, for every
local user when ``[invites] allow_users`` is on, else for the administrators) and
``urn:xmpp:invite#create-account`` (an account invitation, for the administrators). Both answer
the ``urn:xmpp:invite#invitation`` result form: uri, landing-url, expire."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hongyan.modules.adhoc.commands import Command, Step
from hongyan.modules.adhoc.forms import Field, Values, bad_payload, checked, form
from hongyan.xmpp.errors import StanzaError
from hongyan.xmpp.jid import JID, JIDError

if TYPE_CHECKING:
    from hongyan.modules.invites.service import InviteService

INVITE = "urn:xmpp:invite#invite"
CREATE_ACCOUNT = "urn:xmpp:invite#create-account"
FORM_TYPE = "urn:xmpp:invite#create-account"

USERNAME = Field("username", "text-single", "Username (empty: the newcomer chooses)")
SUBSCRIBE = Field("roster-subscription", "boolean",
                  "Add the new account to my contacts (both ways)", values=("1",))
USES = Field("uses", "text-single", "How many accounts it may create", values=("1",))


def _local(requester: str, domain: str) -> str | None:
    try:
        jid = JID.parse(requester)
    except JIDError:
        return None
    return jid.local if jid.domain == domain and jid.local else None


class InviteCommand(Command):
    node = INVITE
    name = "Invite someone"
    admin = False

    def __init__(self, invites: InviteService) -> None:
        self.invites = invites

    def may(self, requester: str, admins: frozenset[str]) -> bool:
        if _local(requester, self.invites.api.domain) is None:
            return False
        return self.invites.options.allow_users or requester in admins

    async def start(self, state: dict[str, Any]) -> Step:
        requester = str(state["requester"])
        user = _local(requester, self.invites.api.domain)
        assert user is not None
        cap = self.invites.options.per_user
        if requester not in self.invites.api.admins and \
                await self.invites.store.active_of(user, self.invites.api.now()) >= cap:
            raise StanzaError("resource-constraint", f"you have {cap} active invitations "
                                                     "already")
        made = await self.invites.create(inviter=user, kind="contact")
        return Step(form=self.invites.result_form(made), note="shown once: share it now")


class CreateAccountCommand(Command):
    node = CREATE_ACCOUNT
    name = "Invite someone to make an account"
    admin = True
    fields = (USERNAME, SUBSCRIBE, USES)

    def __init__(self, invites: InviteService) -> None:
        self.invites = invites

    async def start(self, state: dict[str, Any]) -> Step:
        return Step(form(self.fields, FORM_TYPE, self.name), actions=("complete",))

    async def step(self, action: str, values: Values, state: dict[str, Any]) -> Step:
        v = checked(self.fields, values)
        username = (v["username"] or [""])[0].strip()
        subscribe = (v["roster-subscription"] or ["1"])[0] in ("1", "true")
        uses_text = (v["uses"] or ["1"])[0].strip() or "1"
        if not uses_text.isdigit():
            raise bad_payload("uses: a whole number")
        inviter = _local(str(state["requester"]), self.invites.api.domain) or ""
        try:
            made = await self.invites.create(inviter=inviter if subscribe else "",
                                             username=username, uses=int(uses_text))
        except ValueError as exc:
            raise bad_payload(str(exc)) from None
        return Step(form=self.invites.result_form(made), note="shown once: share it now")


def invite_commands(invites: InviteService) -> list[Command]:
    return [InviteCommand(invites), CreateAccountCommand(invites)]


__all__ = ["CREATE_ACCOUNT", "INVITE", "invite_commands"]
