"""IRC lines (RFC 1459 §2.3, RFC 2812 §2.3) with IRCv3 message tags.

A line is ``[@tags ][:prefix ]COMMAND params... [:trailing]`` ended by CRLF (a bare LF is
accepted too). The part after the tags is at most 512 bytes with its CRLF; the tags a
client sends are at most 4094 bytes (IRCv3 message-tags), what the server sends at most 8191.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: the bytes of a line after its tags, CRLF included (RFC 1459 §2.3)
MAX_LINE = 512
#: the bytes of a client's tags, the ``@`` and the space included (IRCv3 message-tags)
MAX_CLIENT_TAGS = 4096
#: a line from a client, tags and all
MAX_INPUT = MAX_LINE + MAX_CLIENT_TAGS

#: commands whose last parameter is text: always written as a trailing one, as servers do
_TEXT_LAST = frozenset({"PRIVMSG", "NOTICE", "TOPIC", "KICK", "PART", "QUIT", "ERROR", "AWAY",
                        "FAIL"})
_ESCAPES = {";": "\\:", " ": "\\s", "\\": "\\\\", "\r": "\\r", "\n": "\\n"}
_UNESCAPES = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}


class LineError(ValueError):
    """A line that cannot be parsed (empty, or without a command)."""


@dataclass
class Message:
    command: str
    params: list[str] = field(default_factory=list)
    prefix: str = ""
    tags: dict[str, str] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        """The line with its CRLF; the part after the tags is cut at 510 bytes (on a UTF-8
        boundary) and no parameter can smuggle a line break."""
        head = f":{self.prefix} {self.command}" if self.prefix else self.command
        params = [p.replace("\r", " ").replace("\n", " ").replace("\0", "") for p in self.params]
        parts = [head]
        text_last = len(self.params) > 1 and (self.command in _TEXT_LAST
                                             or self.command.isdigit())
        for i, p in enumerate(params):
            last = i == len(params) - 1
            if last and (text_last or not p or " " in p or p.startswith(":")):
                parts.append(":" + p)
            else:
                parts.append(p)
        body = " ".join(parts).encode("utf-8")
        if len(body) > MAX_LINE - 2:
            body = body[:MAX_LINE - 2].decode("utf-8", "ignore").encode("utf-8")
        if self.tags:
            tags = ";".join(k if v == "" else f"{k}={escape_tag(v)}"
                            for k, v in self.tags.items())
            return b"@" + tags.encode("utf-8") + b" " + body + b"\r\n"
        return body + b"\r\n"


def escape_tag(value: str) -> str:
    return "".join(_ESCAPES.get(c, c) for c in value)


def unescape_tag(value: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(value):
        c = value[i]
        if c == "\\":
            i += 1
            if i < len(value):
                out.append(_UNESCAPES.get(value[i], value[i]))
        else:
            out.append(c)
        i += 1
    return "".join(out)


def parse_line(line: bytes) -> Message:
    """One line without its line ending. Invalid UTF-8 is replaced, not refused (IRC has no
    charset; modern clients send UTF-8)."""
    text = line.decode("utf-8", "replace").replace("\0", "")
    tags: dict[str, str] = {}
    if text.startswith("@"):
        raw, _, text = text[1:].partition(" ")
        for item in raw.split(";"):
            if not item:
                continue
            key, _, value = item.partition("=")
            tags[key] = unescape_tag(value)
    text = text.lstrip(" ")
    prefix = ""
    if text.startswith(":"):
        prefix, _, text = text[1:].partition(" ")
        text = text.lstrip(" ")
    trailing: str | None = None
    if " :" in text:
        text, trailing = text.split(" :", 1)
    elif text.startswith(":"):
        trailing, text = text[1:], ""
    words = [w for w in text.split(" ") if w]
    if not words:
        raise LineError("no command")
    command, params = words[0].upper(), words[1:]
    if trailing is not None:
        params.append(trailing)
    return Message(command, params, prefix, tags)


__all__ = ["MAX_CLIENT_TAGS", "MAX_INPUT", "MAX_LINE", "LineError", "Message", "escape_tag",
           "parse_line", "unescape_tag"]
