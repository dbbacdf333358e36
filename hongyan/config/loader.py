"""Load and check a TOML config file; every mistake names the key, the file and the line."""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from hongyan.config.schema import Config


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
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0] if "\"" not in raw and "'" not in raw else raw
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


def load_config(path: str | os.PathLike[str] | None) -> Config:
    if path is None:
        return Config()
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
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = [str(p) for p in err["loc"] if not isinstance(p, int)]
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            msg = msg.removeprefix("Value error, ")
            problems.append(Problem(name, locate(text, loc), ".".join(loc), msg))
        raise ConfigError(problems) from None


def check_config(path: str | os.PathLike[str]) -> list[Problem]:
    try:
        load_config(path)
    except ConfigError as exc:
        return exc.problems
    return []
