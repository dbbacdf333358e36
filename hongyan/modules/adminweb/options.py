"""The [adminweb] section of the config file: the admin page's sessions and chart."""

from __future__ import annotations

from pydantic import Field

from hongyan.config.schema import Section


class AdminWebOptions(Section):
    section = "adminweb"

    idle_timeout: int = Field(1800, ge=60, le=86400, description="seconds without a request "
                              "after which an admin page session ends (log in again)")
    chart_minutes: int = Field(60, ge=5, le=1440, description="how many minutes the "
                               "messages-per-minute chart shows")


OPTIONS = AdminWebOptions
