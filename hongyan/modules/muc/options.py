"""The [muc] section of the config file: multi-user chat (XEP-0045)."""

from __future__ import annotations

from pydantic import Field

from hongyan.config.schema import Section, ServiceHost


class MucOptions(Section):
    section = "muc"

    host: ServiceHost = Field("", description="the MUC service's domain (XEP-0045); "
                      "empty = conference.<server.domain>. Switch MUC off with "
                      "[modules] disabled = [\"muc\"]")
    history_size: int = Field(20, ge=0, le=1000, description="messages per room kept in "
                              "memory and sent to a joining occupant")
    max_users: int = Field(200, ge=1, le=100000, description="default and upper bound of a "
                           "room's muc#roomconfig_maxusers")
    max_rooms_per_user: int = Field(100, ge=1, description="rooms one user may own")
    archive: bool = Field(True, description="whether a new room archives its messages "
                          "(XEP-0313 on the room; its owner may change it). Writes are "
                          "batched with the [mam] flush settings")

    def host_for(self, domain: str) -> str:
        return self.host or f"conference.{domain}"

    def services(self, domain: str) -> dict[str, str]:
        return {"host": self.host_for(domain)}


OPTIONS = MucOptions
