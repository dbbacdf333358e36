"""Feature modules. Each subpackage exposes ``MODULE``, a :class:`~hongyan.server.module.Module`
subclass; the server finds them here by name (:mod:`hongyan.server.features`). ``ORDER`` is
the preferred load order among modules whose dependencies are loaded (``depends`` decide the
rest); a folder listed here may be deleted, and a new one need not be listed."""

from __future__ import annotations

ORDER: tuple[str, ...] = (
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
    "hostmeta",
    "upload",
    "extdisco",
    "proxy65",
    "metrics",
    "webclient",
    "admin",
    "adhoc",
    "invites",
    "eventstream",
    "emaildigest",
    "lan",
    "adminapi",
    "adminweb",
)
