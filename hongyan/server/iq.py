"""IQ requests (RFC 6120 §8.2.3) as the server handles them: what a handler gets (:class:`Iq`), how
a module marks its handlers (:func:`iq_handler`), and the requests the server itself sent,
waiting for their answer (:class:`IqTracker`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from hongyan.xmpp.element import Element

if TYPE_CHECKING:
    from hongyan.server.session import ClientSession
    from hongyan.xmpp.jid import JID

Scope = Literal["self", "bare", "host"]
IqType = Literal["get", "set"]
IqHandlerFn = Callable[["Iq"], "Element | Awaitable[Element | None] | None"]


@dataclass(slots=True)
class Iq:
    """An IQ get/set addressed to the server, to the sender's own account or to a local account."""

    stanza: Element
    sender: JID
    to: JID
    session: ClientSession | None
    payload: Element

    @property
    def type(self) -> str:
        return self.stanza.attrs.get("type", "")

    def result(self, payload: Element | None = None) -> Element:
        attrs = {"type": "result", "id": self.stanza.attrs.get("id", "")}
        if "to" in self.stanza.attrs:
            attrs["from"] = self.stanza.attrs["to"]
        attrs["to"] = str(self.sender)
        el = Element("iq", self.stanza.xmlns, attrs)
        if payload is not None:
            el.children.append(payload)
        return el


@dataclass(frozen=True, slots=True)
class IqSpec:
    xmlns: str
    name: str
    type: IqType
    scopes: tuple[Scope, ...]


def iq_handler(xmlns: str, name: str, type: IqType, scope: Scope | tuple[Scope, ...] = "self"
               ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a module method as the handler of IQ ``type`` with payload ``{xmlns}name``.

    ``scope``: ``self`` = addressed to the sender's own account (no ``to`` or its bare JID);
    ``bare`` = addressed to any local account's bare JID (the sender's own included);
    ``host`` = addressed to the server's domain.
    """
    scopes = (scope,) if isinstance(scope, str) else scope

    def mark(fn: Callable[..., Any]) -> Callable[..., Any]:
        specs: list[IqSpec] = getattr(fn, "_iq_specs", [])
        specs.append(IqSpec(xmlns, name, type, scopes))
        fn._iq_specs = specs  # type: ignore[attr-defined]
        return fn

    return mark


class IqTracker:
    """IQ requests the server itself sent, waiting for their result or error."""

    def __init__(self) -> None:
        self._pending: dict[str, Callable[[Element], Any]] = {}

    def expect(self, iq_id: str, callback: Callable[[Element], Any]) -> None:
        self._pending[iq_id] = callback

    def cancel(self, iq_id: str) -> None:
        self._pending.pop(iq_id, None)

    def resolve(self, el: Element) -> bool:
        cb = self._pending.pop(el.attrs.get("id", ""), None)
        if cb is None:
            return False
        cb(el)
        return True
