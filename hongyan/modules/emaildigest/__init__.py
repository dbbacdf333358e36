"""Offline messages by e-mail: a user who has been offline for a while, with messages
waiting in offline storage, gets one digest e-mail (who wrote, how many, and the text only
where the user allows it and never of an encrypted message), at most one per
``min_interval``, through the configured SMTP server (STARTTLS and AUTH, aiosmtplib).
Off by default (``[emaildigest] enabled``).

Opting in is the user's (or the administrator's, ``users``): the user stores, in XEP-0049
private XML storage,

    <digest xmlns='urn:hongyan:email-digest:0' address='me@mail.example' bodies='false'/>

(this module keeps the fragment: an address that is not one mailbox is refused with
not-acceptable; ``address=''`` opts out). The user's own setting wins over the
administrator's list; the administrator's opts in without message text.

When: each message stored for an opted-in user arms a timer (the node's clock) for ``delay``
seconds unless one is armed. When it fires, the digest covers the waiting messages not
mailed before; it goes only once the oldest of them has waited ``delay`` seconds and
``min_interval`` has passed since the user's last digest (else the timer is armed again for
what is left). Delivered messages leave offline storage at the user's next login, so a user
who comes back in time gets no mail. What was mailed and when is kept per user (key-value
store), so a restart does not mail the same messages again. A message with no body and no
encrypted payload (a receipt, a marker) is not counted.

What the mail shows of others: the senders' bare JIDs (and the user's roster names for
them), their message counts and, with ``bodies='true'``, the texts; From is the server's
address, Reply-To the operator's (``reply_to``) or none, To the user's one address: no other
user's address or data is in any header.
"""

from __future__ import annotations

import json
import re
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import TYPE_CHECKING

from hongyan.modules.emaildigest.options import EmailDigestOptions, email_address
from hongyan.modules.events import OfflineStored
from hongyan.server.hooks import AccountDeleted
from hongyan.server.module import Module, Timer
from hongyan.xmpp.element import Element
from hongyan.xmpp.errors import StanzaError, StreamError
from hongyan.xmpp.jid import JID, JIDError
from hongyan.xmpp.parser import parse_element

if TYPE_CHECKING:
    from hongyan.server.module import ModuleAPI

NS_DIGEST = "urn:hongyan:email-digest:0"
#: payloads that mean the message is end-to-end encrypted (OMEMO 0.3 and 2, OpenPGP for XMPP,
#: legacy OpenPGP, XEP-0380's marker); OTR is told by its body
ENCRYPTED = frozenset({"eu.siacs.conversations.axolotl", "urn:xmpp:omemo:2",
                       "urn:xmpp:openpgp:0", "jabber:x:encrypted", "urn:xmpp:eme:0"})
#: characters kept out of a mail (control characters other than tab and newline)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
MAX_TEXT = 500  # characters of one message's text in a digest
MAX_LISTED = 20  # texts per sender


def is_encrypted(el: Element) -> bool:
    if any(c.xmlns in ENCRYPTED for c in el.elements):
        return True
    body = el.find_text("body")
    return body is not None and body.startswith("?OTR")


def _clean(text: str) -> str:
    return _CONTROL.sub("", text)


class Preference:
    __slots__ = ("address", "bodies")

    def __init__(self, address: str, bodies: bool) -> None:
        self.address = address
        self.bodies = bodies


