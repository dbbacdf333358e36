"""Load and check a TOML config file; every mistake names the key, the file and the line."""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from hongyan.config.schema import Config, ModulesSection, Section


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class ConfigError(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


_HEADER = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")
_ARRAY = re.compile(r"^\s*\[\[\s*([^\[\]]+?)\s*\]\]\s*(#.*)?$")
_KEY = re.compile(r"^\s*((?:\"[^\"]*\"|'[^']*'|[A-Za-z0-9_-]+)(?:\s*\.\s*(?:\"[^\"]*\"|'[^']*'|"
                  r"[A-Za-z0-9_-]+))*)\s*=")
_TOML_LINE = re.compile(r"line (\d+)")


def _split_key(text: str) -> list[str]:
    parts = re.findall(r"\"[^\"]*\"|'[^']*'|[A-Za-z0-9_-]+", text)
    return [p[1:-1] if p[0] in "\"'" else p for p in parts]


def locate(text: str, key: list[str]) -> int | None:
    """The 1-based line where dotted ``key`` is set in TOML ``text`` (best effort): the key's own
    line, else the line of the nearest enclosing table or key that holds it."""
    best: tuple[int, int] | None = None  # (matched depth, line)
    table: list[str] = []
    arrays: dict[str, int] = {}  # [[name]] headers seen: the n-th is key part "name", "n"
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0] if "\"" not in raw and "'" not in raw else raw
        m = _ARRAY.match(line)
        if m:
            name = m.group(1)
            arrays[name] = arrays.get(name, -1) + 1
            table = [*_split_key(name), str(arrays[name])]
            depth = _prefix(table, key)
            if depth == len(table) and (best is None or depth > best[0]):
                best = (depth, no)
            continue
        m = _HEADER.match(line)
        if m and not line.strip().startswith("[["):
            table = _split_key(m.group(1))
            depth = _prefix(table, key)
            if depth == len(table) and (best is None or depth > best[0]):
                best = (depth, no)
            continue
        m = _KEY.match(line)
        if not m:
            continue
        full = table + _split_key(m.group(1))
        depth = _prefix(full, key)
        if depth == len(full) and (best is None or depth > best[0]):
            best = (depth, no)
            if depth >= len(key):
                return no
        elif depth == len(table) + 1 and depth < len(full) and (best is None or depth > best[0]):
            best = (depth, no)
    return None if best is None else best[1]


def _prefix(a: list[str], b: list[str]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def feature_options(package: str) -> dict[str, type[Section]]:
    """The options of each feature folder in ``package`` that declares some (its
    ``options.py`` exposes ``OPTIONS``), by section name: the folder's name. Found by name,
    like the features themselves: a folder that is not there has no section. Only the
    ``options.py`` files run, not the features (a feature whose dependency was deleted still
    has its section read, and the check imports no server code)."""
    pkg = importlib.import_module(package)
    found: dict[str, type[Section]] = {}
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        path = Path(getattr(info.module_finder, "path", "")) / info.name / "options.py"
        if not info.ispkg or not path.is_file():
            continue
        name = f"{package}.{info.name}.options"
        mod = sys.modules.get(name)
        if mod is None:
            spec = importlib.util.spec_from_file_location(name, path)
            assert spec is not None and spec.loader is not None
            mod = importlib.util.module_from_spec(spec)
            sys.modules[name] = mod  # (the feature's own import of it finds this one)
            try:
                spec.loader.exec_module(mod)
            except BaseException:
                del sys.modules[name]
                raise
        cls = getattr(mod, "OPTIONS", None)
        if not (isinstance(cls, type) and issubclass(cls, Section)) or \
                cls.section != info.name:
            raise TypeError(f"{name}.OPTIONS must be a Section whose section is {info.name!r}")
        found[info.name] = cls
    return found


def _problems(exc: ValidationError, name: str, text: str, prefix: tuple[str, ...] = ()
              ) -> list[Problem]:
    out = []
    for err in exc.errors():
        # (a list's index finds the line, of the n-th [[table]]; the key is named without it)
        loc = [*prefix, *(str(p) for p in err["loc"])]
        key = ".".join(p for p, raw in zip(loc, [*prefix, *err["loc"]], strict=True)
                       if not isinstance(raw, int))
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        msg = msg.removeprefix("Value error, ")
        out.append(Problem(name, locate(text, loc), key, msg))
    return out


def _validate(data: dict[str, Any], name: str, text: str) -> Config:
    """The server's own sections, then each feature's; every mistake is reported at once."""
    own = {k: v for k, v in data.items() if k in Config.model_fields}
    problems: list[Problem] = []
    try:
        config = Config.model_validate(own)
    except ValidationError as exc:
        problems += _problems(exc, name, text)
        config = None
    modules = config.modules if config is not None else ModulesSection()
    try:
        known = feature_options(modules.package)
    except (ImportError, TypeError) as exc:
        problems.append(Problem(name, locate(text, ["modules", "package"]), "modules.package",
                                f"cannot read the feature modules' options: {exc}"))
        known = {}
    features: dict[str, Section] = {}
    for key, value in data.items():
        if key in own:
            continue
        cls = known.get(key)
        if cls is None:
            if key not in modules.disabled:  # (a disabled feature may be absent)
                problems.append(Problem(name, locate(text, [key]), key,
                                        f"unknown key: no feature module in {modules.package} "
                                        "reads this section"))
            continue
        try:
            features[key] = cls.model_validate(value)
        except ValidationError as exc:
            problems += _problems(exc, name, text, (key,))
    if problems or config is None:
        raise ConfigError(problems)
    for key, cls in known.items():
        features.setdefault(key, cls())
    domain = config.server.domain
    served: dict[str, str] = {}  # domain -> the key that serves it
    # (the sections the file sets come last: a clash is blamed on a key the user wrote)
    for key in sorted(features, key=lambda k: k in data):
        if key in modules.disabled:
            continue
        for field, host in features[key].services(domain).items():
            where = f"{key}.{field}"
            if host == domain:
                problems.append(Problem(name, locate(text, [key, field]), where,
                                        "must be a domain of its own, not server.domain"))
            elif host in served:
                problems.append(Problem(name, locate(text, [key, field]), where,
                                        f"{host} is {served[host]} already"))
            served[host] = where
    for i, component in enumerate(config.components):
        host, line = component.name, locate(text, ["components", str(i), "name"])
        if host == domain:
            problems.append(Problem(name, line, "components.name",
                                    "must be a domain of its own, not server.domain"))
        elif served.get(host) == "components.name":
            problems.append(Problem(name, line, "components.name",
                                    f"{host} is configured twice"))
        elif host in served:
            problems.append(Problem(name, line, "components.name",
                                    f"{host} is {served[host]} already"))
        served[host] = "components.name"
    if problems:
        raise ConfigError(problems)
    return config.with_features(features)


def load_config(path: str | os.PathLike[str] | None) -> Config:
    if path is None:
        return _validate({}, "(defaults)", "")
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([Problem(name, None, "", "no such file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(name, None, "", f"cannot read it: {exc}")]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = _TOML_LINE.search(str(exc))
        raise ConfigError([Problem(name, int(m.group(1)) if m else None, "",
                                   f"TOML syntax error: {exc}")]) from None
    return _validate(data, name, text)


def check_config(path: str | os.PathLike[str]) -> list[Problem]:
    try:
        load_config(path)
    except ConfigError as exc:
        return exc.problems
    return []
