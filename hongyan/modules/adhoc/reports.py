"""Ad-hoc commands (XEP-0050) over the XEP-0377 abuse reports the blocking module keeps: the
list, newest first, a page at a time (a XEP-0004 table: ``<reported/>`` then one ``<item/>``
per report), and dismissing reports by their numbers. XEP-0133 has no such commands, so
their nodes are ours (``urn:hongyan:admin#…``); only the server's administrators see or run
them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hongyan.modules.adhoc.admin import MAX_ITEMS
from hongyan.modules.adhoc.commands import Command, Step
from hongyan.modules.adhoc.forms import Field, Values, bad_payload, checked, form
from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element
from hongyan.xmpp.stamps import xmpp_datetime

if TYPE_CHECKING:
    from hongyan.modules.blocking import Blocking
    from hongyan.modules.blocking.reports import StoredReport

HONGYAN_ADMIN = "urn:hongyan:admin"
COLUMNS = (Field("id", "text-single", "Report"), Field("created", "text-single", "When"),
           Field("reporter", "jid-single", "Reported by"), Field("jid", "jid-single", "Reported"),
           Field("reason", "text-single", "Reason"), Field("text", "text-multi", "Text"),
           Field("stanza-ids", "text-multi", "Messages (stanza-id by)"),
           Field("content", "text-multi", "Content sent"))
IDS = Field("ids", "text-multi", "The numbers of the reports to dismiss", required=True)


def table(reports: list[StoredReport], domain: str, kind: str) -> Element:
    x = form((), HONGYAN_ADMIN, "Abuse reports", kind=kind)
    reported = x.add("reported", NS.DATA_FORMS)
    for f in COLUMNS:
        reported.append(Field(f.var, f.type, f.label).element(()))
    for r in reports:
        item = x.add("item", NS.DATA_FORMS)
        values = {"id": [str(r.id)], "created": [xmpp_datetime(r.created_at)],
                  "reporter": [f"{r.reporter}@{domain}"], "jid": [r.jid],
                  "reason": [r.report.reason], "text": r.report.text.splitlines(),
                  "stanza-ids": [f"{i} {by}" for by, i in r.report.stanza_ids],
                  "content": [r.report.content] if r.report.content else []}
        for f in COLUMNS:
            item.append(Element("field", NS.DATA_FORMS, {"var": f.var},
                                [Element("value", NS.DATA_FORMS, children=[v])
                                 for v in values[f.var]]))
    return x


class ReportList(Command):
    node = f"{HONGYAN_ADMIN}#list-reports"
    name = "Abuse reports"

    def __init__(self, blocking: Blocking, domain: str) -> None:
        self.blocking = blocking
        self.domain = domain

    async def start(self, state: dict[str, Any]) -> Step:
        return Step(form([MAX_ITEMS], HONGYAN_ADMIN, self.name), actions=("next", "complete"))

    async def step(self, action: str, values: Values, state: dict[str, Any]) -> Step:
        if "limit" not in state:
            size = (checked([MAX_ITEMS], values)[MAX_ITEMS.var] or ["25"])[0]
            state["limit"] = 1000 if size == "none" else int(size)
            state["offset"] = 0
        elif action == "next":
            state["offset"] += state["limit"]
        total, found = await self.blocking.reports(state["offset"], state["limit"])
        note = (f"{state['offset'] + 1}-{state['offset'] + len(found)} of {total}" if found
                else f"none of {total}")
        result = table(found, self.domain, "result" if action == "complete" else "form")
        if action == "complete":
            return Step(form=result, note=note)
        more = state["offset"] + len(found) < total
        return Step(result, actions=("next", "complete") if more else ("complete",),
                    default="next" if more else "complete", note=note)


class DismissReports(Command):
    node = f"{HONGYAN_ADMIN}#dismiss-reports"
    name = "Dismiss abuse reports"

    def __init__(self, blocking: Blocking) -> None:
        self.blocking = blocking

    async def start(self, state: dict[str, Any]) -> Step:
        return Step(form([IDS], HONGYAN_ADMIN, self.name, "The blocks stay; the reports go."),
                    actions=("complete",))

    async def step(self, action: str, values: Values, state: dict[str, Any]) -> Step:
        ids = [v.strip() for v in checked([IDS], values)[IDS.var] if v.strip()]
        if any(not v.isdigit() or len(v) > 18 for v in ids):
            raise bad_payload("ids: one report number per line")
        gone = [v for v in dict.fromkeys(ids) if await self.blocking.dismiss(int(v))]
        missing = [v for v in dict.fromkeys(ids) if v not in gone]
        note = f"dismissed: {', '.join(gone) or 'none'}"
        if missing:
            note += f"; no such report: {', '.join(missing)}"
        return Step(note=note)


def report_commands(blocking: Blocking, domain: str) -> list[Command]:
    return [ReportList(blocking, domain), DismissReports(blocking)]


__all__ = ["HONGYAN_ADMIN", "report_commands"]
