"""XEP-0357 Push Notifications (``urn:xmpp:push:0``), the user's server side.

A client registers an *app server* (a JID, typically the service of the client's vendor that
talks to Apple's or Google's push service) and a node (an opaque name for the device there):

* ``<enable xmlns='urn:xmpp:push:0' jid=... node=...>`` with an optional
  ``pubsub#publish-options`` data form (Conversations and Monal put a ``secret`` in it) keeps a
  registration per (user, app server JID, node), in the ``push_registrations`` table; enabling
  the same pair again replaces its form. ``<disable jid=.../>`` removes every registration with
  that app server, ``<disable jid node/>`` one. At most ``push.max_per_user`` per account: a
  new one then replaces the oldest. Errors: a missing ``jid`` or ``node``, or a form that is not
  publish-options → ``bad-request``; a ``jid`` that is not a JID → ``jid-malformed``; an IQ to
  another account → ``forbidden``.
* **When** a notification is sent: a chat/normal message worth waking a phone for (a body, an
  encrypted payload, a call invitation, a file link; not chat states, receipts or markers)

  - was stored offline because the account had no available session (the offline module's
    :class:`OfflineStored` hook), or
  - was queued to a stream-management session that is hibernated (connection dropped, waiting
    for resumption; the SM module's :class:`QueuedForResumption` hook).

  A presence subscription request notifies too, when it is stored while the account has no
  available session (the presence module's :class:`SubscriptionStored` hook) or queued to a
  hibernated session. The same stanza queued to two hibernated sessions of the account in one
  pass notifies once.
* **What** is sent, to each registration: an IQ set from the account's bare JID to the app
  server, a pubsub ``<publish node>`` of one item ``<notification xmlns='urn:xmpp:push:0'>``
  with the ``urn:xmpp:push:summary`` form (``message-count``: messages notified since the
  account's last initial presence, left out when only subscription requests are pending;
  ``pending-subscription-count`` likewise, when there are some; the last-message fields only
  when the notification is for a message: ``last-message-sender`` unless
  ``push.include_sender`` is off; ``last-message-body`` only with ``push.include_body``, never
  for an encrypted message,
  whose body is a fallback text), and the publish-options form given at enable.
* **Answers**: a result is success. A timeout, an error of type ``wait`` or
  ``remote-server-timeout`` is retried ``push.retries`` times after ``push.retry_delay`` s,
  doubling; then the notification is given up (logged), the registration kept. Any other error
  (``item-not-found``, ``not-authorized``, ``forbidden``, ... : the app server no longer knows
  the device) removes the registration, as MongooseIM and Prosody do (the client enables
  again at its next login), except ``remote-server-not-found``, which gives up this
  notification only (this server does not federate yet, so a remote app server is
  unreachable, not wrong). Routing never waits for the app server: notifications are sent
  from tasks.

Cost: the hooks are registered only while at least one account has a registration
(:class:`HookSet`); otherwise no message pays anything for this module. With registrations, a
hook starts with one dict lookup of the recipient.

Members of private groups: the MUC module fires :class:`MucMemberMissedMessage` for each
message of a persistent members-only room that a local member has no client in; this module
notifies it like a chat message from the occupant's JID (no dependency between the two).

API for other modules::

    push = self.api.module(Push)          # with "push" in the module's ``depends``
    push.notify(username, sender_jid, body_or_none)

``notify`` is synchronous and never waits: it returns how many registrations will be notified
(0 when the account has none) and sends in the background.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hongyan.modules.events import (
    InitialPresence,
    MucMemberMissedMessage,
    OfflineStored,
    QueuedForResumption,
    SubscriptionStored,
)
from hongyan.modules.push.options import PushOptions
from hongyan.server.hooks import AccountDeleted
from hongyan.server.module import Iq, Module, ModuleAPI, hook, iq_handler
from hongyan.storage.migrations import Migration
from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element
from hongyan.xmpp.errors import StanzaError, StreamError
from hongyan.xmpp.jid import JID, JIDError
from hongyan.xmpp.parser import parse_element

if TYPE_CHECKING:
    from hongyan.server.cluster import Cluster

PUSH = "urn:xmpp:push:0"
SUMMARY = "urn:xmpp:push:summary"
PUBSUB = "http://jabber.org/protocol/pubsub"
PUBLISH_OPTIONS = "http://jabber.org/protocol/pubsub#publish-options"
XDATA = NS.DATA_FORMS
MAX_FORM = 4096  # bytes of a serialized publish-options form

#: payloads of an encrypted message: worth a notification, but its <body/> is only a fallback
ENCRYPTED_NS = frozenset({
    "eu.siacs.conversations.axolotl", "urn:xmpp:omemo:2", "urn:xmpp:openpgp:0",
    "jabber:x:encrypted",
})
#: other payloads worth waking a phone for without a body: a call invitation, a file link
NOTIFY_NS = ENCRYPTED_NS | {"urn:xmpp:jingle-message:0", "jabber:x:oob"}
#: errors after which this notification is retried (temporary)
RETRY_CONDITIONS = frozenset({"remote-server-timeout"})
#: errors after which this notification is given up, the registration kept
KEEP_CONDITIONS = frozenset({"remote-server-not-found"})

MIGRATIONS = (
    Migration("push", 1, (
        """CREATE TABLE push_registrations (
            username TEXT NOT NULL,
            jid TEXT NOT NULL,
            node TEXT NOT NULL,
            options TEXT NOT NULL,
            created_at {bigint} NOT NULL,
            PRIMARY KEY (username, jid, node)
        )""",
    )),
)


@dataclass(slots=True)
class Registration:
    jid: str
    node: str
    options: Element | None  # the publish-options form given at enable


@dataclass(slots=True)
class _Pending:
    """Messages for one account noticed during one pass of the event loop."""

    new: int = 0  # messages
    subs: int = 0  # subscription requests
    sender: str = ""
    body: str | None = None
    seen: set[bytes] = field(default_factory=set)


def worth_notifying(el: Element) -> tuple[bool, str | None]:
    """Whether a message deserves a push notification, and the body to show (None when it has
    none, or it is encrypted and the body is only a fallback)."""
    if el.name != "message" or el.attrs.get("type", "normal") not in ("chat", "normal"):
        return False, None
    body: str | None = None
    notify = encrypted = False
    for c in el.elements:
        if c.xmlns == NS.CLIENT:
            if c.name == "body" and body is None:
                body = c.text
                notify = True
        elif c.xmlns in NOTIFY_NS:
            notify = True
            encrypted = encrypted or c.xmlns in ENCRYPTED_NS
    return notify, (None if encrypted else body)


def summary_form(count: int, sender: str | None, body: str | None, subs: int = 0) -> Element:
    """The ``urn:xmpp:push:summary`` form of a notification: ``count`` messages (left out when
    only subscription requests are pending), ``subs`` subscription requests (left out when
    none), the last message's sender and body when given."""
    x = Element("x", XDATA, {"type": "submit"})
    for var, value in (("FORM_TYPE", SUMMARY),
                       ("message-count", str(count) if count or not subs else None),
                       ("pending-subscription-count", str(subs) if subs else None),
                       ("last-message-sender", sender), ("last-message-body", body)):
        if value is not None:
            f = x.add("field", attrs={"var": var})
            f.add("value", text=value)
    return x


