"""XEP-0313 queries, shared by every archive: users' (:mod:`hongyan.modules.mam`) and rooms'
(:mod:`hongyan.modules.muc.archive`). A library, not a feature: it lives beside the feature
folders so that either may be disabled or deleted without the other.

Plain functions, no module state: the query form, its parsing (form fields, XEP-0059 paging),
the SQL page over one archive table, and the result stanzas written as pre-built strings. The
[mam] settings are here too (:class:`ArchiveOptions`): room archives batch their writes with
the same ones.

An archive table has an integer ``id`` (microseconds since the epoch, strictly increasing, so
``start``/``end`` are an id range), a key column (the archive's owner: a username, a room) and
a ``stanza`` column; :func:`page` is told which columns ``with`` filters on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from hongyan.config.schema import Section
from hongyan.xmpp.element import Element, escape_attr
from hongyan.xmpp.errors import StanzaError
from hongyan.xmpp.jid import JID, JIDError
from hongyan.xmpp.stamps import parse_xmpp_datetime, xmpp_datetime

if TYPE_CHECKING:
    from hongyan.server.router import Endpoint, RemoteEndpoint
    from hongyan.server.session import ClientSession
    from hongyan.storage.db import Database


class ArchiveOptions(Section):
    """The [mam] section of the config file (read by the mam feature; a room archive writes with
    its batching settings)."""

    section = "mam"

    default: Literal["always", "never", "roster"] = Field(
        "always", description="XEP-0313 default for users who set no preferences")
    retention_days: float = Field(0, ge=0, description="archived messages older than this "
                                  "many days are removed; 0 = keep forever")
    cleanup_interval: float = Field(3600.0, gt=0, description="seconds between retention "
                                    "cleanups")
    flush_interval: float = Field(0.005, gt=0, le=5, description="seconds archived messages "
                                  "wait in memory before one batched write")
    flush_rows: int = Field(500, ge=1, description="queued messages that trigger a write "
                            "before flush_interval")
    max_queued: int = Field(10000, ge=1, description="queued messages beyond which a sender "
                            "waits (its next stanzas are read once the queue was handed to "
                            "the database): bounds the archive's memory when writes fall "
                            "behind (each room archive's queue too)")
    max_page: int = Field(250, ge=1, le=10000, description="most messages one query returns")


MAM = "urn:xmpp:mam:2"
MAM_EXTENDED = "urn:xmpp:mam:2#extended"
RSM = "http://jabber.org/protocol/rsm"
XDATA = "jabber:x:data"
FORWARD = "urn:xmpp:forward:0"
FIELDS = frozenset({"FORM_TYPE", "with", "start", "end", "before-id", "after-id", "ids"})
MAX_IDS = 250
COUNT_LIMIT = 1_000

#: ``with`` (a parsed JID) -> SQL conditions and their arguments
WithFilter = Callable[[JID], list[tuple[str, object]]]
Page = tuple[list[tuple[int, str]], bool, int | None]


def form_element() -> Element:
    """The query form (XEP-0313 §4.1.4), what a ``get`` of ``<query/>`` answers."""
    q = Element("query", MAM)
    x = q.add("x", XDATA, {"type": "form"})
    x.add("field", XDATA, {"var": "FORM_TYPE", "type": "hidden"}).add("value", text=MAM)
    x.add("field", XDATA, {"var": "with", "type": "jid-single"})
    x.add("field", XDATA, {"var": "start", "type": "text-single"})
    x.add("field", XDATA, {"var": "end", "type": "text-single"})
    x.add("field", XDATA, {"var": "before-id", "type": "text-single"})
    x.add("field", XDATA, {"var": "after-id", "type": "text-single"})
    x.add("field", XDATA, {"var": "ids", "type": "text-multi"})
    return q


def parse_form(query: Element) -> dict[str, list[str]]:
    x = query.find("x", XDATA)
    if x is None:
        return {}
    if x.attrs.get("type", "submit") != "submit":
        raise StanzaError("bad-request", "the form must be of type submit")
    out: dict[str, list[str]] = {}
    for f in x.find_all("field", XDATA):
        var = f.attrs.get("var", "")
        if var not in FIELDS:
            raise StanzaError("bad-request", f"unknown field {var!r}")
        out[var] = [v.text for v in f.find_all("value", XDATA)]
    ftype = out.pop("FORM_TYPE", [MAM])
    if ftype != [MAM]:
        raise StanzaError("bad-request", "FORM_TYPE must be urn:xmpp:mam:2")
    for var, values in out.items():
        if var != "ids" and len(values) != 1:
            raise StanzaError("bad-request", f"field {var!r} needs exactly one value")
    return out


def int_id(text: str) -> int:
    t = text.strip()
    if not t.isdigit() or len(t) > 18:
        raise StanzaError("item-not-found", f"no archived message {text!r}")
    return int(t)


def parse_rsm(query: Element, max_page: int) -> tuple[int, str | None, str | None]:
    """XEP-0059 paging of a query: (page size, ``after``, ``before``)."""
    rsm = query.find("set", RSM)
    max_n = max_page
    after = before = None
    if rsm is not None:
        text = rsm.find_text("max", RSM)
        if text is not None:
            if not text.strip().isdigit():
                raise StanzaError("bad-request", "RSM max must be a number")
            max_n = min(int(text), max_page)
        after = rsm.find_text("after", RSM)
        before = rsm.find_text("before", RSM)
        if after is not None and before is not None:
            raise StanzaError("bad-request", "RSM after and before together")
    return max_n, after, before


async def _exists(db: Database, table: str, key_col: str, key: str, text: str) -> int:
    mid = int_id(text)
    if await db.fetchone(f"SELECT 1 FROM {table} WHERE {key_col}=? AND id=?", key, mid) is None:
        raise StanzaError("item-not-found", f"no archived message {text!r}")
    return mid


async def page(db: Database, table: str, key_col: str, key: str, with_filter: WithFilter,
               form: dict[str, list[str]], max_n: int, after: str | None = None,
               before: str | None = None) -> Page:
    """One page of the archive ``key`` in ``table``: (rows (id, stanza) oldest first, whether
    it is the last page in the query's direction, how many messages match the filter, None
    when more than COUNT_LIMIT). ``before`` (RSM, possibly empty = from the end) pages
    backward."""
    conds = [f"{key_col}=?"]
    args: list[object] = [key]
    if "with" in form:
        try:
            peer = JID.parse(form["with"][0])
        except JIDError:
            raise StanzaError("bad-request", "'with' is not a JID") from None
        for cond, arg in with_filter(peer):
            conds.append(cond)
            args.append(arg)
    for var, op in (("start", ">="), ("end", "<=")):
        if var in form:
            try:
                ts = parse_xmpp_datetime(form[var][0])
            except ValueError:
                raise StanzaError("bad-request", f"{var!r} is not a XEP-0082 DateTime"
                                  ) from None
            conds.append(f"id{op}?")
            args.append(int(ts * 1_000_000))
    for var, op in (("after-id", ">"), ("before-id", "<")):
        if var in form:
            conds.append(f"id{op}?")
            args.append(await _exists(db, table, key_col, key, form[var][0]))
    if "ids" in form:
        ids = [int_id(v) for v in form["ids"]]
        if not ids or len(ids) > MAX_IDS:
            raise StanzaError("bad-request", f"give 1 to {MAX_IDS} ids")
        conds.append("id IN (" + ",".join("?" * len(ids)) + ")")
        args.extend(ids)
    where = " AND ".join(conds)
    page_conds: list[str] = []
    page_args: list[object] = []
    backward = before is not None
    if after:
        page_conds.append("id>?")
        page_args.append(await _exists(db, table, key_col, key, after))
    elif before:
        page_conds.append("id<?")
        page_args.append(await _exists(db, table, key_col, key, before))
    pwhere = " AND ".join([where, *page_conds])
    order = "DESC" if backward else "ASC"
    rows = await db.fetchall(
        f"SELECT id, stanza FROM {table} WHERE {pwhere} ORDER BY id {order} LIMIT ?",
        *args, *page_args, max_n + 1)
    complete = len(rows) <= max_n
    rows = rows[:max_n]
    if backward:
        rows.reverse()
    # Counting a whole archive of a million rows costs a scan of its index (~150 ms on
    # SQLite), more than the page: count up to COUNT_LIMIT and leave <count/> out beyond
    # (XEP-0059 makes it optional).
    count = await db.fetchval(
        f"SELECT COUNT(*) FROM (SELECT 1 FROM {table} WHERE {where} LIMIT ?) AS c",
        *args, COUNT_LIMIT + 1)
    n = int(count or 0)
    return [(int(i), str(x)) for i, x in rows], complete, (n if n <= COUNT_LIMIT else None)


async def bounds(db: Database, table: str, key_col: str, key: str) -> tuple[int, int] | None:
    """The ids of the first and the last message of archive ``key`` (None: it is empty): two
    reads of one end of its ``(key, id)`` index."""
    sql = f"SELECT id FROM {table} WHERE {key_col}=? ORDER BY id {{}} LIMIT 1"
    first = await db.fetchval(sql.format("ASC"), key)
    if first is None:
        return None
    return int(first), int(await db.fetchval(sql.format("DESC"), key))


def metadata_element(found: tuple[int, int] | None) -> Element:
    """XEP-0313 §6 archive metadata (what ``#extended`` promises): the id and time of the
    archive's first and last message; an empty archive has neither."""
    el = Element("metadata", MAM)
    if found is not None:
        for name, mid in zip(("start", "end"), found, strict=True):
            el.add(name, MAM, {"id": str(mid), "timestamp": xmpp_datetime(mid / 1_000_000)})
    return el


def send_results(session: ClientSession | Endpoint | RemoteEndpoint | None, query: Element,
                 rows: list[tuple[int, str]], flip: bool, frm: str = "") -> None:
    """The result messages, as pre-built strings, to the querying session (from ``frm`` when
    the archive is not the user's own)."""
    if session is None or session.jid is None:
        return
    fattr = f" from='{escape_attr(frm)}'" if frm else ""
    head = (f"<message xmlns='jabber:client'{fattr} to='{escape_attr(str(session.jid))}'>"
            f"<result xmlns='{MAM}' id='")
    qid = query.attrs.get("queryid")
    qattr = f" queryid='{escape_attr(qid)}'" if qid is not None else ""
    for mid, xml in (reversed(rows) if flip else rows):
        stamp = xmpp_datetime(mid / 1_000_000)
        session.send(
            f"{head}{mid}'{qattr}><forwarded xmlns='{FORWARD}'>"
            f"<delay xmlns='urn:xmpp:delay' stamp='{stamp}'/>{xml}"
            f"</forwarded></result></message>".encode())


def fin_element(rows: list[tuple[int, str]], complete: bool, count: int | None,
                flip: bool) -> Element:
    fin = Element("fin", MAM)
    if complete:
        fin.attrs["complete"] = "true"
    s = fin.add("set", RSM)
    if rows:
        first, last = (rows[-1][0], rows[0][0]) if flip else (rows[0][0], rows[-1][0])
        s.add("first", RSM, text=str(first))
        s.add("last", RSM, text=str(last))
    if count is not None:
        s.add("count", RSM, text=str(count))
    return fin
