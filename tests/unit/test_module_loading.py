"""Which modules load and in which order: found by folder, ordered by ``depends`` (the
package's ORDER among equals), minus those disabled and those built on them; a cycle is an
error that names it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from hongyan.modules import ORDER
from hongyan.server.features import FeatureError, load_module_classes


def names(disabled: list[str], package: str = "hongyan.modules") -> list[str]:
    return [c.name for c in load_module_classes(disabled, package)]


def test_all_by_default_in_order() -> None:
    assert names([]) == list(ORDER)


def test_a_disabled_module_takes_its_dependents_with_it() -> None:
    assert "avatar" not in names(["vcard"]) and "pep" in names(["vcard"])
    off = set(ORDER) - set(names(["pubsub"]))
    assert off == {"pubsub", "pep", "bookmarks", "avatar"}


def test_disabling_mam_or_blocking_leaves_muc() -> None:
    assert "muc" in names(["mam"]) and "muc" in names(["blocking"])


def feature_package(root: Path, name: str, order: list[str],
                    modules: dict[str, tuple[str, ...]]) -> str:
    """A package of feature modules ``{name: depends}`` under ``root`` (on sys.path)."""
    pkg = root / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text(f"ORDER = {tuple(order)!r}\n")
    for mod, depends in modules.items():
        (pkg / mod).mkdir()
        (pkg / mod / "__init__.py").write_text(
            "from hongyan.server.module import Module\n"
            f"class M(Module):\n    name = {mod!r}\n    depends = {depends!r}\n"
            "MODULE = M\n")
    (pkg / "library").mkdir()  # shared code without MODULE: not a feature
    (pkg / "library" / "__init__.py").write_text("")
    return name


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for key in [k for k in sys.modules if k.startswith("hyfeat_")]:
        del sys.modules[key]


def test_depends_decide_the_order_whatever_order_says(root: Path) -> None:
    pkg = feature_package(root, "hyfeat_order", ["c", "b", "a"],
                          {"a": (), "b": ("a",), "c": ("b",), "d": ()})
    assert names([], pkg) == ["a", "b", "c", "d"]  # d: not in ORDER, after those that are


def test_a_cycle_is_an_error_that_names_it(root: Path) -> None:
    pkg = feature_package(root, "hyfeat_cycle", [], {"a": ("b",), "b": ("c",), "c": ("a",),
                                                     "d": ()})
    with pytest.raises(FeatureError, match=r"cycle: a -> b -> c -> a"):
        load_module_classes((), pkg)


def test_a_missing_dependency_turns_its_dependents_off(root: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    pkg = feature_package(root, "hyfeat_missing", [], {"b": ("a",), "c": ("b",), "d": ()})
    assert names([], pkg) == ["d"]
    assert "module 'b' is off: it needs a (missing)" in caplog.text
    assert "module 'c' is off: it needs b" in caplog.text
