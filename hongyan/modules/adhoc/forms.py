"""Data forms (XEP-0004) as commands use them: fields declared once, rendered as a form and
checked when submitted (a bad value is the XEP-0050 ``bad-payload`` error)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element
from hongyan.xmpp.errors import StanzaError
from hongyan.xmpp.jid import JID, JIDError

COMMANDS = "http://jabber.org/protocol/commands"

#: a submitted form: var -> its values
Values = dict[str, list[str]]

TYPES = frozenset({"boolean", "fixed", "hidden", "jid-multi", "jid-single", "list-multi",
                   "list-single", "text-multi", "text-private", "text-single"})
#: the most values one field and one form may carry, and the longest value
MAX_VALUES = 1000
MAX_FIELDS = 100
MAX_VALUE = 8192


def command_error(condition: str, app: str, text: str) -> StanzaError:
    """A stanza error with XEP-0050's application condition ``app`` (bad-action,
    bad-payload, bad-sessionid, malformed-action, session-expired)."""
    return StanzaError(condition, text, app=Element(app, COMMANDS))


def bad_payload(text: str) -> StanzaError:
    return command_error("bad-request", "bad-payload", text)


@dataclass(frozen=True, slots=True)
class Field:
    var: str
    type: str = "text-single"
    label: str = ""
    required: bool = False
    options: tuple[str, ...] = ()
    values: tuple[str, ...] = ()

    def element(self, values: Iterable[str] | None = None) -> Element:
        el = Element("field", NS.DATA_FORMS, {"var": self.var, "type": self.type})
        if self.label:
            el.attrs["label"] = self.label
        if self.required:
            el.add("required")
        for opt in self.options:
            el.add("option", attrs={"label": opt}).add("value", text=opt)
        for v in self.values if values is None else values:
            el.add("value", text=v)
        return el

    def check(self, values: list[str]) -> list[str]:
        """The submitted ``values`` if they fit the field, else a bad-payload error."""
        if self.type.endswith("-multi"):
            values = [v for v in values if v.strip()] if self.type != "text-multi" else values
        elif len(values) > 1:
            raise bad_payload(f"{self.var}: one value only")
        if self.required and not any(v.strip() for v in values):
            raise bad_payload(f"{self.var} is required")
        for v in values:
            if self.type in ("jid-single", "jid-multi"):
                try:
                    JID.parse(v.strip())
                except JIDError:
                    raise bad_payload(f"{self.var}: {v!r} is not a JID") from None
            elif self.type == "boolean" and v not in ("0", "1", "true", "false"):
                raise bad_payload(f"{self.var}: {v!r} is not a boolean")
            elif self.type.startswith("list-") and v not in self.options:
                raise bad_payload(f"{self.var}: {v!r} is not one of the options")
        return values


def form(fields: Iterable[Field], form_type: str, title: str = "", instructions: str = "",
         kind: str = "form", values: dict[str, list[str]] | None = None) -> Element:
    """A data form (``kind`` form or result) with a hidden FORM_TYPE."""
    x = Element("x", NS.DATA_FORMS, {"type": kind})
    if title:
        x.add("title", text=title)
    if instructions:
        x.add("instructions", text=instructions)
    x.append(Field("FORM_TYPE", "hidden", values=(form_type,)).element())
    for f in fields:
        x.append(f.element(None if values is None else values.get(f.var)))
    return x


def submitted(command: Element) -> tuple[str, Values] | None:
    """The form a command request carries: (its type, its values); None when there is none.
    Too many fields or values, or one too long, is bad-payload."""
    x = command.find("x", NS.DATA_FORMS)
    if x is None:
        return None
    out: Values = {}
    fields = x.find_all("field", NS.DATA_FORMS)
    if len(fields) > MAX_FIELDS:
        raise bad_payload("too many fields")
    for f in fields:
        var = f.attrs.get("var", "")
        vals = [v.text for v in f.find_all("value", NS.DATA_FORMS)]
        if len(vals) > MAX_VALUES or any(len(v) > MAX_VALUE for v in vals):
            raise bad_payload(f"{var}: too many values or a value too long")
        if var:
            out[var] = vals
    return x.attrs.get("type", "submit"), out


def checked(fields: Iterable[Field], values: Values) -> Values:
    """Each declared field's submitted values, checked (fields not declared are left out)."""
    return {f.var: f.check(values.get(f.var, [])) for f in fields}


__all__ = ["COMMANDS", "Field", "Values", "bad_payload", "checked", "command_error", "form",
           "submitted"]
