"""The query-string filters `tail`, `query` and `stats` share, passed to the API unchanged."""

from __future__ import annotations

import argparse
import re
from typing import Any

from ._http import EXIT_CONFIG, CliError

__all__ = ["add_filter_flags", "filter_params"]

ATTR_PREFIX = "attr."
# KEY, then the API's operators (docs/api.md): = != > >= < <= (value `*`: present / absent).
_ATTR_EXPR = re.compile(r"^([^=!<>]+)(!=|>=|<=|=|>|<)(.*)$", re.DOTALL)


def add_filter_flags(parser: argparse.ArgumentParser) -> None:
    """--service, --level, -q, --attr, --param: the API's filters (docs/stack.md)."""
    parser.add_argument("--service", action="append", default=[], metavar="NAME",
                        help="only this service (repeatable)")
    parser.add_argument("--level", action="append", default=[], metavar="LEVEL",
                        help="only these levels: error or error,fatal (repeatable)")
    parser.add_argument("-q", "--search", dest="q", default=None, metavar="WORDS",
                        help="messages containing every one of these whole words (case-insensitive)")
    parser.add_argument("--attr", action="append", default=[], metavar="KEY=VALUE",
                        help="attribute filter, repeatable and ANDed: KEY=VALUE, KEY!=VALUE, KEY>N, KEY>=N, "
                        "KEY<N, KEY<=N, KEY=* (present), KEY!=* (absent); sent as attr.KEY...")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="any other API query parameter, passed through as is (e.g. logger=app.db)")


def _pair(text: str, flag: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise CliError(f"{flag}: expected NAME=VALUE, got {text!r}", EXIT_CONFIG)
    return name, value


def attr_param(text: str) -> tuple[str, str]:
    """`--attr` expression -> the query parameter the API reads: `k=v` -> (attr.k, v), `k!=v` -> (attr.k!, v),
    `k>=5` -> (attr.k>, 5), `k>5` -> (attr.k>5, "") (docs/api.md, query-string forms). CliError (exit 2) for
    an expression without a key or operator."""
    match = _ATTR_EXPR.match(text.removeprefix(ATTR_PREFIX))
    if not match or not match.group(1).strip():
        raise CliError(f"--attr: expected KEY=VALUE (or != > >= < <=), got {text!r}", EXIT_CONFIG)
    key, op, value = match.groups()
    if op in (">", "<"):
        return f"{ATTR_PREFIX}{key}{op}{value}", ""
    return f"{ATTR_PREFIX}{key}{op[:-1]}", value


def filter_params(args: argparse.Namespace) -> list[tuple[str, Any]]:
    """The query parameters as a list of pairs (repeated names kept); CliError (exit 2) for a bad pair."""
    params: list[tuple[str, Any]] = [("service", s) for s in args.service]
    if args.level:
        params.append(("level", ",".join(args.level)))
    if args.q:
        params.append(("q", args.q))
    params.extend(attr_param(text) for text in args.attr)
    params.extend(_pair(text, "--param") for text in args.param)
    return params
