"""The [offline] section of the config file: offline storage (RFC 6121 §8.5.2, XEP-0160)."""

from __future__ import annotations

from pydantic import Field

from hongyan.config.schema import Section


class OfflineOptions(Section):
    section = "offline"

    quota: int = Field(1000, ge=0, description="stored messages per user")


OPTIONS = OfflineOptions
