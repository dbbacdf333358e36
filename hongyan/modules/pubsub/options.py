"""The [pubsub] section of the config file: the XEP-0060 service and the limits of PEP too."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from hongyan.config.schema import Section, ServiceHost


class PubSubOptions(Section):
    section = "pubsub"

    host: ServiceHost = Field("", description="the XEP-0060 service's domain; empty = "
                      "pubsub.<server.domain>")
    service: bool = Field(True, description="run the pubsub.<domain> service (PEP on "
                          "accounts runs whenever the pep module is loaded)")
    create_nodes: Literal["admins", "users"] = Field(
        "admins", description="who may create nodes on the service (and auto-create them by "
        "publishing): 'admins' (server.admins) or 'users' (any local user); PEP nodes are "
        "always their account's own")
    max_item_size: int = Field(131072, ge=1024, le=16 * 1024 * 1024, description="bytes an "
                               "item's payload may have (avatars are the largest PEP items)")
    max_items: int = Field(1000, ge=1, le=100000, description="upper bound of a node's "
                           "pubsub#max_items (and what 'max' means)")
    max_nodes: int = Field(1000, ge=1, description="nodes one service (one account's PEP) "
                           "may hold")

    def host_for(self, domain: str) -> str:
        return self.host or f"pubsub.{domain}"

    def services(self, domain: str) -> dict[str, str]:
        return {"host": self.host_for(domain)} if self.service else {}


OPTIONS = PubSubOptions
