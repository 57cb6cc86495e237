"""What the operator reads when a stack starts: the banner of URLs (`print_urls`) and the one line for a
port that cannot be bound (`listen_error`)."""

from __future__ import annotations

import errno
from typing import TextIO

from ..auth import startup as auth
from ..auth.redact import redact
from ..config import StackConfig

__all__ = ["display_host", "listen_error", "print_urls"]


def display_host(host: str) -> str:
    """The host to put in a URL for `host` as bound: a wildcard bind as 127.0.0.1, IPv6 in brackets."""
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else (f"[{host}]" if ":" in host else host)


def print_urls(config: StackConfig, out: TextIO, *, extra: str = "") -> None:
    """Tell the operator where everything is."""
    base = f"http://{display_host(config.host)}:{config.http_port}"
    lines = [f"OgLogStream {'+'.join(config.roles)} listening on {base}"]
    if "ingest" in config.roles:
        lines.append(f"  ingest     POST {base}/log   POST {base}/logs   POST {base}/v1/logs (OTLP)")
    if "query" in config.roles:
        lines.append(f"  dashboard  {base}/")
        lines.append(f"  query      {base}/api/logs   {base}/api/stats   {base}/api/histogram")
        lines.append(f"  live tail  ws://{base.removeprefix('http://')}/ws/live")
    lines.append(f"  health     {base}/health   metrics {base}/metrics")
    lines.append(f"  auth       {auth.describe(config)}")
    # Credentials in a DSN or NATS URL stay out of the banner (terminals, CI logs, journald keep it).
    # An ingest-only process never opens storage: announcing one would send people looking in the wrong place.
    uses_storage = "process" in config.roles or "query" in config.roles
    storage = f"   storage {redact(config.clickhouse_dsn)}" if uses_storage else ""
    lines.append(f"  nats       {redact(config.nats_url)}{storage}")
    if extra:
        lines.append(extra)
    lines.append("Press Ctrl-C to stop.")
    print("\n".join(lines), file=out, flush=True)


def listen_error(config: StackConfig, exc: OSError) -> str:
    """One line for a port that cannot be bound; a port in use names the way to pick another."""
    line = f"cannot listen on {config.host}:{config.http_port}: {exc.strerror or exc}"
    if exc.errno == errno.EADDRINUSE:
        line += (
            " (another stack running? pick another port: --port N, `make run PORT=N` for the demo,"
            " or HTTP_PORT for `oglog serve`)"
        )
    return line
