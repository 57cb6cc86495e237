"""`oglog`'s server commands: run the reference stack. (The `oglog` console script is `oglogstream.cli`: the
client commands send/tail/query/stats/doctor/bench live there and hand these commands to `main` below.)

    oglog stack up [--port 8080] [--host 127.0.0.1] [--data-dir ./oglog-data] [--nats-url URL]
                   [--clickhouse-url URL] [--retention-days N] [--shutdown-timeout 30s] [--log-level info]
                   [--ingest-workers N (default: the cores available)]
    oglog serve ingest|process|query [...]      one or more roles, configured by the seed's env vars
    oglog demo [--port 8080] [--data-dir ./oglog-data]   the stack plus an app logging through the SDK
    oglog dead-letters list|replay|discard [--url URL] ...   what could not be stored (cli_deadletters.py)
    oglog keys create|list|revoke --data-dir DIR ...    API keys (cli_keys.py; docs/security.md)

Exit status: 0 after a clean shutdown, 2 for bad configuration (one line naming the flag or variable),
1 when the stack could not start (port in use, data dir locked, storage unusable) or stopped because the
bundled nats-server kept dying.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from ..auth import settings as auth_settings
from ..auth import startup as auth
from ..auth.redact import redact
from ..config import (
    DEFAULT_RETENTION_DAYS,
    DEFAULT_SHUTDOWN_TIMEOUT,
    ENV_NAMES,
    ROLES,
    SERVE_ENV_VARS,
    StackConfig,
    parse_duration,
)
from . import cli_deadletters, cli_keys
from .supervisor import DEFAULT_DATA_DIR, DEFAULT_HOST, DEFAULT_PORT, StackError, StackOptions
from .workers import MAX_DEFAULT_WORKERS, default_ingest_workers

__all__ = ["EXIT_CONFIG", "EXIT_START", "main"]

EXIT_CONFIG = 2
EXIT_START = 1

#: StackConfig field -> the environment variable `oglog serve` read it from (for error messages).
_ENV_NAMES = {"roles": "roles", **ENV_NAMES}
#: StackConfig field -> the `oglog stack up` flag that sets it.
_FLAG_NAMES = {
    "host": "--host",
    "http_port": "--port",
    "nats_url": "--nats-url",
    "clickhouse_dsn": "--clickhouse-url",
    "shutdown_timeout": "--shutdown-timeout",
    "retention_days": "--retention-days",
    "log_level": "--log-level",
    "ingest_workers": "--ingest-workers",
    "insecure": "--insecure / OGLOG_INSECURE",
    "api_keys": "OGLOG_API_KEYS",
}
_NATS_SCHEMES = ("nats", "tls", "ws", "wss")


class ConfigError(ValueError):
    """Bad configuration: printed as one line, exit status 2."""


def _rename(exc: ValueError, names: Mapping[str, str]) -> ConfigError:
    # StackConfig names its fields ("http_port: ..."); the user set a variable or a flag.
    message = str(exc)
    field, sep, rest = message.partition(":")
    if sep and field in names:
        message = f"{names[field]}:{rest}"
    elif sep and field == "CLICKHOUSE_DSN" and "clickhouse_dsn" in names:
        # normalize_clickhouse_dsn names the variable itself; for `stack up` it is the flag.
        message = f"{names['clickhouse_dsn']}:{rest}"
    return ConfigError(message)


def check_nats_url(value: str, name: str) -> str:
    """One or more comma-separated nats://, tls://, ws:// or wss:// URLs with a host."""
    for url in value.split(","):
        parts = urlsplit(url.strip())
        if parts.scheme not in _NATS_SCHEMES or not parts.hostname:
            raise ConfigError(f"{name}: expected a URL like nats://host:4222, got {value!r}")
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            raise ConfigError(f"{name}: bad port in {value!r}") from None
    return value


def config_from_env(roles: Sequence[str], environ: Mapping[str, str] | None = None) -> StackConfig:
    """StackConfig for `oglog serve`, with errors that name the environment variable."""
    env = os.environ if environ is None else environ
    if "NATS_URL" in env:
        check_nats_url(env["NATS_URL"], "NATS_URL")
    try:
        return StackConfig.from_env(tuple(dict.fromkeys(roles)), env)
    except ValueError as exc:
        error = _rename(exc, _ENV_NAMES)
        if str(error).startswith("CLICKHOUSE_DSN:") and "CLICKHOUSE_DSN" not in env:
            error = ConfigError("CLICKHOUSE_URL:" + str(error).partition(":")[2])
        raise error from None


