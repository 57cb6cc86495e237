"""Terminal output: tables, level colours (only on a TTY) and NDJSON for scripts.

Log data is untrusted: human output escapes every control character (C0, DEL, C1), the Unicode line
separators and the bidi overrides/isolates in every field, so an entry cannot move the cursor, set the window
title, clear the screen or forge a line; values are shown in their JSON spelling (docs/cli.md, "Reading the
table"). `--json` output is exact JSON with the same characters as `\\uXXXX` escapes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TextIO

__all__ = ["HelpFormatter", "OutputClosed", "colour_enabled", "entry_line", "print_json", "safe", "table",
           "value_text"]

# C0 controls, DEL, C1 controls, line/paragraph separators, bidi embeddings/overrides and isolates.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
# Characters json.dumps(ensure_ascii=False) leaves raw but a terminal may act on (it escapes C0 itself).
_UNSAFE_IN_JSON = re.compile("[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# A bare (unquoted) attribute key or string value: no space, `=` or quote that would blur `k=v k2=v2`.
_BARE = re.compile(r'^[^\s="\\]+$')


class OutputClosed(Exception):
    """stdout was closed by its reader (`oglog tail | head -1`): the command ends quietly (exit 141).
    Deliberately not an OSError, so no network handler mistakes it for a connection error."""


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return _SHORT_ESCAPES.get(char) or f"\\u{ord(char):04x}"


def safe(text: object) -> str:
    """`text` for a terminal: control, line-separator and bidi characters as JSON-style escapes
    (`\\n`, `\\u001b`, `\\u202e`); everything else unchanged."""
    return _UNSAFE.sub(_escape, str(text))


def value_text(value: object) -> str:
    """An attribute value in its JSON spelling, as filters take it: `true`, `null`, `7`, `99.5`, `{"a":1}`;
    a string bare (`eu`) unless it would read as something else (`"7"`, `"true"`, `""`, `"a b"`, a string
    with `=`, a quote, a backslash or a control character), then JSON-quoted. Always terminal-safe."""
    if isinstance(value, str):
        if _BARE.match(value) and not _UNSAFE.search(value):
            try:
                json.loads(value)
            except ValueError:
                return value
        return safe(json.dumps(value, ensure_ascii=False))
    return safe(json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str))


def _key_text(key: object) -> str:
    text = str(key)
    if _BARE.match(text) and not _UNSAFE.search(text):
        return text
    return safe(json.dumps(text, ensure_ascii=False))


_LEVEL_COLOURS = {
    "debug": "\033[2m",  # dim
    "info": "\033[32m",  # green
    "warn": "\033[33m",  # yellow
    "error": "\033[31m",  # red
    "fatal": "\033[1;31m",  # bold red
}
_RESET = "\033[0m"


def colour_enabled(stream: TextIO) -> bool:
    """Colour only for a terminal, and never when NO_COLOR is set (no-color.org)."""
    return stream.isatty() and not os.environ.get("NO_COLOR")


def print_json(value: Any, out: TextIO = sys.stdout) -> None:
    """One JSON document on one line (NDJSON when called per entry); the characters a terminal could act on
    are `\\uXXXX` escapes (the same JSON value)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    out.write(_UNSAFE_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text) + "\n")


def _attributes(entry: Mapping[str, Any]) -> str:
    attrs = entry.get("attributes")
    if not isinstance(attrs, Mapping) or not attrs:
        return ""
    return " " + " ".join(f"{_key_text(k)}={value_text(v)}" for k, v in attrs.items())


def entry_line(entry: Mapping[str, Any], *, colour: bool) -> str:
    """`2026-11-27T21:16:31.538Z INFO  web-api  message k=v` (one line; a traceback follows indented)."""
    level = str(entry.get("level", "?"))
    tag = f"{safe(level.upper()):<5}"
    if colour and level in _LEVEL_COLOURS:
        tag = f"{_LEVEL_COLOURS[level]}{tag}{_RESET}"
    message = safe(entry.get("message", ""))
    line = (f"{safe(entry.get('timestamp', ''))} {tag} {safe(entry.get('service', ''))}  "
            f"{message}{_attributes(entry)}")
    exception = entry.get("exception")
    if exception:
        # Only "\n" starts a new (indented) line; every other separator stays an escape inside its line.
        parts = str(exception).replace("\r\n", "\n").rstrip("\n").split("\n")
        line += "\n" + "\n".join("    " + safe(part) for part in parts)
    return line


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], out: TextIO = sys.stdout) -> None:
    """Left-aligned columns; the last column is cut to the terminal width on a TTY."""
    cells = [[safe(h) for h in headers], *[[safe(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers) - 1)]
    room = shutil.get_terminal_size().columns if out.isatty() else 0
    for row in cells:
        head = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
        line = f"{head}  {row[-1]}" if head else row[-1]
        if room and len(line) > room:
            line = line[: room - 1] + "…"
        out.write(line.rstrip() + "\n")


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, but an `examples:` epilog keeps its lines (descriptions are still wrapped)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("example"):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)
