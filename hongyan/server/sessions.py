"""The session manager: which resources of which account are bound on this node."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hongyan.xmpp.jid import JID

if TYPE_CHECKING:
    from hongyan.server.session import ClientSession


class SessionManager:
    """Bound sessions by bare JID string, then by resource."""

    __slots__ = ("_by_bare",)

    def __init__(self) -> None:
        self._by_bare: dict[str, dict[str, ClientSession]] = {}

    def add(self, session: ClientSession) -> ClientSession | None:
        """Register a bound session; return the session it replaces (same full JID), if any."""
        jid = session.jid
        assert jid is not None
        resources = self._by_bare.setdefault(jid.bare_str, {})
        old = resources.get(jid.resource)
        resources[jid.resource] = session
        return old

    def remove(self, session: ClientSession) -> None:
        jid = session.jid
        if jid is None:
            return
        resources = self._by_bare.get(jid.bare_str)
        if resources is not None and resources.get(jid.resource) is session:
            del resources[jid.resource]
            if not resources:
                del self._by_bare[jid.bare_str]

    def get(self, jid: JID) -> ClientSession | None:
        resources = self._by_bare.get(jid.bare_str)
        return None if resources is None else resources.get(jid.resource)

    def get_str(self, bare: str, resource: str) -> ClientSession | None:
        resources = self._by_bare.get(bare)
        return None if resources is None else resources.get(resource)

    def resources(self, bare: JID | str) -> list[ClientSession]:
        resources = self._by_bare.get(bare if isinstance(bare, str) else bare.bare_str)
        return [] if resources is None else list(resources.values())

    def deliverable(self, bare: JID | str) -> list[ClientSession]:
        """The resources a message to the bare JID goes to (RFC 6121 §8.5.2.1.1): available,
        priority not negative."""
        resources = self._by_bare.get(bare if isinstance(bare, str) else bare.bare_str)
        if resources is None:
            return []
        return [s for s in resources.values() if s.available and s.priority >= 0]

    def available(self, bare: JID | str) -> list[ClientSession]:
        """Sessions that sent available presence."""
        return [s for s in self.resources(bare) if s.available]

    def count(self) -> int:
        return sum(len(r) for r in self._by_bare.values())

    def all(self) -> list[ClientSession]:
        return [s for r in self._by_bare.values() for s in r.values()]
