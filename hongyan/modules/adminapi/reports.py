"""The admin API's routes for XEP-0377 abuse reports (kept by the blocking module): the list,
newest first and paged, and dismissing one. Here apart from the account routes so that the
feature's routes come and go with it (none when the blocking module is off)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from hongyan.modules.admin.ops import MAX_PAGE, AdminError, check_page
from hongyan.modules.adminapi.routes import JSON, Call, Param, Route

if TYPE_CHECKING:
    from hongyan.modules.blocking import Blocking

_S: JSON = {"type": "string"}
_I: JSON = {"type": "integer"}


def _obj(**props: JSON) -> JSON:
    return {"type": "object", "required": sorted(props), "properties": props}


REPORT = _obj(id=_I, reporter=_S, jid=_S, reason=_S, text=_S, lang=_S,
              stanza_ids={"type": "array", "items": _obj(by=_S, id=_S)},
              processing={"type": "array", "items": _S}, content=_S, created=_I)
REPORTS = _obj(count=_I, offset=_I, reports={"type": "array", "items": REPORT})
PAGE = {"offset": Param(int, minimum=0, maximum=10**9, description="how many to skip"),
        "limit": Param(int, minimum=1, maximum=MAX_PAGE, description="how many at most")}


def report_routes(blocking: Blocking, domain: str) -> list[Route]:
    async def listed(c: Call) -> tuple[int, Any]:
        offset, limit = c.query.get("offset", 0), c.query.get("limit", 100)
        check_page(offset, limit)
        total, found = await blocking.reports(offset, limit)
        return 200, {"count": total, "offset": offset,
                     "reports": [r.to_json(domain) for r in found]}

    async def dismissed(c: Call) -> tuple[int, Any]:
        text = c.path["id"]
        if not re.fullmatch(r"[0-9]{1,18}", text) or not await blocking.dismiss(int(text)):
            raise AdminError("not-found", "no such report")
        return 204, None

    return [
        Route("GET", "/api/reports", "read", "Spam and abuse reports users made with their "
              "blocks (XEP-0377), newest first (paged)", listed, answer=REPORTS, query=PAGE),
        Route("DELETE", "/api/reports/{id}", "admin", "Dismiss a report (the block stays)",
              dismissed, ok=204, errors=(404,)),
    ]


__all__ = ["report_routes"]
