"""XEP-0163 Personal Eventing Protocol: a pubsub service on every account's bare JID, on the
engine of the ``pubsub`` module (one implementation, two front ends).

* Requests to an account's bare JID (its own or a contact's) go to the engine with the
  account as the service; only the account creates and publishes; a node is created on first
  publish, with the publish-options as its configuration (XEP-0060 §7.1.5). Default access
  model ``presence``: the owner's contacts with a ``from``/``both`` subscription.
* Notifications go to the node's explicit subscribers and to the available resources of the
  owner and of each contact with a presence subscription whose entity capabilities
  (XEP-0115) list ``<node>+notify``. Capabilities are read from the ``<c/>`` of each
  session's broadcast presence; an unknown ``ver`` is asked of the client (disco#info), and
  cached only when the hash verifies. When a session's interests become known (it came online,
  or its capabilities changed), and when a contact approves the user's subscription, it gets
  the last item of each node it may read and asked for.
* Contacts at another server: their resources' capabilities come from the presence they send
  the account (``PresenceInbound``; an unknown hash is asked of that resource over the
  federation). A resource gets notifications of the nodes it asked for while it is available
  to the owner, and their last items when it tells the owner it is available.
* Cost when nobody uses PEP: one hook call per broadcast presence that looks for ``<c/>`` and
  compares it with the session's last one; nothing on the message path.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from hongyan.modules.events import InitialPresence, SubscriptionApproved
from hongyan.modules.pep.caps import HASHES, interests, ver_hash
from hongyan.modules.pubsub import PUBSUB, PubSubModule, Service
from hongyan.modules.pubsub.engine import Node
from hongyan.modules.pubsub.protocol import PEP_FEATURES, PUBSUB_OWNER
from hongyan.modules.roster import Roster
from hongyan.server.hooks import AccountDeleted, PresenceInbound, PresenceOutbound
from hongyan.server.module import Iq, Module, hook, iq_handler
from hongyan.server.session import ClientSession
from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element
from hongyan.xmpp.jid import JID, JIDError
from hongyan.xmpp.parser import parse_element

_CAPS_KEY = "pep.caps"
MUC_USER = "http://jabber.org/protocol/muc#user"
_INTERESTS = "pep.notify"
_NONE: frozenset[str] = frozenset()  # one shared empty set (each frozenset() is a new object)
#: verified capabilities kept in memory (distinct client versions are few)
MAX_CAPS = 10_000


#: resources of contacts at other servers kept with their capabilities
MAX_REMOTE = 100_000


@dataclass(slots=True)
class _Remote:
    """A contact's resource at another server, as its presence told accounts here."""

    key: str  # "hash ver" of its capabilities
    wants: frozenset[str]  # their +notify interests (empty until known)
    users: set[str]  # the local accounts it told it is available


def _interests(s: ClientSession) -> frozenset[str]:
    data = s.data
    if data is None:
        return _NONE
    found: frozenset[str] = data.get(_INTERESTS, _NONE)
    return found


