"""Handler settings: defaults as named constants, validated once at construction with clear ValueErrors."""

from __future__ import annotations

import dataclasses
import os
import unicodedata
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from . import _wire
from ._settings_check import (
    check_ca_path,
    check_int,
    check_seconds,
    require_utf8,
    required_text,
    spool_directory,
    url_parts,
)

if TYPE_CHECKING:  # only in annotations (postponed): no runtime dependency on typing_extensions
    from typing_extensions import Unpack

__all__ = [
    "ASYNC_OPTION_NAMES",
    "DEFAULT_BACKOFF_INITIAL",
    "DEFAULT_BACKOFF_MAX",
    "DEFAULT_BATCH_BYTES",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_DRAIN_ON_SIGTERM",
    "DEFAULT_FLUSH_INTERVAL",
    "DEFAULT_MAX_BUFFER_BYTES",
    "DEFAULT_MAX_BUFFER_RECORDS",
    "DEFAULT_OVERFLOW",
    "DEFAULT_READ_TIMEOUT",
    "DEFAULT_SHUTDOWN_TIMEOUT",
    "DEFAULT_SPOOL_MAX_AGE",
    "DEFAULT_SPOOL_MAX_BYTES",
    "ENV_API_KEY",
    "ENV_FALLBACKS",
    "ENV_SERVICE",
    "ENV_URL",
    "MAX_RETRY_AFTER",
    "MIN_BUFFER_BYTES",
    "OPTION_DEFAULTS",
    "OPTION_NAMES",
    "OVERFLOW_POLICIES",
    "AsyncOptions",
    "Options",
    "OverflowPolicy",
    "Settings",
    "url_parts",
]

ENV_URL = "OGLOG_URL"
ENV_SERVICE = "OGLOG_SERVICE"
ENV_API_KEY = "OGLOG_API_KEY"

#: Records per request, at most (a batch is also cut by DEFAULT_BATCH_BYTES and flush_interval, so in a steady
#: flow requests are smaller). It only matters under a backlog (a burst, a recovery): there, every request is
#: a point where the worker gives up the GIL and waits to get it back from the application's threads (up to
#: the 5 ms switch interval), so fewer, larger requests let the worker keep pace. 4,000 typical records are
#: about 1 MiB (the byte bound cuts first for larger ones), well below the server's MAX_BATCH_ENTRIES.
#: Measured in docs/benchmarks.md "## SDK" (1,000 before: a 20,000-29,000 record backlog after a burst).
DEFAULT_BATCH_SIZE = 4000
#: Uncompressed NDJSON bytes per request; gzip keeps the body well under MAX_BATCH_BODY_BYTES.
DEFAULT_BATCH_BYTES = 1024 * 1024
#: A record waits at most about this long (seconds) before it is sent.
DEFAULT_FLUSH_INTERVAL = 1.0
#: The memory budget (bytes) of records waiting to be sent: the primary bound. 128 MiB holds a tight-loop
#: burst of 50,000 distinct 1,000-character messages (charged ~1.8 KB each while captured) with nothing
#: dropped, the real memory such a burst used when 64 MiB under-charged it (docs/sdk.md "Why these
#: defaults"); ~200,000 typical records, or a 60 s outage at 1,000 records/s with room to spare. The
#: caller-side intake is bounded from the same budget (see `_intake_charge.intake_limit`).
DEFAULT_MAX_BUFFER_BYTES = 128 * 1024 * 1024
#: A secondary guard on the count (tiny records): never the limit a typical record reaches first.
DEFAULT_MAX_BUFFER_RECORDS = 1_000_000
#: Keep the newest records when the buffer is full: during an outage the recent past matters most.
DEFAULT_OVERFLOW: OverflowPolicy = "drop_oldest"
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 10.0
#: First retry waits up to this long (full jitter: uniform in [0, initial * 2**attempt])...
DEFAULT_BACKOFF_INITIAL = 0.5
#: ...and never more than this, so delivery resumes soon after the server returns.
DEFAULT_BACKOFF_MAX = 30.0
#: Default deadline of flush()/close() and this handler's share of the atexit drain budget.
DEFAULT_SHUTDOWN_TIMEOUT = 5.0
#: The disk spool (opt-in, `spool_dir=`) keeps at most this many bytes of unsent batches (oldest dropped)...
DEFAULT_SPOOL_MAX_BYTES = 256 * 1024 * 1024
#: ...and drops a batch older than this (seconds) instead of sending it: a day-old replay is rarely wanted.
DEFAULT_SPOOL_MAX_AGE = 24 * 3600.0
#: Install a drain-then-die SIGTERM handler when a handler is built on the main thread and SIGTERM still has
#: its default disposition (never replacing an application's own handler; see `_lifecycle`): without it, a
#: process ended by SIGTERM (docker stop, systemd, Kubernetes) loses everything logged in its last second.
DEFAULT_DRAIN_ON_SIGTERM = True
#: A server's Retry-After is honoured up to this many seconds (protects against absurd values).
MAX_RETRY_AFTER = 300.0

