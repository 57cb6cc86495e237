"""Server configuration: one frozen dataclass, read from the seed's environment variables once.

`oglog serve ROLE` builds a `StackConfig` with `StackConfig.from_env()`; `oglog stack up` builds one
from its flags.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
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
    "ENV_NAMES",
    "ENV_VARS",
    "LEGACY_DEAD_SUBJECT",
    "LIVE_INTEREST_SUBJECT",
    "LIVE_SUBJECT",
    "ROLES",
    "SERVE_ENV_VARS",
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
#: Core NATS subject on which a live-tail hub with clients announces them (empty messages, see
#: broker.LIVE_INTEREST_INTERVAL): ingestion publishes on LIVE_SUBJECT only while it hears these.
LIVE_INTEREST_SUBJECT = "oglog.live.interest"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$", re.ASCII)
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
        """StackConfig from the variables of ENV_NAMES present in `environ` (default `os.environ`).

        Raises ValueError naming the variable when one cannot be parsed, or the field when a value is out
        of range (`oglog serve` renames it to the variable: server/cli.py).
        """
        env = os.environ if environ is None else environ
        kwargs: dict[str, object] = {"roles": roles}
        for field, (var, parse) in ENV_VARS.items():
            value = env.get(var)
            if not value and var in _ENV_ALIAS_OF:
                value = env.get(_ENV_ALIAS_OF[var]) or value
            if value is None:
                continue
            parsed = parse(value, var)
            if parsed is not None:
                kwargs[field] = parsed
        kwargs.update(auth_settings.from_env(env, lambda var: _integer(env[var], var)))
        return cls(**kwargs)  # type: ignore[arg-type]


def _text(value: str, var: str) -> str:
    return value


def _integer(value: str, var: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{var}: expected an integer, got {value!r}") from None


def _duration(value: str, var: str) -> float:
    return parse_duration(value, name=var)


def _dsn(value: str, var: str) -> str | None:
    return value or None  # empty: the default DSN


#: StackConfig field -> (the seed's environment variable, its parser: (value, variable) -> value, or None for
#: "use the default"). The one table `from_env` reads, `oglog serve` names variables in its errors from, and
#: its --help lists (server/cli.py); access-control variables are auth/settings.py's ENV_NAMES.
ENV_VARS: dict[str, tuple[str, Callable[[str, str], object]]] = {
    "host": ("HTTP_HOST", _text),
    "http_port": ("HTTP_PORT", _integer),
    "nats_url": ("NATS_URL", _text),
    "clickhouse_dsn": ("CLICKHOUSE_DSN", _dsn),
    "batch_size": ("BATCH_SIZE", _integer),
    "flush_timeout": ("FLUSH_TIMEOUT", _duration),
    "max_retries": ("MAX_RETRIES", _integer),
    "shutdown_timeout": ("SHUTDOWN_TIMEOUT", _duration),
    "retention_days": ("RETENTION_DAYS", _integer),
    "stream_replicas": ("NATS_STREAM_REPLICAS", _integer),
    "log_level": ("LOG_LEVEL", _text),
}
#: Variable -> another name read when it is unset or empty (the seed's Go services read CLICKHOUSE_URL).
_ENV_ALIAS_OF = {"CLICKHOUSE_DSN": "CLICKHOUSE_URL"}
#: StackConfig field -> environment variable, for every variable `oglog serve` reads.
ENV_NAMES: dict[str, str] = {field: var for field, (var, _) in ENV_VARS.items()} | auth_settings.ENV_NAMES
#: Every variable `oglog serve` reads, aliases included, sorted (its --help lists them).
SERVE_ENV_VARS: tuple[str, ...] = tuple(sorted({*ENV_NAMES.values(), *_ENV_ALIAS_OF.values()}))