#: The access-control variables `oglog stack up` reads too (flags add to them; table in docs/security.md).
_STACK_ENV_FIELDS = ("require_auth", "insecure", "keys_file", "api_keys", "allowed_hosts", "allowed_origins")


def _stack_env(environ: Mapping[str, str]) -> dict[str, object]:
    names = {auth_settings.ENV_NAMES[f] for f in _STACK_ENV_FIELDS}
    try:
        return auth_settings.from_env({k: v for k, v in environ.items() if k in names}, int)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def check_data_dir(path: Path) -> Path:
    """`path` itself, if it is a directory or can become one; ConfigError when it or a parent is a file."""
    for candidate in (path, *path.absolute().parents):
        if candidate.exists():
            if not candidate.is_dir():
                raise ConfigError(f"--data-dir: {candidate} is not a directory")
            break
    return path


def _stack_options(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> StackOptions:
    env = _stack_env(os.environ if environ is None else environ)
    check_data_dir(Path(args.data_dir))
    if args.nats_url is not None:
        check_nats_url(args.nats_url, "--nats-url")
    try:
        shutdown = parse_duration(args.shutdown_timeout, name="--shutdown-timeout")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    options = StackOptions(
        host=args.host,
        port=args.port,
        data_dir=Path(args.data_dir),
        nats_url=args.nats_url,
        clickhouse_url=args.clickhouse_url,
        retention_days=args.retention_days,
        shutdown_timeout=shutdown,
        log_level=args.log_level,
        require_auth=args.require_auth or bool(env.get("require_auth")),
        insecure=args.insecure or bool(env.get("insecure")),
        keys_file=env.get("keys_file"),  # type: ignore[arg-type]
        api_keys=env.get("api_keys", ()),  # type: ignore[arg-type]
        allowed_hosts=(*env.get("allowed_hosts", ()), *args.allowed_host),  # type: ignore[misc]
        allowed_origins=(*env.get("allowed_origins", ()), *args.allowed_origin),  # type: ignore[misc]
        ingest_workers=getattr(args, "ingest_workers", 0),  # `oglog demo` runs in one process
    )
    try:
        auth.require_keys(options.config(args.nats_url or "nats://127.0.0.1:4222"))
    except auth.AuthConfigError as exc:
        raise ConfigError(str(exc)) from None
    except ValueError as exc:
        raise _rename(exc, _FLAG_NAMES) from None
    return options


def _add_stack_flags(parser: argparse.ArgumentParser, *, data_dir_help: str) -> None:
    parser.add_argument("--host", default=DEFAULT_HOST, help="interface to listen on (default: %(default)s)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="HTTP port for every route (default: %(default)s)"
    )
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR, metavar="DIR", help=data_dir_help)
    parser.add_argument(
        "--nats-url",
        default=None,
        metavar="URL",
        help="use this NATS server (JetStream enabled) instead of starting nats-server under the data dir",
    )
    parser.add_argument(
        "--clickhouse-url",
        default=None,
        metavar="URL",
        help="use this ClickHouse (http(s)://user:pass@host:8123/db) instead of chDB under the data dir",
    )
    parser.add_argument(
        "--retention-days",
        type=int,
        default=DEFAULT_RETENTION_DAYS,
        metavar="N",
        help="delete logs older than this many days (table TTL; default: %(default)s)",
    )
    parser.add_argument(
        "--shutdown-timeout",
        default=f"{DEFAULT_SHUTDOWN_TIMEOUT:g}s",
        metavar="DURATION",
        help="how long a shutdown may take to drain in-flight requests and batches (default: %(default)s)",
    )
    # Access control (docs/security.md): off on loopback unless asked for, on beyond it unless --insecure.
    parser.add_argument(
        "--require-auth", action="store_true",
        help="require API keys (`oglog keys create`) even on loopback (always on for other addresses)",
    )
    parser.add_argument(
        "--insecure", action="store_true",
        help="serve a non-loopback address WITHOUT authentication (anyone reaching the port reads all logs)",
    )
    parser.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                        help="a Host name this server answers to (repeatable; default: loopback + --host)")
    parser.add_argument("--allowed-origin", action="append", default=[], metavar="ORIGIN",
                        help="a browser origin allowed cross-origin (CORS, /ws/live; repeatable)")
    parser.add_argument(
        "--log-level",
        default="info",
        choices=("debug", "info", "warn", "warning", "error"),
        help="server log verbosity (default: %(default)s)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oglog",
        description="OgLogStream reference stack: ingestion, processing, query and live tail.",
        epilog="Run `oglog COMMAND --help` for a command's options. Docs: docs/stack.md",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    stack = commands.add_parser("stack", help="single-node stack: `oglog stack up`")
    stack_commands = stack.add_subparsers(dest="stack_command", required=True, metavar="ACTION")
    up = stack_commands.add_parser(
        "up",
        help="run nats-server + every role on one port, storage in chDB (one command, one machine)",
        description=(
            "Run the whole stack in one process on one port: nats-server (JetStream store under "
            "<data-dir>/nats) unless --nats-url, chDB storage under <data-dir>/clickhouse unless "
            "--clickhouse-url. Ctrl-C (or SIGTERM) shuts down cleanly without losing accepted logs."
        ),
    )
    _add_stack_flags(up, data_dir_help="NATS and chDB data (default: %(default)s)")
    up.add_argument(
        "--ingest-workers",
        type=int,
        default=default_ingest_workers(),
        metavar="N",
        help="ingestion processes sharing the port; 0 or 1 runs everything in one process "
        f"(default: the cores available, at most {MAX_DEFAULT_WORKERS}: %(default)s)",
    )

    serve = commands.add_parser(
        "serve",
        help="run one or more roles, configured by environment variables",
        description=(
            "Run the given roles in one process, configured by these environment variables (read once, at "
            f"start): {', '.join(SERVE_ENV_VARS)}. Defaults and meanings: docs/stack.md and docs/security.md."
        ),
    )
    serve.add_argument("roles", nargs="+", choices=ROLES, metavar="ROLE", help="ingest, process and/or query")

    demo = commands.add_parser(
        "demo",
        help="the single-node stack plus a demo app logging through the SDK (what `make run` runs)",
        description="Start the stack as `oglog stack up` does and a small app that logs realistic traffic "
        "through oglogstream.OgLogHandler, until Ctrl-C.",
    )
    _add_stack_flags(demo, data_dir_help="NATS and chDB data (default: %(default)s)")
    demo.add_argument(
        "--rate", type=float, default=20.0, help="demo log lines per second (default: %(default)s)"
    )
    cli_deadletters.add_parser(commands)
    cli_keys.add_parser(commands)
    return parser


def _configure_logging(level: str) -> None:
    name = {"warn": "WARNING", "warning": "WARNING"}.get(level.lower(), level.upper())
    logging.basicConfig(
        level=name, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    # httpx logs every request at INFO: with the demo's SDK handlers that is one line per batch.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `oglog` console script; returns the exit status."""
    from . import supervisor

    args = build_parser().parse_args(argv)
    try:
        if args.command == "dead-letters":
            return cli_deadletters.run(args)
        if args.command == "keys":
            return cli_keys.run(args)
        if args.command == "serve":
            config = config_from_env(args.roles)
            try:
                auth.require_keys(config)
            except auth.AuthConfigError as exc:
                raise ConfigError(str(exc)) from None
            _configure_logging(config.log_level)
            supervisor.run_roles(config)
        elif args.command == "stack":
            options = _stack_options(args)
            _configure_logging(options.log_level)
            supervisor.run_stack(options)
        else:
            from . import demo

            options = _stack_options(args)
            if args.rate <= 0:
                raise ConfigError(f"--rate: must be > 0, got {args.rate}")
            try:
                demo.demo_key(options)  # auth on: the demo app's key, checked before anything starts
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
            _configure_logging(options.log_level)
            demo.run_demo(options, rate=args.rate)
    # Errors may quote a DSN or NATS URL given with credentials: redacted like log lines.
    except ConfigError as exc:
        print(f"oglog: error: {redact(str(exc))}", file=sys.stderr)
        return EXIT_CONFIG
    except (StackError, cli_deadletters.ApiError) as exc:
        print(f"oglog: error: {redact(str(exc))}", file=sys.stderr)
        return EXIT_START
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # anything else that stopped the start: one line, traceback in the log
        logging.getLogger("oglogstream.stack.server.cli").debug("start failed", exc_info=True)  # -m: __main__
        print(f"oglog: error: could not start: {type(exc).__name__}: {redact(str(exc))}", file=sys.stderr)
        return EXIT_START
    return 0


if __name__ == "__main__":
    sys.exit(main())