OverflowPolicy = Literal["drop_oldest", "drop_newest"]
OVERFLOW_POLICIES: tuple[str, ...] = ("drop_oldest", "drop_newest")

#: The positional settings' environment fallbacks, read once in `Settings.build` (so is OGLOG_API_KEY).
ENV_FALLBACKS: Mapping[str, str] = {"url": ENV_URL, "service": ENV_SERVICE, "api_key": ENV_API_KEY}


class AsyncOptions(TypedDict, total=False):
    """The keyword settings of every SDK driver: the one declaration (docs/sdk.md "Settings" lists them).

    `OgLogHandler`, `OgLogProcessor` and `AsyncOgLogClient` take them as `**options: Unpack[...]`, so IDEs
    and mypy see each keyword; `Settings.build` fills the defaults from `OPTION_DEFAULTS` and validates.
    """

    api_key: str | None
    batch_size: int
    batch_bytes: int
    flush_interval: float
    max_buffer_records: int
    max_buffer_bytes: int
    overflow: OverflowPolicy
    connect_timeout: float
    read_timeout: float
    backoff_initial: float
    backoff_max: float
    shutdown_timeout: float
    verify: bool | str
    drain_on_sigterm: bool


class Options(AsyncOptions, total=False):
    """`AsyncOptions` plus what only the thread-worker drivers (handler, structlog processor) support."""

    spool_dir: str | os.PathLike[str] | None
    spool_max_bytes: int
    spool_max_age: float


#: Every option's default: the named constants above (`api_key` None means "OGLOG_API_KEY or none").
OPTION_DEFAULTS: Options = {
    "api_key": None,
    "batch_size": DEFAULT_BATCH_SIZE,
    "batch_bytes": DEFAULT_BATCH_BYTES,
    "flush_interval": DEFAULT_FLUSH_INTERVAL,
    "max_buffer_records": DEFAULT_MAX_BUFFER_RECORDS,
    "max_buffer_bytes": DEFAULT_MAX_BUFFER_BYTES,
    "overflow": DEFAULT_OVERFLOW,
    "connect_timeout": DEFAULT_CONNECT_TIMEOUT,
    "read_timeout": DEFAULT_READ_TIMEOUT,
    "backoff_initial": DEFAULT_BACKOFF_INITIAL,
    "backoff_max": DEFAULT_BACKOFF_MAX,
    "shutdown_timeout": DEFAULT_SHUTDOWN_TIMEOUT,
    "verify": True,
    "spool_dir": None,
    "spool_max_bytes": DEFAULT_SPOOL_MAX_BYTES,
    "spool_max_age": DEFAULT_SPOOL_MAX_AGE,
    "drain_on_sigterm": DEFAULT_DRAIN_ON_SIGTERM,
}
#: The keyword names each kind of driver accepts (TypedDict keys include the inherited ones).
OPTION_NAMES: frozenset[str] = frozenset(Options.__annotations__)
ASYNC_OPTION_NAMES: frozenset[str] = frozenset(AsyncOptions.__annotations__)