def form_type(x: Element) -> str | None:
    for f in x.find_all("field"):
        if f.attrs.get("var") == "FORM_TYPE":
            return f.find_text("value")
    return None


def publish_iq(frm: str, reg: Registration, summary: Element, iq_id: str) -> Element:
    """The notification: a pubsub publish of one item to the registration's node."""
    iq = Element("iq", NS.CLIENT, {"type": "set", "from": frm, "to": reg.jid, "id": iq_id})
    pubsub = iq.add("pubsub", PUBSUB)
    item = pubsub.add("publish", attrs={"node": reg.node}).add("item")
    item.add("notification", PUSH).append(summary)
    if reg.options is not None:
        pubsub.add("publish-options").append(reg.options)
    return iq


class Push(Module):
    name = "push"
    xeps = {"0357": "0.4.1"}
    account_features = frozenset({PUSH})
    migrations = MIGRATIONS

    def __init__(self, api: ModuleAPI) -> None:
        super().__init__(api)
        cfg = api.options(PushOptions)
        self.include_body = cfg.include_body
        self.include_sender = cfg.include_sender
        self.timeout = cfg.timeout
        self.retries = cfg.retries
        self.retry_delay = cfg.retry_delay
        self.max_per_user = cfg.max_per_user
        # username -> (app server JID, node) -> registration; only accounts with one
        self.users: dict[str, dict[tuple[str, str], Registration]] = {}
        # messages / subscription requests notified since the last initial presence
        self.counts: dict[str, int] = {}
        self.sub_counts: dict[str, int] = {}
        self.sent = 0  # notifications the app server accepted
        self.given_up = 0  # notifications abandoned after retries or an unreachable server
        self._pending: dict[str, _Pending] = {}
        self._stopped = False
        self._hook_entries: tuple[tuple[type, Callable[[Any], Any], int], ...] = (
            (OfflineStored, self.on_offline_stored, 0),
            (QueuedForResumption, self.on_queued, 0),
            (SubscriptionStored, self.on_subscription_stored, 0),
            (MucMemberMissedMessage, self.on_muc_missed, 0),
            (InitialPresence, self.on_initial, 0))
        self._hooks = api.hook_set(*self._hook_entries)

    async def start(self) -> None:
        self.api.on_notice("push-muc", self._peer_muc_missed)
        rows = await self.api.db.fetchall(
            "SELECT username, jid, node, options FROM push_registrations "
            "ORDER BY created_at, username, jid, node")
        for username, jid, node, options in rows:
            form = None
            if options:
                try:
                    form = parse_element(options)
                except StreamError:
                    self.log.error("unreadable push options of %s for %s", username, jid)
            self.users.setdefault(username, {})[(jid, node)] = Registration(jid, node, form)
        self._hooks.set(bool(self.users))

    async def stop(self) -> None:
        self._stopped = True
        self._hooks.set(False)

    # -- enable / disable -----------------------------------------------------------------------
    @staticmethod
    def _own(iq: Iq) -> str:
        if iq.to.local != iq.sender.local or iq.to.domain != iq.sender.domain:
            raise StanzaError("forbidden", "push notifications are enabled by the account itself")
        return iq.sender.local

    @staticmethod
    def _app_server(iq: Iq) -> str:
        raw = iq.payload.attrs.get("jid", "")
        if not raw:
            raise StanzaError("bad-request", "the app server's jid is missing")
        try:
            return str(JID.parse(raw))
        except JIDError as exc:
            raise StanzaError("jid-malformed", f"jid: {exc}") from None

    @iq_handler(PUSH, "enable", "set", scope=("self", "bare"))
    async def on_enable(self, iq: Iq) -> Element:
        username = self._own(iq)
        jid = self._app_server(iq)
        node = iq.payload.attrs.get("node", "")
        if not node:
            raise StanzaError("bad-request", "the node is missing")
        form = iq.payload.find("x", XDATA)
        options = ""
        if form is not None:
            if form_type(form) != PUBLISH_OPTIONS:
                raise StanzaError("bad-request", f"the form's FORM_TYPE must be {PUBLISH_OPTIONS}")
            form.attrs["type"] = "submit"
            options = form.to_str("")
            if len(options.encode()) > MAX_FORM:
                raise StanzaError("not-acceptable",
                                  f"the publish-options form is larger than {MAX_FORM} bytes")
        regs = self.users.setdefault(username, {})
        key = (jid, node)
        regs.pop(key, None)  # re-enabling makes it the newest
        while len(regs) >= self.max_per_user:
            old_jid, old_node = next(iter(regs))
            del regs[(old_jid, old_node)]
            await self.api.db.execute(
                "DELETE FROM push_registrations WHERE username=? AND jid=? AND node=?",
                username, old_jid, old_node)
        regs[key] = Registration(jid, node, form)
        await self.api.db.execute(
            "INSERT INTO push_registrations (username, jid, node, options, created_at) "
            "VALUES (?,?,?,?,?) ON CONFLICT (username, jid, node) DO UPDATE SET "
            "options=excluded.options, created_at=excluded.created_at",
            username, jid, node, options, int(self.api.now() * 1000))
        self._hooks.set(True)
        self.log.debug("%s enabled push to %s node %s", username, jid, node)
        return iq.result()

    @iq_handler(PUSH, "disable", "set", scope=("self", "bare"))
    async def on_disable(self, iq: Iq) -> Element:
        username = self._own(iq)
        jid = self._app_server(iq)
        node = iq.payload.attrs.get("node")
        regs = self.users.get(username, {})
        for key in [k for k in regs if k[0] == jid and (node is None or k[1] == node)]:
            del regs[key]
        self._forget_if_empty(username)
        if node is None:
            await self.api.db.execute(
                "DELETE FROM push_registrations WHERE username=? AND jid=?", username, jid)
        else:
            await self.api.db.execute(
                "DELETE FROM push_registrations WHERE username=? AND jid=? AND node=?",
                username, jid, node)
        return iq.result()

    def _forget_if_empty(self, username: str) -> None:
        if not self.users.get(username, True):
            del self.users[username]
            self.counts.pop(username, None)
            self.sub_counts.pop(username, None)
        self._hooks.set(bool(self.users))

    @hook(AccountDeleted)
    async def on_deleted(self, ev: AccountDeleted) -> None:
        self.users.pop(ev.username, None)
        self.counts.pop(ev.username, None)
        self.sub_counts.pop(ev.username, None)
        self._hooks.set(bool(self.users))
        await self.api.db.execute("DELETE FROM push_registrations WHERE username=?", ev.username)

    # -- several workers ----------------------------------------------------------------------
    def cluster_ready(self, cluster: Cluster) -> None:
        """Registrations and counters live on each account's home; the rooms live on one
        worker, which hands a missed room message to the member's home."""
        self.api.hook_set((MucMemberMissedMessage, self.on_muc_missed_anywhere, 0)).set(True)
        self._hooks.set(False)
        self._hooks = self.api.hook_set(*(e for e in self._hook_entries
                                          if e[0] is not MucMemberMissedMessage))
        self._hooks.set(bool(self.users))

    def on_muc_missed_anywhere(self, ev: MucMemberMissedMessage) -> None:
        home = self.api.home(ev.member_bare_jid.local)
        if home is None:
            self.on_muc_missed(ev)
            return
        encrypted = any(c.xmlns in ENCRYPTED_NS for c in ev.stanza.elements)
        self.api.notify("push-muc", json.dumps([
            ev.member_bare_jid.local, f"{ev.room_jid}/{ev.sender_nick}",
            None if encrypted else ev.body]).encode(), home)

    def _peer_muc_missed(self, body: bytes) -> None:
        username, sender, text = json.loads(body)
        if username in self.users:
            self.notify(username, sender, text)

    # -- triggers (registered only while some account has a registration) --------------------
    def on_muc_missed(self, ev: MucMemberMissedMessage) -> None:
        """A message in a private group (a persistent members-only room) the user is a member
        of and has no client in: notified like a chat message, from the occupant's JID."""
        username = ev.member_bare_jid.local
        if username in self.users:
            encrypted = any(c.xmlns in ENCRYPTED_NS for c in ev.stanza.elements)
            self.notify(username, f"{ev.room_jid}/{ev.sender_nick}",
                        None if encrypted else ev.body)

    def on_offline_stored(self, ev: OfflineStored) -> None:
        if ev.username in self.users:
            notify, body = worth_notifying(ev.stanza)
            if notify:
                self.notify(ev.username, ev.stanza.attrs.get("from", ""), body)

    def on_subscription_stored(self, ev: SubscriptionStored) -> None:
        if ev.username in self.users:
            self.notify_subscription(ev.username, ev.contact)

    def on_queued(self, ev: QueuedForResumption) -> None:
        jid = ev.session.jid
        data = ev.data
        if jid is None or jid.local not in self.users or not data.startswith(
                (b"<message", b"<presence")):
            return
        try:
            el = parse_element(data)
        except StreamError:
            return
        if el.name == "presence":
            if el.attrs.get("type") == "subscribe":
                self.notify_subscription(jid.local, el.attrs.get("from", ""), key=data)
            return
        notify, body = worth_notifying(el)
        if notify:
            self.notify(jid.local, el.attrs.get("from", ""), body, key=data)

    def on_initial(self, ev: InitialPresence) -> None:
        jid = ev.session.jid
        if jid is not None:
            self.counts.pop(jid.local, None)
            self.sub_counts.pop(jid.local, None)

    # -- notifying ------------------------------------------------------------------------------
    def notify(self, username: str, sender: JID | str, body: str | None,
               key: bytes | None = None) -> int:
        """Notify every app server ``username`` registered of a new message from ``sender``
        (``body`` is shown only when ``push.include_body`` is set). Never waits; returns the
        number of registrations that will be notified. Calls for one account during one pass of
        the event loop make one notification; ``key`` (e.g. the serialized stanza) makes
        repeats of the same message count once."""
        pending = self._gather(username, key)
        if pending is None:
            return len(self.users.get(username, ()))
        pending.new += 1
        pending.sender = str(sender)
        pending.body = body
        return len(self.users[username])

    def notify_subscription(self, username: str, contact: JID | str, key: bytes | None = None
                            ) -> int:
        """Notify ``username``'s app servers of a presence subscription request (counted in
        ``pending-subscription-count``). Like :meth:`notify`."""
        pending = self._gather(username, key)
        if pending is None:
            return len(self.users.get(username, ()))
        pending.subs += 1
        return len(self.users[username])

    def _gather(self, username: str, key: bytes | None) -> _Pending | None:
        """The account's notification of this event-loop pass; None when there is nothing to
        add (no registration, stopping, or ``key`` seen already)."""
        if not self.users.get(username) or self._stopped:
            return None
        pending = self._pending.get(username)
        if pending is None:
            pending = self._pending[username] = _Pending()
            asyncio.get_running_loop().call_soon(self._flush, username)
        if key is not None:
            if key in pending.seen:
                return None
            pending.seen.add(key)
        return pending

    def _flush(self, username: str) -> None:
        pending = self._pending.pop(username, None)
        regs = self.users.get(username)
        if pending is None or not regs or self._stopped:
            return
        count = self.counts.get(username, 0) + pending.new
        subs = self.sub_counts.get(username, 0) + pending.subs
        if pending.new:
            self.counts[username] = count
        if pending.subs:
            self.sub_counts[username] = subs
        message = pending.new > 0  # the last-message fields only when this pass had one
        summary = summary_form(
            count, pending.sender if message and self.include_sender else None,
            pending.body if message and self.include_body else None, subs)
        frm = f"{username}@{self.api.domain}"
        for reg in regs.values():
            self.api.spawn(self._publish(username, frm, reg, summary))

    async def _publish(self, username: str, frm: str, reg: Registration, summary: Element
                       ) -> None:
        delay = self.retry_delay
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(delay)
                delay *= 2
                if self.users.get(username, {}).get((reg.jid, reg.node)) is not reg:
                    return  # disabled (or replaced) meanwhile
            iq = publish_iq(frm, reg, summary, "push-" + secrets.token_hex(8))
            try:
                answer = await self.api.request(iq, self.timeout)
            except TimeoutError:
                self.log.info("push to %s for %s: no answer in %g s", reg.jid, username,
                              self.timeout)
                continue
            if answer.attrs.get("type") == "result":
                self.sent += 1
                return
            etype, condition = _error_of(answer)
            if etype == "wait" or condition in RETRY_CONDITIONS:
                self.log.info("push to %s for %s: temporary error %s", reg.jid, username,
                              condition)
                continue
            if condition in KEEP_CONDITIONS:
                self.log.info("push to %s for %s: %s", reg.jid, username, condition)
                break
            self.log.info("push to %s node %s for %s refused (%s %s): registration removed",
                          reg.jid, reg.node, username, etype, condition)
            await self._remove(username, reg)
            return
        self.given_up += 1
        self.log.warning("push notification to %s for %s given up", reg.jid, username)

    async def _remove(self, username: str, reg: Registration) -> None:
        regs = self.users.get(username)
        key = (reg.jid, reg.node)
        if regs is None or regs.get(key) is not reg:
            return  # already disabled, or enabled again since (a new registration)
        del regs[key]
        self._forget_if_empty(username)
        await self.api.db.execute(
            "DELETE FROM push_registrations WHERE username=? AND jid=? AND node=?",
            username, reg.jid, reg.node)


def _error_of(answer: Element) -> tuple[str, str]:
    err = answer.find("error")
    if err is None:
        return "cancel", "undefined-condition"
    condition = next((c.name for c in err.elements if c.xmlns == NS.STANZAS),
                     "undefined-condition")
    return err.attrs.get("type", "cancel"), condition


MODULE = Push
