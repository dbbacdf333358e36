"""Room configuration (XEP-0045 §10.2, the ``muc#roomconfig`` form), the ``muc#roominfo``
form of a room's disco#info (§6.4) and the disco features that follow from a configuration."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element
from hongyan.xmpp.errors import StanzaError

MUC = "http://jabber.org/protocol/muc"
MUC_USER = MUC + "#user"
MUC_ADMIN = MUC + "#admin"
MUC_OWNER = MUC + "#owner"
ROOMCONFIG = MUC + "#roomconfig"
ROOMINFO = MUC + "#roominfo"
SELF_PING = MUC + "#self-ping-optimization"
REQUEST = MUC + "#request"
REGISTER = MUC + "#register"
OCCUPANT_ID = "urn:xmpp:occupant-id:0"
IQ_REGISTER = "jabber:iq:register"
MAM = "urn:xmpp:mam:2"
MAM_EXTENDED = "urn:xmpp:mam:2#extended"
SID = "urn:xmpp:sid:0"
#: the room configuration field that switches the archive (Prosody's name; ejabberd's ``mam``
#: is accepted too)
ARCHIVING = "muc#roomconfig_enablearchiving"
#: Hongyan's own field: users may register with a members-only or moderated room (§7.10) and
#: so become members
ALLOW_REGISTER = "hongyan#roomconfig_allowregister"
#: Hongyan's own fields: a group call's meeting link (an external SFU's room URL, such as a
#: Jitsi Meet or Galène one), set in the configuration form and shown in disco#info
MEETING_URL = "hongyan#roomconfig_meetingurl"
MEETING_URL_INFO = "hongyan#roominfo_meetingurl"
CONFERENCE = "jabber:x:conference"

WHOIS = ("moderators", "anyone")
ALLOWPM = ("anyone", "participants", "moderators", "none")


@dataclass(slots=True)
class RoomConfig:
    name: str = ""
    description: str = ""
    lang: str = ""
    persistent: bool = False
    public: bool = True
    members_only: bool = False
    moderated: bool = False
    password_protected: bool = False
    password: str = ""
    max_users: int = 200
    whois: str = "moderators"
    allow_pm: str = "anyone"
    change_subject: bool = False
    allow_invites: bool = False
    archive: bool = True
    allow_register: bool = False
    meeting_url: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RoomConfig:
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def non_anonymous(self) -> bool:
        return self.whois == "anyone"

    def features(self) -> list[str]:
        """The room's disco#info features: each one exactly what the configuration says."""
        c = self
        archive = [MAM, MAM_EXTENDED, SID] if c.archive else []
        return [
            *archive,
            IQ_REGISTER,
            REQUEST,
            MUC,
            NS.DISCO_INFO,
            NS.DISCO_ITEMS,
            OCCUPANT_ID,
            SELF_PING,
            "muc_persistent" if c.persistent else "muc_temporary",
            "muc_public" if c.public else "muc_hidden",
            "muc_membersonly" if c.members_only else "muc_open",
            "muc_moderated" if c.moderated else "muc_unmoderated",
            "muc_nonanonymous" if c.non_anonymous else "muc_semianonymous",
            "muc_passwordprotected" if c.password_protected else "muc_unsecured",
        ]


def _field(form: Element, var: str, ftype: str, label: str, value: str | list[str],
           options: tuple[tuple[str, str], ...] = ()) -> None:
    f = form.add("field", attrs={"var": var, "type": ftype, "label": label})
    for opt_value, opt_label in options:
        f.add("option", attrs={"label": opt_label}).add("value", text=opt_value)
    for v in [value] if isinstance(value, str) else value:
        f.add("value", text=v)


def _bool(v: bool) -> str:
    return "1" if v else "0"


def config_form(c: RoomConfig, max_users: int) -> Element:
    form = Element("x", NS.DATA_FORMS, {"type": "form"})
    form.add("title", text="Room configuration")
    _field(form, "FORM_TYPE", "hidden", "", ROOMCONFIG)
    _field(form, "muc#roomconfig_roomname", "text-single", "Name", c.name)
    _field(form, "muc#roomconfig_roomdesc", "text-single", "Description", c.description)
    _field(form, "muc#roomconfig_lang", "text-single", "Language", c.lang)
    _field(form, "muc#roomconfig_persistentroom", "boolean", "Persistent", _bool(c.persistent))
    _field(form, "muc#roomconfig_publicroom", "boolean", "Listed in the directory",
           _bool(c.public))
    _field(form, "muc#roomconfig_membersonly", "boolean", "Members only",
           _bool(c.members_only))
    _field(form, "muc#roomconfig_moderatedroom", "boolean", "Moderated", _bool(c.moderated))
    _field(form, "muc#roomconfig_passwordprotectedroom", "boolean", "Password protected",
           _bool(c.password_protected))
    _field(form, "muc#roomconfig_roomsecret", "text-private", "Password", c.password)
    sizes = sorted({n for n in (10, 20, 30, 50, 100, 200, 500, 1000) if n < max_users}
                   | {max_users})
    _field(form, "muc#roomconfig_maxusers", "list-single", "Maximum occupants",
           str(c.max_users), tuple((str(n), str(n)) for n in sizes))
    _field(form, "muc#roomconfig_whois", "list-single", "Who may see real JIDs", c.whois,
           (("moderators", "Moderators only"), ("anyone", "Anyone")))
    _field(form, "muc#roomconfig_allowpm", "list-single", "Who may send private messages",
           c.allow_pm, (("anyone", "Anyone"), ("participants", "Participants"),
                        ("moderators", "Moderators"), ("none", "Nobody")))
    _field(form, "muc#roomconfig_changesubject", "boolean", "Occupants may change the subject",
           _bool(c.change_subject))
    _field(form, "muc#roomconfig_allowinvites", "boolean", "Occupants may invite others",
           _bool(c.allow_invites))
    _field(form, ARCHIVING, "boolean", "Archive messages (XEP-0313)", _bool(c.archive))
    _field(form, ALLOW_REGISTER, "boolean",
           "Users may register with the room and so become members", _bool(c.allow_register))
    _field(form, MEETING_URL, "text-single",
           "Meeting link for group calls (https:// URL of a Jitsi, Galène, ... room)",
           c.meeting_url)
    return form


