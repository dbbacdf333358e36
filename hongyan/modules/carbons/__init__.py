"""XEP-0280 Message Carbons (urn:xmpp:carbons:2).

A session enables carbons with ``<enable/>`` and disables them with ``<disable/>``. Every
carbons-enabled session of a user then gets a ``<sent/>`` copy of each eligible message another
session of the same user sends, and a ``<received/>`` copy of each eligible message the user
receives that was not delivered to that session itself (RFC 6121 §8.5 delivery decides which
sessions got the original). A copy is a ``<message from=bare-JID to=full-JID>`` wrapping a
XEP-0297 ``<forwarded/>`` with the original stanza.

Cost on the 1:1 message path: both hooks start with one dict lookup of the user in
``self.users`` (the users with at least one enabled session); when neither the sender nor the
recipient enabled carbons nothing else happens, no element is looked at and nothing is
allocated. Copies are written with ``ClientSession.send`` (no task, no await).

Eligibility (XEP-0280 §6, as Prosody's mod_carbons applies it):

* ``chat``; ``normal`` with a ``<body/>`` or with a Jingle Message Initiation (XEP-0353),
  one of the payloads "typically used in IM" of §6: clients before JMI 0.4 send call
  invitations and answers as bodiless ``normal`` messages, and the user's other devices must
  see them to ring and to stop ringing (a bodiless ``normal`` chat state stays uncopied, as
  Prosody has it); an inbound ``error`` addressed to a session that is
  online and coming from a bare JID (the bounce of a message the user sent to a bare JID: the
  other devices saw that message as a sent-carbon and should see it fail); never
  ``groupchat`` or ``headline``.
* Not inbound messages from a MUC (with ``<x xmlns=muc#user/>``: private messages through a
  room, mediated invitations) or from one of the server's own services (rooms, pubsub); the
  other resources are not in the room and could not answer. A message from an external
  component (a gateway: IRC, SMS) is a contact's message and is copied like any other.
  A private message the user *sends* into a room is copied (as
  Prosody and ejabberd do; Conversations and Dino show it in the other devices' PM thread).
* Not messages between the user's own resources (to or from the user's own bare or full JID):
  the user's other resources receive a message to the bare JID themselves, a sent- and a
  received-copy of the same stanza would be noise.
* ``<private xmlns='urn:xmpp:carbons:2'/>`` and XEP-0334 ``<no-copy/>`` stop copies on both
  sides; ``<private/>`` is removed from what the recipient gets (§7, SHOULD) whenever the
  sender or the recipient is a local carbons user (the only case where we look at the stanza).

Stream management: a session resumed on a new connection (XEP-0198) keeps carbons enabled
(``SessionResumed`` puts the new session object in the old one's place); copies queued while it
was away are sent again with the rest of its unacknowledged stanzas.

Message archive: a ``<received/>`` copy wraps the message as delivered, so its inner message
carries the ``<stanza-id by=user@domain/>`` of the user's archive (our ``StanzaInbound`` hook
runs at priority -110, after the archive's at -100, which adds the id): Conversations uses that
id to match the copy with the archive. A ``<sent/>`` copy wraps the message as the client sent
it, without an id: the sender's archive id is not assigned before routing.

Security (§11): a ``<sent/>`` or ``<received/>`` carbon can only ever come from the user's own
server, and this server writes its copies straight to the session, never through the router. So
any routed message carrying one is forged (by another user, a component, or later a remote
server): for a recipient who enabled carbons it is refused with ``not-acceptable`` (the sender
learns it was not delivered; nothing is dropped silently). For a user who did not enable
carbons it passes unchanged (checking every message would cost every user a scan of every
stanza); clients treat carbons only after enabling them, and must themselves ignore a carbon not
from their bare JID.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hongyan.modules.events import SessionResumed
from hongyan.server.hooks import (
    Bind2Request,
    InlineFeatures,
    SessionClosed,
    StanzaInbound,
    StanzaOutbound,
)
from hongyan.server.module import Iq, Module, ModuleAPI, hook, iq_handler
from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element
from hongyan.xmpp.errors import StanzaError
from hongyan.xmpp.jid import JID

if TYPE_CHECKING:
    from hongyan.server.session import ClientSession

CARBONS = "urn:xmpp:carbons:2"
FORWARD = "urn:xmpp:forward:0"
HINTS = "urn:xmpp:hints"
MUC_USER = "http://jabber.org/protocol/muc#user"
#: the payload that makes a bodiless ``normal`` message eligible (see the docstring)
JMI = "urn:xmpp:jingle-message:0"

# flags from one scan of a message's children
_BODY = 1
_PRIVATE = 2
_NO_COPY = 4
_MUC_USER = 8
_CARBON = 16
_JMI = 32


def scan(el: Element) -> tuple[int, Element | None]:
    """Flags for the child elements that matter here, and the ``<private/>`` element if any."""
    flags = 0
    private = None
    for c in el.children:
        if isinstance(c, str):
            continue
        xmlns = c.xmlns
        if xmlns == NS.CLIENT:
            if c.name == "body":
                flags |= _BODY
        elif xmlns == CARBONS:
            if c.name == "private":
                flags |= _PRIVATE
                private = c
            elif c.name in ("sent", "received"):
                flags |= _CARBON
        elif xmlns == HINTS:
            if c.name == "no-copy":
                flags |= _NO_COPY
        elif xmlns == MUC_USER and c.name == "x":
            flags |= _MUC_USER
        elif xmlns == JMI:
            flags |= _JMI
    return flags, private


def _copyable(mtype: str, flags: int) -> bool:
    if flags & (_PRIVATE | _NO_COPY):
        return False
    return mtype == "chat" or (mtype == "normal" and bool(flags & (_BODY | _JMI)))


class Carbons(Module):
    name = "carbons"
    xeps = {"0280": "1.0.1"}
    features = frozenset({CARBONS})

    def __init__(self, api: ModuleAPI) -> None:
        super().__init__(api)
        # username -> its carbons-enabled sessions (only users with at least one)
        self.users: dict[str, list[ClientSession]] = {}
        # the copying hooks are registered only while some session has carbons enabled, so
        # that the 1:1 path builds no hook events for them otherwise
        self._copies = api.hook_set((StanzaOutbound, self.on_outbound, -100),
                                    (StanzaInbound, self.on_inbound, -110))

    async def stop(self) -> None:
        self._copies.set(False)
        await super().stop()

    # -- enable / disable -----------------------------------------------------------------------
    @iq_handler(CARBONS, "enable", "set", scope="self")
    def on_enable(self, iq: Iq) -> Element:
        session = iq.session
        if session is None or session.jid != iq.sender:
            raise StanzaError("not-allowed", "only a client of this server enables its carbons")
        self._enable(iq.sender.local, session)
        return iq.result()

    def _enable(self, username: str, session: ClientSession) -> None:
        enabled = self.users.setdefault(username, [])
        if session not in enabled:
            enabled.append(session)
        self._copies.set(True)

    @hook(InlineFeatures)
    def on_inline(self, ev: InlineFeatures) -> None:
        ev.bind2.add("feature", attrs={"var": CARBONS})

    @hook(Bind2Request)
    def on_bind2(self, ev: Bind2Request) -> None:
        """Bind2 (XEP-0386): ``<enable xmlns='urn:xmpp:carbons:2'/>`` inline."""
        jid = ev.session.jid
        if jid is not None and ev.request.find("enable", CARBONS) is not None:
            self._enable(jid.local, ev.session)

    @iq_handler(CARBONS, "disable", "set", scope="self")
    def on_disable(self, iq: Iq) -> Element:
        session = iq.session
        if session is None or session.jid != iq.sender:
            raise StanzaError("not-allowed", "only a client of this server disables its carbons")
        self._forget(iq.sender.local, session)
        return iq.result()

    @hook(SessionClosed)
    def on_closed(self, ev: SessionClosed) -> None:
        jid = ev.session.jid
        if jid is not None:
            self._forget(jid.local, ev.session)

    @hook(SessionResumed)
    def on_resumed(self, ev: SessionResumed) -> None:
        """A XEP-0198 resumption keeps the session's carbons state: the new connection's
        session object takes the old one's place."""
        jid = ev.session.jid
        enabled = None if jid is None else self.users.get(jid.local)
        if enabled is not None:
            for i, s in enumerate(enabled):
                if s is ev.old:
                    enabled[i] = ev.session

    def _forget(self, username: str, session: ClientSession) -> None:
        enabled = self.users.get(username)
        if enabled is not None and session in enabled:
            enabled.remove(session)
            if not enabled:
                del self.users[username]
                self._copies.set(bool(self.users))

    # -- copies ---------------------------------------------------------------------------------
    def on_outbound(self, ev: StanzaOutbound) -> bool:
        """A message a local session sends: <sent/> copies to the sender's other sessions."""
        enabled = self.users.get(ev.sender.local)
        if enabled is None or ev.stanza.name != "message":
            return False
        to = ev.to
        sender = ev.sender
        if to is None or (to.local == sender.local and to.domain == sender.domain):
            return False
        el = ev.stanza
        flags, _ = scan(el)
        if not _copyable(el.attrs.get("type", "normal"), flags):
            return False
        targets = [s for s in enabled if s is not ev.session]
        if targets:
            self._copy("sent", el, sender.bare_str, targets)
        return False

    def on_inbound(self, ev: StanzaInbound) -> bool:
        """A message for a local user: refuse forged carbons, strip <private/>, and send
        <received/> copies to the enabled sessions the message is not delivered to."""
        el = ev.stanza
        if el.name != "message":
            return False
        to = ev.to
        sender = ev.sender
        enabled = self.users.get(to.local)
        if enabled is None:
            if sender.local in self.users and sender.domain == self.api.domain:
                # the sender's side looked at it already; only <private/> is left to remove
                _, private = scan(el)
                if private is not None:
                    el.remove(private)
            return False
        flags, private = scan(el)
        if flags & _CARBON:
            self.api.router.bounce(el, StanzaError(
                "not-acceptable", "carbon copies come only from the user's own server"))
            return True
        if private is not None:
            el.remove(private)
            return False
        if sender.local == to.local and sender.domain == to.domain:
            return False
        router = self.api.router
        if flags & _MUC_USER or (sender.domain in router.components
                                 and sender.domain not in router.gateways):
            return False  # sent by a MUC room or service of ours (XEP-0280 §6)
        mtype = el.attrs.get("type", "normal")
        sessions = self.api.sessions
        if mtype == "error":
            # the bounce of a message the user sent to a bare JID (see the module docstring)
            if flags & _NO_COPY or sender.resource or not to.resource:
                return False
            target = sessions.get(to)
            if target is None:
                return False
            delivered: list[ClientSession] = [target]
        else:
            if not _copyable(mtype, flags):
                return False
            target = sessions.get(to) if to.resource else None
            if target is not None:
                delivered = [target]
            else:
                # RFC 6121 §8.5.2.1.1, as Router.message delivers it
                delivered = [s for s in sessions.resources(to)
                             if s.available and s.priority >= 0]
        targets = [s for s in enabled if s not in delivered]
        if targets:
            self._copy("received", el, to.bare_str, targets)
        return False

    @staticmethod
    def _copy(kind: str, el: Element, bare: str, targets: list[ClientSession]) -> None:
        wrapper = Element(kind, CARBONS, None, [Element("forwarded", FORWARD, None, [el])])
        attrs = {"from": bare, "to": ""}
        mtype = el.attrs.get("type")
        if mtype is not None:
            attrs["type"] = mtype
        for s in targets:
            jid: JID | None = s.jid
            if jid is None:
                continue
            attrs["to"] = str(jid)
            # send() serializes at once, so one wrapper serves every target
            s.send(Element("message", NS.CLIENT, attrs, [wrapper]))


MODULE = Carbons