class Pep(Module):
    name = "pep"
    xeps = {"0163": "1.2.2"}
    depends = ("roster", "pubsub")
    account_features = frozenset({PUBSUB, *PEP_FEATURES})
    account_identities = (("pubsub", "pep", ""),)

    async def start(self) -> None:
        self.api.on_notice("pep-event", self._peer_event)
        self.api.on_notice("pep-last", self._peer_last)
        self.api.on_notice("pep-online", self._peer_online)
        self.roster = self.api.module(Roster)
        pubsub = self.api.module(PubSubModule)
        self.engine = pubsub.engine
        self.protocol = pubsub.protocol
        self.engine.presence_allowed = self._presence_allowed
        self.engine.presence_targets = self._targets
        #: "hash ver" -> the +notify interests of a verified capabilities hash
        self.caps: dict[str, frozenset[str]] = {}
        #: contacts at other servers (bare JID) -> their resources that sent available
        #: presence with capabilities to accounts of this process
        self.remote: dict[str, dict[str, _Remote]] = {}
        self._remote_count = 0

    async def stop(self) -> None:
        self.engine.presence_allowed = None
        self.engine.presence_targets = None

    # -- requests -------------------------------------------------------------------------------
    @iq_handler(PUBSUB, "pubsub", "get", scope=("self", "bare"))
    @iq_handler(PUBSUB, "pubsub", "set", scope=("self", "bare"))
    @iq_handler(PUBSUB_OWNER, "pubsub", "get", scope=("self", "bare"))
    @iq_handler(PUBSUB_OWNER, "pubsub", "set", scope=("self", "bare"))
    async def on_pubsub(self, iq: Iq) -> Element:
        svc = await self.engine.service(iq.to.bare_str, pep=True)
        return iq.result(await self.protocol.handle(svc, iq.type, iq.payload, iq.sender))

    # -- what the engine asks -------------------------------------------------------------------
    async def _presence_allowed(self, svc: Service, bare: str) -> bool:
        owner = svc.jid.split("@", 1)[0]
        item = (await self.roster.items(owner)).get(bare)
        return item is not None and item.has_from

    async def _targets(self, svc: Service, node: Node, event: Element) -> Iterable[str]:
        owner = JID.parse(svc.jid)
        name = node.name
        out = [str(s.jid) for s in self.api.sessions.available(owner)
               if s.jid is not None and name in _interests(s)]
        for contact, item in (await self.roster.items(owner.local)).items():
            if not item.has_from:
                continue
            try:
                cj = JID.parse(contact)
            except JIDError:
                continue
            if not cj.local:
                continue
            if cj.domain != self.api.domain:
                # a contact at another server: its resources that told the owner they are
                # available, with capabilities asking for the node
                owner_name = owner.local
                out.extend(full for full, r in self.remote.get(contact, {}).items()
                           if owner_name in r.users and name in r.wants)
                continue
            home = self.api.home(cj.local)
            if home is not None:
                # the contact's sessions (and what they asked for) are on its home
                if await self.engine.may_access(svc, node, contact) is None:
                    msg = self.engine.message(svc, node, contact, event)
                    self.api.notify("pep-event", name.encode() + b"\0" + msg.to_bytes(""), home)
                continue
            out.extend(str(s.jid) for s in self.api.sessions.available(cj)
                       if s.jid is not None and name in _interests(s))
        return out

    # -- several workers ------------------------------------------------------------------------
    def _elsewhere(self, service: str) -> int | None:
        """The worker a PEP service (an account's bare JID) lives on, when not this one."""
        return self.api.home(service.split("@", 1)[0])

    def _peer_event(self, body: bytes) -> None:
        """A contact's event, for this account's resources that asked for the node."""
        name, _, xml = body.partition(b"\0")
        msg = parse_element(xml)
        node = name.decode()
        for s in self.api.sessions.available(JID.parse(msg.attrs["to"])):
            if s.jid is not None and node in _interests(s):
                msg.attrs["to"] = s.jid.text
                s.send(msg)

    def _ask_last(self, home: int, service: str, full: JID, wanted: frozenset[str]) -> None:
        self.api.notify("pep-last", json.dumps([service, full.text, sorted(wanted)]).encode(),
                        home)

    async def _peer_last(self, body: bytes) -> None:
        service, full, wanted = json.loads(body)
        if service in self.engine.known:
            await self._last_of(service, JID.parse(full), frozenset(wanted))

    async def _peer_online(self, body: bytes) -> None:
        text = body.decode()
        if text.partition("/")[0] not in self.engine.by_subscriber:
            # nothing subscribed here: no JID parsed (its parse cache would keep one for
            # every session of every other worker)
            return
        await self._explicit_last(JID.parse(text))

    # -- entity capabilities --------------------------------------------------------------------
    @hook(PresenceOutbound, priority=10)
    def on_presence(self, ev: PresenceOutbound) -> None:
        if ev.to is not None or "type" in ev.stanza.attrs:
            return
        session = ev.session
        c = ev.stanza.find("c", NS.CAPS)
        if c is None:
            # no caps, no notifications: nothing kept (an idle session's state is per-session
            # memory; absent keys read as "no interests")
            if session.data is not None:
                session.data.pop(_CAPS_KEY, None)
                session.data.pop(_INTERESTS, None)
            return
        key = f"{c.attrs.get('hash', '')} {c.attrs.get('ver', '')}"
        if session.data is None:
            session.data = {}
        data: dict[str, Any] = session.data
        if data.get(_CAPS_KEY) == key:
            return
        data[_CAPS_KEY] = key
        known = self.caps.get(key)
        if known is not None:
            data[_INTERESTS] = known
            self.api.spawn(self._send_last(session, known))
            return
        data[_INTERESTS] = _NONE
        self.api.spawn(self._discover(session, c, key))

    async def _ask_caps(self, jid: str, c: Element, key: str) -> frozenset[str] | None:
        """Ask an entity (a client here, or a contact's at another server) what its
        capabilities hash stands for: its +notify interests, None without an answer. A hash
        that verifies is cached for everyone who sends it."""
        algo, ver = c.attrs.get("hash", ""), c.attrs.get("ver", "")
        iq = Element("iq", attrs={"type": "get", "id": "caps-" + secrets.token_hex(6),
                                  "from": self.api.domain, "to": jid})
        q = iq.add("query", NS.DISCO_INFO)
        if c.attrs.get("node"):
            q.attrs["node"] = f"{c.attrs['node']}#{ver}"
        try:
            reply = await self.api.request(iq, timeout=30)
        except TimeoutError:
            return None
        info = reply.find("query", NS.DISCO_INFO)
        if reply.attrs.get("type") != "result" or info is None:
            return None
        found = interests(info)
        if algo in HASHES and ver_hash(info, algo) == ver:
            if len(self.caps) >= MAX_CAPS:
                self.caps.pop(next(iter(self.caps)))
            self.caps[key] = found
        else:
            self.log.info("capabilities of %s do not verify; used for that resource only",
                          jid)
        return found

    async def _discover(self, session: ClientSession, c: Element, key: str) -> None:
        """Ask the client what its capabilities hash stands for (it is answered in its own
        time: the presence that carried the hash is not held up)."""
        if session.jid is None:
            return
        found = await self._ask_caps(str(session.jid), c, key)
        if found is None:
            return
        data = session.data
        if data is None or data.get(_CAPS_KEY) != key:
            return  # newer capabilities came meanwhile
        data[_INTERESTS] = found
        await self._send_last(session, found)

    async def _send_last(self, session: ClientSession, wanted: frozenset[str]) -> None:
        """The last item of each node the session asked for, of the account itself and of the
        contacts it is subscribed to (XEP-0163 §4.3.3)."""
        if not wanted or session.jid is None:
            return
        engine = self.engine
        full = session.jid
        user = full.bare_str
        services = [user] if user in engine.known else []
        for contact, item in (await self.roster.items(full.local)).items():
            if not item.has_to:
                continue
            home = self._elsewhere(contact)
            if home is not None:
                self._ask_last(home, contact, full, wanted)
            elif contact in engine.known:
                services.append(contact)
        for sj in services:
            await self._last_of(sj, full, wanted)

    async def _last_of(self, service: str, full: JID, wanted: frozenset[str]) -> None:
        """The last item of each node of PEP ``service`` in ``wanted`` that the user of the
        session ``full`` may read and whose configuration sends it on presence."""
        engine = self.engine
        user = full.bare_str
        svc = await engine.service(service, pep=True)
        for name in sorted(wanted & svc.nodes.keys()):
            node = svc.nodes[name]
            if node.last is None or \
                    node.config.send_last_published_item != "on_sub_and_presence":
                continue
            if await engine.may_access(svc, node, user) is None:
                engine.send_last(svc, node, [full.text])

    # -- contacts at other servers --------------------------------------------------------------
    @hook(PresenceInbound, priority=10)  # before the presence module delivers it
    def on_remote_presence(self, ev: PresenceInbound) -> None:
        """A contact at another server tells a local account it is available (with the
        capabilities of that resource) or no longer is: the account's PEP service notifies
        that resource of the nodes it asked for, and sends it their last items now."""
        sender = ev.sender
        if sender.domain == self.api.domain or not sender.resource or not sender.local or \
                self.api.router.serves(sender.domain):
            return  # (ours, or a service of ours: its rooms' occupants are not contacts)
        ptype = ev.stanza.attrs.get("type")
        if ptype is not None and ptype != "unavailable":
            return
        if ev.stanza.find("x", MUC_USER) is not None:
            return  # an occupant of a room elsewhere, not a contact's resource
        bare, full, user = sender.bare_str, sender.text, ev.to.local
        resources = self.remote.get(bare)
        r = None if resources is None else resources.get(full)
        c = None if ptype is not None else ev.stanza.find("c", NS.CAPS)
        if c is None:  # gone, or no capabilities: no notifications
            if r is not None:
                r.users.discard(user)
                if not r.users:
                    self._forget_remote(bare, full)
            return
        key = f"{c.attrs.get('hash', '')} {c.attrs.get('ver', '')}"
        if r is not None and r.key == key:
            if user not in r.users:
                r.users.add(user)
                self.api.spawn(self._remote_last(full, r.wants, {user}))
            return
        if r is None:
            if self._remote_count >= MAX_REMOTE:
                self._forget_remote(*self._oldest_remote())
            r = _Remote(key, _NONE, set())
            self.remote.setdefault(bare, {})[full] = r
            self._remote_count += 1
        r.key = key
        r.users.add(user)
        known = self.caps.get(key)
        if known is not None:
            r.wants = known
            self.api.spawn(self._remote_last(full, known, set(r.users)))
        else:
            r.wants = _NONE
            self.api.spawn(self._discover_remote(bare, full, c, key))

    def _forget_remote(self, bare: str, full: str) -> None:
        resources = self.remote.get(bare)
        if resources is not None and resources.pop(full, None) is not None:
            self._remote_count -= 1
            if not resources:
                del self.remote[bare]

    def _oldest_remote(self) -> tuple[str, str]:
        bare, resources = next(iter(self.remote.items()))
        return bare, next(iter(resources))

    async def _discover_remote(self, bare: str, full: str, c: Element, key: str) -> None:
        found = await self._ask_caps(full, c, key)
        r = self.remote.get(bare, {}).get(full)
        if found is None or r is None or r.key != key:
            return  # gone, or newer capabilities came meanwhile
        r.wants = found
        await self._remote_last(full, found, set(r.users))

    async def _remote_last(self, full: str, wanted: frozenset[str], users: set[str]) -> None:
        """The last items a remote resource asked for, of each local account it told it is
        available (XEP-0163 §4.3.3), when it may read them."""
        if not wanted:
            return
        jid = JID.parse(full)
        for user in sorted(users):
            service = f"{user}@{self.api.domain}"
            if service in self.engine.known:
                await self._last_of(service, jid, wanted)

    @hook(SubscriptionApproved)
    async def on_approved(self, ev: SubscriptionApproved) -> None:
        """A contact approved the user's presence subscription: its last items, to each of the
        user's available resources whose capabilities ask for them (XEP-0163 §4.3.3, "on
        subscription")."""
        home = self._elsewhere(ev.contact)
        if home is None and ev.contact not in self.engine.known:
            return
        for session in self.api.sessions.available(JID(ev.username, self.api.domain)):
            wanted = _interests(session)
            if wanted and session.jid is not None:
                if home is not None:
                    self._ask_last(home, ev.contact, session.jid, wanted)
                else:
                    await self._last_of(ev.contact, session.jid, wanted)

    @hook(InitialPresence)
    async def on_online(self, ev: InitialPresence) -> None:
        """Explicit subscriptions (XEP-0060 §6.1) of the user coming online: the last item of
        each node whose configuration says ``on_sub_and_presence``."""
        jid = ev.session.jid
        if jid is None:
            return
        if self.api.cluster is not None:
            # the services it subscribed to live on their own homes: each worker looks at its
            self.api.notify("pep-online", jid.text.encode())
        await self._explicit_last(jid)

    async def _explicit_last(self, jid: JID) -> None:
        bare, full = jid.bare_str, jid.text
        engine = self.engine
        api = self.api
        for service, name in sorted(engine.by_subscriber.get(bare, ())):
            home = api.home(service.split("@", 1)[0]) if "@" in service else \
                api.service_home(service)
            if home is not None:
                continue
            svc = await engine.service(service, pep="@" in service)
            node = svc.nodes.get(name)
            if node is None or node.last is None or \
                    node.config.send_last_published_item != "on_sub_and_presence":
                continue
            if (bare in node.subscriptions or full in node.subscriptions) and \
                    await engine.may_access(svc, node, bare) is None:
                engine.send_last(svc, node, [full])

    # -- life cycle -----------------------------------------------------------------------------
    @hook(AccountDeleted)
    async def on_deleted(self, ev: AccountDeleted) -> None:
        await self.engine.drop_service(f"{ev.username}@{self.api.domain}")


MODULE = Pep
