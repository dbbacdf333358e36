"""Feature modules. Each subpackage exposes ``MODULE``, a :class:`~hongyan.server.module.Module`
subclass. ``DEFAULT_MODULES`` is the order they are loaded in (dependencies first)."""

from __future__ import annotations

DEFAULT_MODULES: tuple[str, ...] = (
    "disco",
    "ping",
    "version",
    "time",
    "roster",
    "presence",
    "offline",
    "sm",
    "csi",
    "blocking",
    "carbons",
    "register",
    "vcard",
    "private",
    "last",
    "muc",
    "mam",
    "push",
    "pubsub",
    "pep",
    "bookmarks",
    "avatar",
)
