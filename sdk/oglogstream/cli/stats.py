"""`oglog stats`: `/api/stats` (totals by level and by service) as a table, or as JSON."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, TextIO

from . import _shapes
from ._filters import add_filter_flags, filter_params
from ._http import EXIT_OK, Target, add_target_flags, request_json
from ._output import print_json, table
from .query import add_deadline_flag, check_timeout, time_params

__all__ = ["add_parser", "run"]


def add_parser(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "stats", parents=parents, help="counts by level and by service",
        description="Totals by level and by service (GET /api/stats), "
        "with the same filters as `oglog query`.",
    )
    add_target_flags(parser)
    add_filter_flags(parser)
    parser.add_argument("--since", default=None, metavar="DURATION", help="only the last 15m / 2h / 7d")
    parser.add_argument("--from", dest="start", default=None, metavar="TIME", help="RFC 3339 start")
    parser.add_argument("--to", dest="end", default=None, metavar="TIME", help="RFC 3339 end")
    parser.add_argument("--json", action="store_true", help="the API's JSON object on one line")
    add_deadline_flag(parser)


def run(args: argparse.Namespace, *, out: TextIO = sys.stdout) -> int:
    check_timeout(args)
    target = Target.from_args(args)
    params = filter_params(args) + time_params(args)
    with target.client() as client:
        _, stats = request_json(client, "GET", "/api/stats", params=params, shape=_shapes.stats,
                                deadline=time.monotonic() + target.deadline)
    if args.json:
        print_json(stats, out)
        return EXIT_OK
    total = stats.get("total_logs", 0)
    out.write(f"total  {total}\n\n")
    levels = stats.get("logs_by_level") or {}
    table(["level", "entries"], [(level, count) for level, count in levels.items()], out)
    services = stats.get("logs_by_service") or {}
    out.write("\n")
    table(["service", "entries"], [(service, count) for service, count in services.items()], out)
    return EXIT_OK