def check_option_names(
    owner: str, options: Mapping[str, object], allowed: frozenset[str], own: tuple[str, ...] = ()
) -> None:
    """Raise TypeError naming every keyword of `options` that `owner` does not take (a typo, or a setting
    of another driver), with the valid names (`own`: the driver's keywords besides the options, such as
    OgLogHandler's `level`): `**options` would otherwise swallow it silently."""
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise TypeError(
            f"{owner} got unknown setting(s) {', '.join(unknown)}; valid: url, service, "
            f"{', '.join(sorted(allowed | set(own)))}"
        )

# Paths that name an ingestion endpoint rather than the base URL the SDK appends /logs to.
_ENDPOINT_SUFFIXES = ("/v1/logs", "/logs", "/log")  # longest first
# Room for the gzip header and worst-case expansion of incompressible data.
_BATCH_BYTES_CEILING = _wire.MAX_BATCH_BODY_BYTES - 64 * 1024
_BATCH_BYTES_FLOOR = 1024
#: The smallest max_buffer_bytes allowed: the largest entry the encoder can build (every limit hit, worst-case
#: JSON escaping) fits in this, so the encoded buffer always has room for one (see `_intake_charge`).
MIN_BUFFER_BYTES = 2 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything a pipeline needs; built by `Settings.build`, never mutated."""

    url: str
    endpoint: str
    service: str
    #: Not in the repr: `handler.settings` is printed in logs and tracebacks.
    api_key: str | None = dataclasses.field(repr=False)
    batch_size: int
    batch_bytes: int
    flush_interval: float
    max_buffer_records: int
    max_buffer_bytes: int
    overflow: OverflowPolicy
    connect_timeout: float
    read_timeout: float
    backoff_initial: float
    backoff_max: float
    shutdown_timeout: float
    verify: bool | str
    spool_dir: str | None = None
    spool_max_bytes: int = DEFAULT_SPOOL_MAX_BYTES
    spool_max_age: float = DEFAULT_SPOOL_MAX_AGE
    drain_on_sigterm: bool = DEFAULT_DRAIN_ON_SIGTERM

    @classmethod
    def build(
        cls,
        url: str | None,
        service: str | None,
        *,
        owner: str = "Settings.build",
        allowed: frozenset[str] = OPTION_NAMES,
        own: tuple[str, ...] = (),
        environ: Mapping[str, str] | None = None,
        **options: Unpack[Options],
    ) -> Settings:
        """Resolve env fallbacks (`ENV_FALLBACKS`, read once, here), fill `OPTION_DEFAULTS`, validate.

        Raises TypeError naming a keyword not in `allowed` (`owner` is the driver named in the message,
        `own` its keywords besides the options, listed as valid too), ValueError naming the first setting
        whose value is out of range or of the wrong type (a `verify` path is loaded here, once).
        """
        check_option_names(owner, options, allowed, own)
        o: dict[str, Any] = {**OPTION_DEFAULTS, **options}
        env = os.environ if environ is None else environ
        fallback = {name: env.get(var) for name, var in ENV_FALLBACKS.items()}
        url = required_text("url", fallback["url"] if url is None else url, ENV_URL)
        service = required_text("service", fallback["service"] if service is None else service, ENV_SERVICE)
        api_key, batch_size, batch_bytes = o["api_key"], o["batch_size"], o["batch_bytes"]
        flush_interval, overflow, verify = o["flush_interval"], o["overflow"], o["verify"]
        max_buffer_records, max_buffer_bytes = o["max_buffer_records"], o["max_buffer_bytes"]
        connect_timeout, read_timeout = o["connect_timeout"], o["read_timeout"]
        backoff_initial, backoff_max = o["backoff_initial"], o["backoff_max"]
        shutdown_timeout, drain_on_sigterm = o["shutdown_timeout"], o["drain_on_sigterm"]
        spool_dir, spool_max_bytes, spool_max_age = o["spool_dir"], o["spool_max_bytes"], o["spool_max_age"]
        if len(service) > _wire.MAX_SERVICE_CHARS:
            raise ValueError(
                f"service must be at most {_wire.MAX_SERVICE_CHARS} characters, got {len(service)}"
            )
        require_utf8("service", service)
        if any(unicodedata.category(c) == "Cc" for c in service):
            raise ValueError(f"service must not contain control characters (line breaks, NUL): {service!r}")
        if api_key is None:
            # Stripped like url and service (a key read from a file ends in a newline); blank means unset.
            api_key = (fallback["api_key"] or "").strip() or None
        elif isinstance(api_key, str):
            api_key = api_key.strip()
        if api_key is not None:
            if not isinstance(api_key, str) or not api_key:
                raise ValueError(f"api_key must be a non-empty string (or unset), got {api_key!r}")
            if not all(" " <= c <= "~" for c in api_key):
                raise ValueError("api_key must be printable ASCII without line breaks (it goes in a header)")
        parts = url_parts(url)
        if parts.query or parts.fragment:
            raise ValueError(f"url must not have a query or fragment (the SDK appends /logs), got {url!r}")
        suffix = next((s for s in _ENDPOINT_SUFFIXES if parts.path.rstrip("/").endswith(s)), None)
        if suffix is not None:
            # Pasting an endpoint (the seed's POST /log, or /logs) would post to .../logs/logs and lose every
            # record as a 404: refuse it here, while the mistake is one line in the application's config.
            base = url.rstrip("/").removesuffix(suffix)
            raise ValueError(
                f"url is the stack's base URL (the SDK appends /logs): use {base!r}, not {url!r}"
            )
        check_int("batch_size", batch_size, 1, _wire.MAX_BATCH_ENTRIES)
        check_int("batch_bytes", batch_bytes, _BATCH_BYTES_FLOOR, _BATCH_BYTES_CEILING)
        check_seconds("flush_interval", flush_interval, 0.001, 3600.0)
        check_int("max_buffer_records", max_buffer_records, 1, 100_000_000)
        check_int("max_buffer_bytes", max_buffer_bytes, MIN_BUFFER_BYTES, 1 << 40)
        if overflow not in OVERFLOW_POLICIES:
            raise ValueError(f"overflow must be one of {', '.join(OVERFLOW_POLICIES)}, got {overflow!r}")
        check_seconds("connect_timeout", connect_timeout, 0.001, 600.0)
        check_seconds("read_timeout", read_timeout, 0.001, 600.0)
        check_seconds("backoff_initial", backoff_initial, 0.0001, 600.0)
        check_seconds("backoff_max", backoff_max, 0.0001, 3600.0)
        if backoff_max < backoff_initial:
            raise ValueError(f"backoff_max ({backoff_max}) must be >= backoff_initial ({backoff_initial})")
        check_seconds("shutdown_timeout", shutdown_timeout, 0.0, 3600.0)
        if not isinstance(verify, (bool, str)):
            raise ValueError(f"verify must be a bool or a CA bundle path, got {type(verify).__name__}")
        if isinstance(verify, str):
            check_ca_path(verify)
        spool = spool_directory(spool_dir)
        # Room for at least two of the largest batches, so dropping the oldest can always make space.
        check_int("spool_max_bytes", spool_max_bytes, 2 * batch_bytes + MIN_BUFFER_BYTES, 1 << 44)
        check_seconds("spool_max_age", spool_max_age, 1.0, 365 * 86400.0)
        if not isinstance(drain_on_sigterm, bool):
            raise ValueError(f"drain_on_sigterm must be a bool, got {type(drain_on_sigterm).__name__}")
        return cls(
            url=url,
            endpoint=url.rstrip("/") + "/logs",
            service=service,
            api_key=api_key,
            batch_size=batch_size,
            batch_bytes=batch_bytes,
            flush_interval=float(flush_interval),
            max_buffer_records=max_buffer_records,
            max_buffer_bytes=max_buffer_bytes,
            overflow=overflow,  # checked against OVERFLOW_POLICIES above
            connect_timeout=float(connect_timeout),
            read_timeout=float(read_timeout),
            backoff_initial=float(backoff_initial),
            backoff_max=float(backoff_max),
            shutdown_timeout=float(shutdown_timeout),
            verify=verify,
            spool_dir=spool,
            spool_max_bytes=spool_max_bytes,
            spool_max_age=float(spool_max_age),
            drain_on_sigterm=drain_on_sigterm,
        )
