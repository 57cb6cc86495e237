"""Terminal output: tables, level colours (only on a TTY) and NDJSON for scripts."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TextIO

__all__ = ["HelpFormatter", "colour_enabled", "entry_line", "print_json", "table"]

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
    """One JSON document on one line (NDJSON when called per entry)."""
    out.write(json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "\n")


def _attributes(entry: Mapping[str, Any]) -> str:
    attrs = entry.get("attributes")
    if not isinstance(attrs, Mapping) or not attrs:
        return ""
    return " " + " ".join(f"{k}={v}" for k, v in attrs.items())


def entry_line(entry: Mapping[str, Any], *, colour: bool) -> str:
    """`2026-11-27T21:16:31.538Z INFO  web-api  message k=v` (one line; a traceback follows indented)."""
    level = str(entry.get("level", "?"))
    tag = f"{level.upper():<5}"
    if colour and level in _LEVEL_COLOURS:
        tag = f"{_LEVEL_COLOURS[level]}{tag}{_RESET}"
    message = str(entry.get("message", "")).replace("\n", "\\n")
    line = f"{entry.get('timestamp', '')} {tag} {entry.get('service', '')}  {message}{_attributes(entry)}"
    exception = entry.get("exception")
    if exception:
        line += "\n" + "\n".join("    " + part for part in str(exception).splitlines())
    return line


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], out: TextIO = sys.stdout) -> None:
    """Left-aligned columns; the last column is cut to the terminal width on a TTY."""
    cells = [[str(h) for h in headers], *[[str(c).replace("\n", "\\n") for c in row] for row in rows]]
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
