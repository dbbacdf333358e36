"""Node configuration (XEP-0060 §16.4 ``pubsub#node_config``) and the data forms that carry it:
configuration forms, publish-options preconditions (§7.1.5).

Only the options the engine honours are listed, so a form never offers what does nothing.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element
from hongyan.xmpp.errors import StanzaError

PUBSUB = "http://jabber.org/protocol/pubsub"
NODE_CONFIG = PUBSUB + "#node_config"
PUBLISH_OPTIONS = PUBSUB + "#publish-options"

ACCESS_MODELS_PEP = ("open", "presence", "whitelist")
ACCESS_MODELS_SERVICE = ("open", "whitelist")


@dataclass(slots=True)
class NodeConfig:
    access_model: str = "presence"
    publish_model: str = "publishers"
    max_items: int = 1
    persist_items: bool = True
    deliver_payloads: bool = True
    notify_retract: bool = True
    notify_delete: bool = True
    send_last_published_item: str = "on_sub_and_presence"
    notification_type: str = "headline"
    title: str = ""
    type: str = ""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str, default: NodeConfig) -> NodeConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        data: dict[str, Any] = {k: v for k, v in json.loads(text).items() if k in known}
        return dataclasses.replace(default, **data)

    def copy(self) -> NodeConfig:
        return dataclasses.replace(self)


@dataclass(frozen=True, slots=True)
class Field:
    attr: str
    kind: str  # "bool" | "max_items" | "list" | "text"
    label: str
    options: tuple[str, ...] = ()


def fields(pep: bool) -> dict[str, Field]:
    access = ACCESS_MODELS_PEP if pep else ACCESS_MODELS_SERVICE
    return {
        "pubsub#access_model": Field("access_model", "list", "Who may subscribe and retrieve "
                                     "items", access),
        "pubsub#publish_model": Field("publish_model", "list", "Who may publish",
                                      ("publishers",) if pep else ("publishers", "open")),
        "pubsub#max_items": Field("max_items", "max_items", "Most items kept"),
        "pubsub#persist_items": Field("persist_items", "bool", "Keep items in storage"),
        "pubsub#deliver_payloads": Field("deliver_payloads", "bool",
                                         "Send payloads with notifications"),
        "pubsub#notify_retract": Field("notify_retract", "bool", "Notify when items are "
                                       "retracted"),
        "pubsub#notify_delete": Field("notify_delete", "bool", "Notify when the node is "
                                      "deleted"),
        "pubsub#send_last_published_item": Field(
            "send_last_published_item", "list", "When to send the last published item",
            ("never", "on_sub", "on_sub_and_presence")),
        "pubsub#notification_type": Field("notification_type", "list",
                                          "Message type of notifications", ("headline",
                                                                            "normal")),
        "pubsub#title": Field("title", "text", "A title for the node"),
        "pubsub#type": Field("type", "text", "The namespace of the payload"),
    }


def _value_str(field: Field, value: Any, max_items: int) -> str:
    if field.kind == "bool":
        return "1" if value else "0"
    if field.kind == "max_items":
        return str(value)
    return str(value)


def render(config: NodeConfig, pep: bool, form_type: str = "form") -> Element:
    x = Element("x", NS.DATA_FORMS, {"type": form_type})
    ft = x.add("field", attrs={"var": "FORM_TYPE", "type": "hidden"})
    ft.add("value", text=NODE_CONFIG)
    for var, f in fields(pep).items():
        ftype = {"bool": "boolean", "max_items": "text-single", "list": "list-single",
                 "text": "text-single"}[f.kind]
        el = x.add("field", attrs={"var": var, "type": ftype, "label": f.label})
        for opt in f.options:
            el.add("option").add("value", text=opt)
        el.add("value", text=_value_str(f, getattr(config, f.attr), config.max_items))
    return x


def parse_values(x: Element) -> dict[str, str]:
    """var -> first value of a submitted form (FORM_TYPE left out)."""
    out: dict[str, str] = {}
    for f in x.find_all("field", NS.DATA_FORMS):
        var = f.attrs.get("var", "")
        if not var or var == "FORM_TYPE":
            continue
        v = f.find("value", NS.DATA_FORMS)
        out[var] = v.text.strip() if v is not None else ""
    return out


def form_type(x: Element) -> str | None:
    for f in x.find_all("field", NS.DATA_FORMS):
        if f.attrs.get("var") == "FORM_TYPE":
            return f.find_text("value", NS.DATA_FORMS)
    return None


def convert(var: str, raw: str, pep: bool, max_items_limit: int) -> tuple[str, Any]:
    """(attribute, typed value) of a submitted option; ValueError names what is wrong."""
    f = fields(pep).get(var)
    if f is None:
        raise ValueError(f"unsupported option {var}")
    if f.kind == "bool":
        if raw.lower() in ("1", "true"):
            return f.attr, True
        if raw.lower() in ("0", "false"):
            return f.attr, False
        raise ValueError(f"{var} must be a boolean, not {raw!r}")
    if f.kind == "max_items":
        if raw == "max":
            return f.attr, max_items_limit
        try:
            n = int(raw)
        except ValueError:
            raise ValueError(f"{var} must be a number or 'max', not {raw!r}") from None
        if not 1 <= n <= max_items_limit:
            raise ValueError(f"{var} must be between 1 and {max_items_limit} "
                             "(pubsub.max_items)")
        return f.attr, n
    if f.kind == "list" and raw not in f.options:
        raise ValueError(f"{var} must be one of {', '.join(f.options)}, not {raw!r}")
    return f.attr, raw


def apply(config: NodeConfig, values: dict[str, str], pep: bool, max_items_limit: int
          ) -> NodeConfig:
    """A new configuration with the submitted values; not-acceptable on a bad value."""
    new = config.copy()
    for var, raw in values.items():
        try:
            attr, value = convert(var, raw, pep, max_items_limit)
        except ValueError as exc:
            raise StanzaError("not-acceptable", str(exc)) from None
        setattr(new, attr, value)
    return new


def unmet(config: NodeConfig, values: dict[str, str], pep: bool, max_items_limit: int,
          values_only: bool = False) -> str | None:
    """The first publish-option that the node's configuration does not match, said in words
    (``values_only``: only those that no configuration could match: unknown options and values
    out of bounds, for a node about to be made with them)."""
    for var, raw in values.items():
        try:
            attr, want = convert(var, raw, pep, max_items_limit)
        except ValueError as exc:
            return str(exc)
        if values_only:
            continue
        have = getattr(config, attr)
        if have != want:
            return f"{var} is {_value_str(fields(pep)[var], have, max_items_limit)}, not {raw}"
    return None