def _parse_bool(var: str, value: str) -> bool:
    if value in ("1", "true"):
        return True
    if value in ("0", "false"):
        return False
    raise StanzaError("not-acceptable", f"{var}: not a boolean")


def apply_form(current: RoomConfig, form: Element, max_users: int) -> RoomConfig:
    """A new configuration from a submitted form (fields not sent keep their value; fields we
    do not know are ignored, as clients send fields other servers offer)."""
    values: dict[str, str] = {}
    for f in form.find_all("field", NS.DATA_FORMS):
        var = f.attrs.get("var", "")
        vals = [v.text for v in f.find_all("value", NS.DATA_FORMS)]
        values[var] = vals[0] if vals else ""
    form_type = values.get("FORM_TYPE")
    if form_type is not None and form_type != ROOMCONFIG:
        raise StanzaError("bad-request", "not a muc#roomconfig form")
    c = RoomConfig(**asdict(current))
    for var, value in values.items():
        key = var.removeprefix("muc#roomconfig_")
        if key == "roomname":
            c.name = value[:256]
        elif key == "roomdesc":
            c.description = value[:1024]
        elif key == "lang":
            c.lang = value[:35]
        elif key == "persistentroom":
            c.persistent = _parse_bool(var, value)
        elif key == "publicroom":
            c.public = _parse_bool(var, value)
        elif key == "membersonly":
            c.members_only = _parse_bool(var, value)
        elif key == "moderatedroom":
            c.moderated = _parse_bool(var, value)
        elif key == "passwordprotectedroom":
            c.password_protected = _parse_bool(var, value)
        elif key == "roomsecret":
            c.password = value[:256]
        elif key == "maxusers":
            if value in ("", "none", "0"):
                c.max_users = max_users
            else:
                try:
                    n = int(value)
                except ValueError:
                    raise StanzaError("not-acceptable", f"{var}: not a number") from None
                if n < 1:
                    raise StanzaError("not-acceptable", f"{var}: must be positive")
                c.max_users = min(n, max_users)
        elif key == "whois":
            if value not in WHOIS:
                raise StanzaError("not-acceptable", f"{var}: one of {', '.join(WHOIS)}")
            c.whois = value
        elif key == "allowpm":
            if value not in ALLOWPM:
                raise StanzaError("not-acceptable", f"{var}: one of {', '.join(ALLOWPM)}")
            c.allow_pm = value
        elif key == "changesubject":
            c.change_subject = _parse_bool(var, value)
        elif key == "allowinvites":
            c.allow_invites = _parse_bool(var, value)
        elif var in (ARCHIVING, "mam", "muc#roomconfig_mam"):
            c.archive = _parse_bool(var, value)
        elif var == ALLOW_REGISTER:
            c.allow_register = _parse_bool(var, value)
        elif var == MEETING_URL:
            c.meeting_url = _meeting_url(var, value)
    if "muc#roomconfig_roomsecret" in values and "muc#roomconfig_passwordprotectedroom" \
            not in values:
        c.password_protected = bool(c.password)
    if c.password_protected and not c.password:
        raise StanzaError("not-acceptable", "a password-protected room needs a password")
    if not c.password_protected:
        c.password = ""
    return c


def _meeting_url(var: str, value: str) -> str:
    """An absolute http(s) URL with a host, at most 2,048 characters; empty for none."""
    value = value.strip()
    if not value:
        return ""
    scheme, sep, rest = value.partition("://")
    host = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    if (len(value) > 2048 or not sep or scheme.lower() not in ("https", "http") or not host
            or any(ch.isspace() or ch in "<>\"" for ch in value)):
        raise StanzaError("not-acceptable", f"{var}: not an http:// or https:// URL")
    return value


def roominfo_form(c: RoomConfig, occupants: int, subject: str) -> Element:
    form = Element("x", NS.DATA_FORMS, {"type": "result"})
    _field(form, "FORM_TYPE", "hidden", "", ROOMINFO)
    _field(form, "muc#roomconfig_roomname", "text-single", "Name", c.name)
    _field(form, "muc#roominfo_description", "text-single", "Description", c.description)
    _field(form, "muc#roominfo_subject", "text-single", "Subject", subject)
    _field(form, "muc#roominfo_occupants", "text-single", "Occupants", str(occupants))
    _field(form, "muc#roominfo_changesubject", "boolean", "Occupants may change the subject",
           _bool(c.change_subject))
    if c.lang:
        _field(form, "muc#roominfo_lang", "text-single", "Language", c.lang)
    if c.meeting_url:
        _field(form, MEETING_URL_INFO, "text-single", "Meeting link for group calls",
               c.meeting_url)
    return form
