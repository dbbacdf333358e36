"""The [mam] section of the config file: the message archive (XEP-0313). Its class lives in the
archive library, because room archives (``muc``) write with the same settings."""

from __future__ import annotations

from hongyan.modules.archive_query import ArchiveOptions

OPTIONS = ArchiveOptions