class EmailDigest(Module):
    name = "emaildigest"
    depends = ("offline", "private")
    uses = ("roster",)

    def __init__(self, api: ModuleAPI) -> None:
        super().__init__(api)
        self.options = api.options(EmailDigestOptions)
        self._timers: dict[str, Timer] = {}
        #: digests mailed, and attempts the SMTP server refused or that failed (/metrics)
        self.sent = 0
        self.failed = 0

    async def start(self) -> None:
        if not self.options.enabled:
            return
        from hongyan.modules.private import Private

        self.api.module(Private).provide(NS_DIGEST, "digest", self)
        self.api.on(OfflineStored, self.on_stored)
        self.api.on(AccountDeleted, self.on_deleted)
        self.api.metric("counter", "emaildigest_sent", "offline-message digests mailed",
                        lambda: self.sent)
        self.api.metric("counter", "emaildigest_failed", "digests the SMTP server did not "
                        "take (tried again after delay)", lambda: self.failed)

    async def stop(self) -> None:
        if self.options.enabled:
            from hongyan.modules.private import Private

            private = self.api.optional("private")
            if isinstance(private, Private):
                private.provide(NS_DIGEST, "digest", None)

    # -- the user's setting (XEP-0049 fragment) -----------------------------------------------
    async def get_private(self, username: str) -> Element | None:
        pref = await self._own(username)
        if pref is None:
            return None
        return Element("digest", NS_DIGEST, {"address": pref.address,
                                             "bodies": "true" if pref.bodies else "false"})

    async def set_private(self, username: str, el: Element) -> None:
        address = el.attrs.get("address", "").strip()
        bodies = el.attrs.get("bodies", "false")
        if bodies not in ("true", "false", "1", "0"):
            raise StanzaError("bad-request", "bodies is true or false")
        if not address:
            await self.api.kv.delete(username, NS_DIGEST, "pref")
            return
        try:
            address = email_address(address)
        except ValueError:
            raise StanzaError("not-acceptable", "address is not one e-mail address") from None
        await self.api.kv.set(username, NS_DIGEST, "pref", json.dumps(
            {"address": address, "bodies": bodies in ("true", "1")}))

    async def _own(self, username: str) -> Preference | None:
        raw = await self.api.kv.get(username, NS_DIGEST, "pref")
        if raw is None:
            return None
        try:
            d = json.loads(raw)
            return Preference(str(d["address"]), bool(d["bodies"]))
        except (ValueError, KeyError, TypeError):
            return None

    async def preference(self, username: str) -> Preference | None:
        """Where and how ``username`` is mailed, or None (not opted in)."""
        own = await self._own(username)
        if own is not None:
            return own
        address = self.options.users.get(f"{username}@{self.api.domain}")
        return Preference(address, False) if address else None

    # -- when ---------------------------------------------------------------------------------
    async def on_stored(self, ev: OfflineStored) -> None:
        if ev.username in self._timers or await self.preference(ev.username) is None:
            return
        self._arm(ev.username, self.options.delay)

    def armed(self, username: str) -> bool:
        """Whether a digest timer is pending for ``username``."""
        return username in self._timers

    def _arm(self, username: str, delay: float) -> None:
        old = self._timers.pop(username, None)
        if old is not None:
            old.cancel()

        def fire() -> None:
            self._timers.pop(username, None)
            self.api.spawn(self._due(username))
        self._timers[username] = self.api.call_later(delay, fire)

    async def _state(self, username: str) -> tuple[int, float]:
        raw = await self.api.kv.get(username, NS_DIGEST, "state")
        if raw is not None:
            try:
                d = json.loads(raw)
                return int(d["last_id"]), float(d["last_sent"])
            except (ValueError, KeyError, TypeError):
                pass
        return 0, 0.0

    async def _due(self, username: str) -> None:
        pref = await self.preference(username)
        if pref is None:
            return
        last_id, last_sent = await self._state(username)
        rows = await self.api.db.fetchall(
            "SELECT id, created_at, stanza FROM offline_messages WHERE username=? AND id>? "
            "ORDER BY id", username, last_id)
        if not rows:
            return  # delivered meanwhile (the user came back), or mailed before
        now = self.api.now()
        o = self.options
        wait = max(float(rows[0][1]) + o.delay - now, last_sent + o.min_interval - now)
        if wait > 0:
            self._arm(username, wait)
            return
        if self.api.sessions.deliverable(f"{username}@{self.api.domain}"):
            return  # online: the messages are being delivered
        names = await self._names(username)
        mail = self.compose(username, pref, [str(r[2]) for r in rows], names)
        newest = int(rows[-1][0])
        if mail is not None:
            try:
                await self._send(mail)
            except Exception as exc:
                self.failed += 1
                self.log.warning("digest for %s not sent: %s", username, exc)
                self._arm(username, o.delay)
                return
            self.sent += 1
            last_sent = now
        await self.api.kv.set(username, NS_DIGEST, "state",
                              json.dumps({"last_id": newest, "last_sent": last_sent}))

    async def _names(self, username: str) -> dict[str, str]:
        from hongyan.modules.roster import Roster

        roster = self.api.optional("roster")
        if not isinstance(roster, Roster):
            return {}
        return {c: i.name for c, i in (await roster.items(username)).items() if i.name}

    # -- what -----------------------------------------------------------------------------------
    def compose(self, username: str, pref: Preference, stanzas: list[str],
                names: dict[str, str]) -> EmailMessage | None:
        """The digest of ``stanzas`` (stored messages, oldest first), or None when none of
        them counts (no body, no encrypted payload)."""
        by_sender: dict[str, list[str | None]] = {}
        for xml in stanzas:
            try:
                el = parse_element(xml)
                sender = JID.parse(el.attrs.get("from", "")).bare_str
            except (StreamError, JIDError):
                continue
            encrypted = is_encrypted(el)
            body = el.find_text("body")
            if body is None and not encrypted:
                continue
            text = None if encrypted or not pref.bodies else _clean(body or "")
            by_sender.setdefault(sender, []).append(text)
        if not by_sender:
            return None
        domain = self.api.domain
        count = sum(len(v) for v in by_sender.values())
        plural = "s" if count != 1 else ""
        lines = [f"While you were away, {count} message{plural} for {username}@{domain} "
                 "arrived:", ""]
        for sender, texts in by_sender.items():
            name = _clean(names.get(sender, ""))
            who = f"{name} <{sender}>" if name else sender
            lines.append(f"{who}: {len(texts)} message{'s' if len(texts) != 1 else ''}")
            if pref.bodies:
                for text in texts[:MAX_LISTED]:
                    if text is None:
                        lines.append("    (encrypted: read it in your client)")
                    else:
                        short = text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "..."
                        lines.extend("    " + ln for ln in short.splitlines() or [""])
                if len(texts) > MAX_LISTED:
                    lines.append(f"    ... and {len(texts) - MAX_LISTED} more")
        lines += ["", "Log in to read and answer them; replying to this e-mail does not "
                  "reach them.", "",
                  "You get this because e-mail digests are on for your account "
                  f"(at most one every {int(self.options.min_interval // 60)} minutes)."]
        msg = EmailMessage()
        sender_address = self.options.from_address or f"noreply@{domain}"
        msg["From"] = sender_address
        msg["To"] = pref.address
        msg["Subject"] = f"{count} new message{plural} on {domain}"
        msg["Date"] = formatdate(self.api.now(), localtime=False)
        msg["Message-ID"] = make_msgid(domain=sender_address.rpartition("@")[2])
        msg["Auto-Submitted"] = "auto-generated"
        if self.options.reply_to:
            msg["Reply-To"] = self.options.reply_to
        msg.set_content("\n".join(lines) + "\n")
        return msg

    async def _send(self, mail: EmailMessage) -> None:
        import aiosmtplib

        o = self.options
        context = ssl.create_default_context(cafile=o.smtp_ca_file or None)
        await aiosmtplib.send(
            mail, hostname=o.smtp_host, port=o.smtp_port, timeout=o.smtp_timeout,
            start_tls=o.smtp_starttls, use_tls=False, tls_context=context,
            username=o.smtp_username or None,
            password=o.smtp_password.get_secret_value() or None)

    async def on_deleted(self, ev: AccountDeleted) -> None:
        timer = self._timers.pop(ev.username, None)
        if timer is not None:
            timer.cancel()
        await self.api.kv.delete(ev.username, NS_DIGEST, "pref")
        await self.api.kv.delete(ev.username, NS_DIGEST, "state")


MODULE = EmailDigest
