"""Finding the feature modules and the order they load in.

The features are the subpackages of one package, named by configuration (``modules.package``,
by default ``hongyan.modules``), that expose ``MODULE``: the server knows them by name, not by
import, and a folder that is not there is simply not a feature. Each loads after the modules
it ``depends`` on and after those it ``uses`` when they are there; among the modules free to
load, the package's ``ORDER`` decides (hook handlers of equal priority run in load order),
then the name. Depending on each other in a cycle is an error that names the cycle. A module
whose dependency is missing, disabled or off is off too, and the log says which and why.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from collections.abc import Sequence

from hongyan.server.module import Module

log = logging.getLogger("hongyan.features")

DEFAULT_PACKAGE = "hongyan.modules"


class FeatureError(Exception):
    """The feature modules cannot be put in an order (a cycle) or one is malformed."""


def load_module_classes(disabled: Sequence[str] = (),
                        package: str = DEFAULT_PACKAGE) -> list[type[Module]]:
    pkg = importlib.import_module(package)
    preferred = {name: i for i, name in enumerate(getattr(pkg, "ORDER", ()))}
    found: dict[str, type[Module]] = {}
    off: dict[str, str] = {}  # name -> why
    folders = sorted(i.name for i in pkgutil.iter_modules(pkg.__path__) if i.ispkg)
    for name in disabled:
        if name not in folders:
            log.warning("modules.disabled names %r, which is not a module here", name)
    for name in folders:
        if name in disabled:
            off[name] = "disabled"
            continue
        try:
            mod = importlib.import_module(f"{package}.{name}")
        except ModuleNotFoundError as exc:
            # it imports another feature that is not there (deleted): off, by name
            if exc.name is None or not exc.name.startswith(package + "."):
                raise
            off[name] = f"it imports {exc.name}, which is missing"
            log.warning("module %r is off: %s", name, off[name])
            continue
        cls = getattr(mod, "MODULE", None)
        if cls is None:
            continue  # a package of shared code, not a feature
        if not (isinstance(cls, type) and issubclass(cls, Module)) or cls.name != name:
            raise FeatureError(f"{package}.{name}.MODULE must be a Module named {name!r}")
        found[name] = cls
    # a module goes with what it needs (and so on, until nothing changes)
    changed = True
    while changed:
        changed = False
        for name, cls in list(found.items()):
            missing = [d for d in cls.depends if d not in found]
            if missing:
                why = ", ".join(f"{d} ({off.get(d, 'missing')})" for d in missing)
                log.warning("module %r is off: it needs %s", name, why)
                off[name] = f"needs {why}"
                del found[name]
                changed = True
    return [found[n] for n in _ordered(found, preferred)]


def _ordered(found: dict[str, type[Module]], preferred: dict[str, int]) -> list[str]:
    after = {n: {d for d in (*c.depends, *c.uses) if d in found} for n, c in found.items()}
    done: list[str] = []
    placed: set[str] = set()
    last = len(preferred)
    while len(done) < len(found):
        ready = [n for n in found if n not in placed and after[n] <= placed]
        if not ready:
            raise FeatureError("modules depend on each other in a cycle: "
                               + " -> ".join(_cycle(after, placed)))
        first = min(ready, key=lambda n: (preferred.get(n, last), n))
        done.append(first)
        placed.add(first)
    return done


def _cycle(after: dict[str, set[str]], placed: set[str]) -> list[str]:
    """One cycle among the modules not placed (each of them waits for another of them)."""
    start = min(n for n in after if n not in placed)
    path = [start]
    while True:
        nxt = min(d for d in after[path[-1]] if d not in placed)
        if nxt in path:
            return [*path[path.index(nxt):], nxt]
        path.append(nxt)
