"""Server configuration: one frozen dataclass, read from the seed's environment variables once.

`oglog serve ROLE` builds a `StackConfig` with `StackConfig.from_env()`; `oglog stack up` builds one
from its flags.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

from .auth import settings as auth_settings

__all__ = [
    "CONSUMER_NAME",
    "DEAD_LETTER_SUBJECT",
    "DEAD_STREAM_NAME",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_FLUSH_TIMEOUT",
    "DEFAULT_HTTP_PORT",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_NATS_URL",
    "DEFAULT_RETENTION_DAYS",
    "DEFAULT_SHUTDOWN_TIMEOUT",
    "DEFAULT_STREAM_REPLICAS",
    "LEGACY_DEAD_SUBJECT",
    "LIVE_SUBJECT",
    "ROLES",
    "STREAM_NAME",
    "STREAM_SUBJECT",
    "StackConfig",
    "check_at_least",
    "check_positive",
    "normalize_clickhouse_dsn",
    "parse_duration",
]

ROLES = ("ingest", "process", "query")

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
DEFAULT_HTTP_PORT = 8080
#: ClickHouse wants large inserts about once a second, not the seed's 100 rows every 2 s.
DEFAULT_BATCH_SIZE = 50_000
DEFAULT_FLUSH_TIMEOUT = 1.0
DEFAULT_MAX_RETRIES = 5
DEFAULT_SHUTDOWN_TIMEOUT = 30.0
DEFAULT_RETENTION_DAYS = 30
#: JetStream replicas of the stream: 1 on a single server; 3 on a NATS cluster so an accepted batch survives a
#: server loss. Changing it for an existing stream is applied on the next start (JetStream allows 1..5).
DEFAULT_STREAM_REPLICAS = 1

#: JetStream stream (work-queue retention, file storage) holding accepted batches until they are stored.
STREAM_NAME = "OGLOG_LOGS"
STREAM_SUBJECT = "oglog.logs.batch"
#: JetStream stream (limits retention, file storage, no age limit) keeping what can never be stored, with why,
#: until an operator replays it (`GET /api/dead-letters`, `oglog dead-letters`).
DEAD_STREAM_NAME = "OGLOG_DEAD"
DEAD_LETTER_SUBJECT = "oglog.dead"
#: Where releases before the dead-letter stream put them (a subject of STREAM_NAME); moved on start.
LEGACY_DEAD_SUBJECT = "oglog.logs.dead"
#: Durable pull consumer shared by every processing instance.
CONSUMER_NAME = "oglog-processor"
#: Core NATS subject on which accepted entries are fanned out to live-tail subscribers (no persistence).
LIVE_SUBJECT = "oglog.live"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def check_positive(**settings: float) -> None:
    """Raise ValueError naming the first setting that is not > 0."""
    for name, value in settings.items():
        if value <= 0:
            raise ValueError(f"{name}: must be > 0, got {value}")


def check_at_least(minimum: int, **settings: int) -> None:
    """Raise ValueError naming the first setting below `minimum`."""
    for name, value in settings.items():
        if value < minimum:
            raise ValueError(f"{name}: must be >= {minimum}, got {value}")


def parse_duration(value: str, *, name: str) -> float:
    """Parse a Go-style duration (`2s`, `500ms`, `1m`, or plain seconds) into seconds."""
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"{name}: expected a duration like '2s', '500ms' or '1m', got {value!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def normalize_clickhouse_dsn(dsn: str) -> str:
    """Return a DSN that clickhouse-connect understands.

    `chdb:///path` and `http(s)://` pass through. The seed's `clickhouse://host:9000/db` names the native
    protocol, which clickhouse-connect does not speak: it becomes HTTP on 8123 (or the port given, unless
    it is 9000).
    """
    parts = urlsplit(dsn)
    if parts.scheme in ("chdb", "http", "https"):
        return dsn
    if parts.scheme == "clickhouse":
        netloc = parts.netloc
        if parts.port in (None, 9000):
            host = netloc.rsplit(":", 1)[0] if parts.port else netloc
            netloc = f"{host}:8123"
        return urlunsplit(("http", netloc, parts.path, parts.query, parts.fragment))
    raise ValueError(
        f"CLICKHOUSE_DSN: unsupported scheme {parts.scheme!r} (use chdb://, http(s):// or clickhouse://)"
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class StackConfig:
    """Everything a server role needs. Validated on construction."""

    roles: tuple[str, ...] = ROLES
    host: str = "127.0.0.1"
    http_port: int = DEFAULT_HTTP_PORT
    nats_url: str = DEFAULT_NATS_URL
    clickhouse_dsn: str = "chdb:///tmp/oglog-clickhouse"
    batch_size: int = DEFAULT_BATCH_SIZE
    flush_timeout: float = DEFAULT_FLUSH_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT
    retention_days: int = DEFAULT_RETENTION_DAYS
    stream_replicas: int = DEFAULT_STREAM_REPLICAS
    log_level: str = "info"
    # Access control (docs/security.md; validated and read from OGLOG_* variables by auth/settings.py).
    require_auth: bool = False
    insecure: bool = False
    keys_file: str | None = None
    api_keys: tuple[str, ...] = dataclasses.field(default=(), repr=False)  # "scopes:KEY": never printed
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    trusted_proxies: tuple[str, ...] = ()
    rate_limit_client: float = auth_settings.DEFAULT_CLIENT_RATE
    rate_burst_client: int = auth_settings.DEFAULT_CLIENT_BURST
    rate_limit_key: float = auth_settings.DEFAULT_KEY_RATE
    rate_burst_key: int = auth_settings.DEFAULT_KEY_BURST
    live_sockets_per_key: int = auth_settings.DEFAULT_LIVE_SOCKETS_PER_KEY

    @property
    def auth_enabled(self) -> bool:
        """Requests need an API key: `require_auth`, or a non-loopback `host`, unless `insecure`."""
        return auth_settings.auth_enabled(self)

    def __post_init__(self) -> None:
        unknown = set(self.roles) - set(ROLES)
        if unknown or not self.roles:
            raise ValueError(f"roles: expected a non-empty subset of {ROLES}, got {self.roles}")
        if not 0 <= self.http_port <= 65535:
            raise ValueError(f"http_port: must be 0..65535, got {self.http_port}")
        check_at_least(1, batch_size=self.batch_size, retention_days=self.retention_days)
        check_at_least(0, max_retries=self.max_retries)
        check_positive(flush_timeout=self.flush_timeout, shutdown_timeout=self.shutdown_timeout)
        if not 1 <= self.stream_replicas <= 5:
            raise ValueError(f"stream_replicas: JetStream allows 1..5 replicas, got {self.stream_replicas}")
        if self.log_level.lower() not in ("debug", "info", "warn", "warning", "error"):
            raise ValueError(f"log_level: expected debug|info|warn|error, got {self.log_level!r}")
        object.__setattr__(self, "clickhouse_dsn", normalize_clickhouse_dsn(self.clickhouse_dsn))
        auth_settings.validate(self)

    @classmethod
    def from_env(cls, roles: tuple[str, ...], environ: Mapping[str, str] | None = None) -> StackConfig:
        """Read the seed's variables: NATS_URL, HTTP_PORT, CLICKHOUSE_DSN (or CLICKHOUSE_URL), BATCH_SIZE,
        FLUSH_TIMEOUT, MAX_RETRIES, SHUTDOWN_TIMEOUT, LOG_LEVEL, plus RETENTION_DAYS, NATS_STREAM_REPLICAS and
        HTTP_HOST, and the access-control OGLOG_* variables (auth/settings.py ENV_NAMES)."""
        env = os.environ if environ is None else environ
        kwargs: dict[str, object] = {"roles": roles}

        def integer(var: str) -> int:
            try:
                return int(env[var])
            except ValueError:
                raise ValueError(f"{var}: expected an integer, got {env[var]!r}") from None

        if "NATS_URL" in env:
            kwargs["nats_url"] = env["NATS_URL"]
        if "HTTP_HOST" in env:
            kwargs["host"] = env["HTTP_HOST"]
        if "HTTP_PORT" in env:
            kwargs["http_port"] = integer("HTTP_PORT")
        dsn = env.get("CLICKHOUSE_DSN") or env.get("CLICKHOUSE_URL")
        if dsn:
            kwargs["clickhouse_dsn"] = dsn
        if "BATCH_SIZE" in env:
            kwargs["batch_size"] = integer("BATCH_SIZE")
        if "MAX_RETRIES" in env:
            kwargs["max_retries"] = integer("MAX_RETRIES")
        if "RETENTION_DAYS" in env:
            kwargs["retention_days"] = integer("RETENTION_DAYS")
        if "NATS_STREAM_REPLICAS" in env:
            kwargs["stream_replicas"] = integer("NATS_STREAM_REPLICAS")
        if "FLUSH_TIMEOUT" in env:
            kwargs["flush_timeout"] = parse_duration(env["FLUSH_TIMEOUT"], name="FLUSH_TIMEOUT")
        if "SHUTDOWN_TIMEOUT" in env:
            kwargs["shutdown_timeout"] = parse_duration(env["SHUTDOWN_TIMEOUT"], name="SHUTDOWN_TIMEOUT")
        if "LOG_LEVEL" in env:
            kwargs["log_level"] = env["LOG_LEVEL"]
        kwargs.update(auth_settings.from_env(env, integer))  # OGLOG_REQUIRE_AUTH, OGLOG_API_KEYS, ...
        return cls(**kwargs)  # type: ignore[arg-type]
