"""Which modules load: every default one, minus those disabled and those built on them."""

from __future__ import annotations

from hongyan.modules import DEFAULT_MODULES
from hongyan.server.node import load_module_classes


def names(disabled: list[str]) -> list[str]:
    return [c.name for c in load_module_classes(disabled)]


def test_all_by_default_in_order() -> None:
    assert names([]) == list(DEFAULT_MODULES)


def test_a_disabled_module_takes_its_dependents_with_it() -> None:
    assert "avatar" not in names(["vcard"]) and "pep" in names(["vcard"])
    off = set(DEFAULT_MODULES) - set(names(["pubsub"]))
    assert off == {"pubsub", "pep", "bookmarks", "avatar"}
