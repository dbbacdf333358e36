"""XEP-0377 Blocking Command Reports: the ``<report/>`` a block item may carry, parsed, and
the table that keeps it for the server's administrators.

A report is kept once per reporter and reported JID (a new one replaces the older: the
newest says most), with its reason, the user's text, the XEP-0359 stanza-ids it names, the
processing opt-ins (``report-origin``, ``third-party``: recorded, acted on by no one here) and
any other payload the client put in (a copy of the message, as some clients send) serialized.
Each part is bounded, and one user keeps at most :data:`MAX_PER_REPORTER` reports: past it the
JID is still blocked (XEP-0377 §5: the block happens as if no report were there) and the report
is dropped, logged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hongyan.storage.db import Executor
from hongyan.storage.migrations import Migration
from hongyan.xmpp import ns as NS
from hongyan.xmpp.element import Element
from hongyan.xmpp.errors import StanzaError

REPORTING = "urn:xmpp:reporting:1"
SID = "urn:xmpp:sid:0"
#: the reasons XEP-0377 defines (others are refused: a registry entry needs its own XEP)
REASONS = ("urn:xmpp:reporting:spam", "urn:xmpp:reporting:abuse")
OPT_INS = ("report-origin", "third-party")
MAX_TEXT = 4096
MAX_STANZA_IDS = 50
MAX_CONTENT = 16384
MAX_PER_REPORTER = 1000
_LANG = "{" + NS.XML + "}lang"

MIGRATION = Migration("blocking", 2, (
    """CREATE TABLE abuse_reports (
        id {pk},
        reporter TEXT NOT NULL,
        jid TEXT NOT NULL,
        reason TEXT NOT NULL,
        text TEXT NOT NULL,
        lang TEXT NOT NULL,
        stanza_ids TEXT NOT NULL,
        processing TEXT NOT NULL,
        content TEXT NOT NULL,
        created_at {bigint} NOT NULL,
        UNIQUE (reporter, jid)
    )""",
    "CREATE INDEX abuse_reports_created ON abuse_reports (created_at)",
))


@dataclass(frozen=True, slots=True)
class Report:
    """One report as a user made it (``reporter``: the local username)."""

    reason: str
    text: str = ""
    lang: str = ""
    stanza_ids: tuple[tuple[str, str], ...] = ()  # (by, id)
    processing: tuple[str, ...] = ()
    content: str = ""


@dataclass(frozen=True, slots=True)
class StoredReport:
    id: int
    reporter: str
    jid: str
    created_at: int
    report: Report

    def to_json(self, domain: str) -> dict[str, Any]:
        r = self.report
        return {"id": self.id, "reporter": f"{self.reporter}@{domain}", "jid": self.jid,
                "reason": r.reason, "text": r.text, "lang": r.lang,
                "stanza_ids": [{"by": by, "id": i} for by, i in r.stanza_ids],
                "processing": list(r.processing), "content": r.content,
                "created": self.created_at}


def parse(item: Element) -> Report | None:
    """The report a ``<block/>`` item carries (None: none); a malformed one is bad-request."""
    el = item.find("report", REPORTING)
    if el is None:
        return None
    reason = el.attrs.get("reason", "")
    if not reason:
        raise StanzaError("bad-request", "a report needs a reason (XEP-0377 §4)")
    if reason not in REASONS:
        raise StanzaError("bad-request", f"unknown report reason {reason[:100]!r}")
    text, lang, ids, processing, rest = "", "", [], [], []
    for child in el.elements:
        if child.xmlns == REPORTING and child.name == "text":
            if text:
                text += "\n"
            text += child.text.strip()
            lang = lang or child.attrs.get(_LANG, "")
        elif child.xmlns == REPORTING and child.name in OPT_INS:
            if child.name not in processing:
                processing.append(child.name)
        elif child.xmlns == SID and child.name == "stanza-id":
            sid, by = child.attrs.get("id", ""), child.attrs.get("by", "")
            if not sid or not by:
                raise StanzaError("bad-request", "a stanza-id needs 'id' and 'by'")
            ids.append((by, sid))
        else:
            rest.append(child.to_str(REPORTING))
    content = "".join(rest)
    if len(text) > MAX_TEXT:
        raise StanzaError("not-acceptable", f"a report's text is at most {MAX_TEXT} characters")
    if len(ids) > MAX_STANZA_IDS:
        raise StanzaError("not-acceptable", f"a report names at most {MAX_STANZA_IDS} stanzas")
    if len(content) > MAX_CONTENT:
        raise StanzaError("not-acceptable", "the report's content is too large")
    if any(len(by) > 3071 or len(sid) > 1024 for by, sid in ids):
        raise StanzaError("bad-request", "a stanza-id is too long")
    return Report(reason, text, lang[:64], tuple(dict.fromkeys(ids)), tuple(processing),
                  content)


async def store(tx: Executor, reporter: str, jid: str, report: Report, now: int) -> bool:
    """Keep ``report`` (replacing the reporter's older one about ``jid``); False when the
    reporter holds too many already."""
    held = await tx.fetchval("SELECT COUNT(*) FROM abuse_reports WHERE reporter=? AND jid<>?",
                             reporter, jid)
    if int(held or 0) >= MAX_PER_REPORTER:
        return False
    args = (report.reason, report.text, report.lang,
            json.dumps([list(p) for p in report.stanza_ids]), ",".join(report.processing),
            report.content, now)
    await tx.execute(
        "INSERT INTO abuse_reports (reporter, jid, reason, text, lang, stanza_ids, processing, "
        "content, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (reporter, jid) "
        "DO UPDATE SET reason=excluded.reason, text=excluded.text, lang=excluded.lang, "
        "stanza_ids=excluded.stanza_ids, processing=excluded.processing, "
        "content=excluded.content, created_at=excluded.created_at", reporter, jid, *args)
    return True


_COLUMNS = ("id, reporter, jid, reason, text, lang, stanza_ids, processing, content, "
            "created_at")


def _row(row: Any) -> StoredReport:
    ids = tuple((str(p[0]), str(p[1])) for p in json.loads(row[6]))
    processing = tuple(p for p in str(row[7]).split(",") if p)
    return StoredReport(int(row[0]), row[1], row[2], int(row[9]),
                        Report(row[3], row[4], row[5], ids, processing, row[8]))


async def page(db: Executor, offset: int, limit: int) -> tuple[int, list[StoredReport]]:
    """The reports, newest first: how many in all, and ``limit`` from ``offset``."""
    total = int(await db.fetchval("SELECT COUNT(*) FROM abuse_reports") or 0)
    rows = await db.fetchall(f"SELECT {_COLUMNS} FROM abuse_reports "
                             "ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?", limit, offset)
    return total, [_row(r) for r in rows]


async def dismiss(db: Executor, report_id: int) -> bool:
    return await db.execute("DELETE FROM abuse_reports WHERE id=?", report_id) > 0


__all__ = ["MIGRATION", "REASONS", "REPORTING", "Report", "StoredReport", "dismiss", "page",
           "parse", "store"]
