"""HTTP delivery of one batch: `send(batch) -> SendResult` and `close()`; httpx stays behind this boundary.

Every httpx exception is translated here into a `SendResult`, so the worker only ever sees outcomes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import email.utils
import enum
import gzip
import json
import logging
import time
from typing import Protocol

import httpcore  # noqa: F401  # imported now: httpx imports it lazily, and importing takes logging's lock
import httpx

from . import _wire
from ._buffer import Batch
from ._settings import Settings
from ._version import VERSION

__all__ = [
    "GZIP_LEVEL",
    "HttpTransport",
    "Outcome",
    "SendResult",
    "Transport",
    "parse_retry_after",
    "warm_logging_caches",
]

#: Fast compression: log lines compress well even at level 1, and the worker's CPU is the bottleneck.
GZIP_LEVEL = 1
#: A partial-accept answer larger than this is not parsed (the batch then counts as accepted in full).
_MAX_ANSWER_BYTES = 4 * 1024 * 1024
_RETRY_STATUSES = frozenset({408, 429}) | frozenset(range(500, 600))


_LEVELS = (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL)
_http_loggers: tuple[int, list[logging.Logger]] = (-1, [])


def warm_logging_caches() -> None:
    """Fill the level caches of the httpx/httpcore loggers, so their log calls on the worker never lock.

    `Logger.isEnabledFor` takes logging's module lock only on a cache miss (after any `setLevel()`). Called
    on the worker before each send, and on the thread calling flush()/close(): when that thread is inside
    `dictConfig()` it holds the module lock itself, so filling the caches here is what keeps the worker from
    waiting for a lock held by the very thread that is waiting for the worker.
    """
    global _http_loggers
    try:
        registry = logging.Logger.manager.loggerDict
        if len(registry) != _http_loggers[0]:  # loggers are only ever added: rescan when the count changes
            found = [
                logger
                for name, logger in list(registry.items())
                if isinstance(logger, logging.Logger) and name.startswith(("httpx", "httpcore"))
            ]
            _http_loggers = (len(registry), found)
        for logger in _http_loggers[1]:
            for level in _LEVELS:
                logger.isEnabledFor(level)
    except Exception:  # best effort: a logging setup we do not understand must not break delivery
        pass


class Outcome(enum.Enum):
    OK = "ok"  # 2xx: sent (minus any entries the answer lists as rejected)
    RETRY = "retry"  # connection error, timeout, 408, 429, 5xx: send the same batch again later
    TOO_LARGE = "too_large"  # 413: split and resend
    DROP = "drop"  # any other answer: the server will never take this batch


@dataclasses.dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    status: int | None = None
    #: For OK: (index in batch, error) of entries the server rejected.
    rejected: tuple[tuple[int, str], ...] = ()
    #: Seconds the server asked us to wait (Retry-After), if it did.
    retry_after: float | None = None
    error: str | None = None


class Transport(Protocol):
    def send(self, batch: Batch, *, timeout: float | None = None) -> SendResult: ...

    def close(self) -> None: ...


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date); None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class HttpTransport:
    """One keep-alive connection to `{url}/logs`; gzip NDJSON bodies; per-batch idempotency header."""

    def __init__(self, settings: Settings) -> None:
        self._endpoint = settings.endpoint
        self._connect = settings.connect_timeout
        self._read = settings.read_timeout
        headers = {
            "Content-Type": _wire.NDJSON_CONTENT_TYPE,
            "Content-Encoding": "gzip",
            "User-Agent": f"oglogstream-python/{VERSION}",
        }
        if settings.api_key:
            headers["Authorization"] = f"Bearer {settings.api_key}"
        self._client = httpx.Client(
            headers=headers,
            timeout=self._timeout(None),
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1, keepalive_expiry=30.0),
            verify=settings.verify,
            follow_redirects=False,
        )

    def _timeout(self, cap: float | None) -> httpx.Timeout:
        connect, read = self._connect, self._read
        if cap is not None:
            cap = max(cap, 0.001)
            connect, read = min(connect, cap), min(read, cap)
        return httpx.Timeout(connect=connect, read=read, write=read, pool=connect)

    def send(self, batch: Batch, *, timeout: float | None = None) -> SendResult:
        """POST the batch; `timeout` caps each phase (used to honour a close() deadline)."""
        try:
            body = gzip.compress(b"".join(batch.lines), compresslevel=GZIP_LEVEL, mtime=0)
            response = self._client.post(
                self._endpoint,
                content=body,
                headers={_wire.BATCH_ID_HEADER: batch.batch_id},
                timeout=self._timeout(timeout),
            )
        except httpx.TimeoutException as exc:
            error = f"timeout talking to {self._endpoint}: {type(exc).__name__}"
            return SendResult(Outcome.RETRY, error=error)
        except httpx.HTTPError as exc:  # connect/read/write/protocol errors
            error = f"cannot reach {self._endpoint}: {type(exc).__name__}: {exc}"
            return SendResult(Outcome.RETRY, error=error)
        except Exception as exc:  # anything else is treated as transient, never as a reason to lose data
            return SendResult(Outcome.RETRY, error=f"unexpected error sending to {self._endpoint}: {exc!r}")
        return self._classify(response, len(batch))

    def _classify(self, response: httpx.Response, size: int) -> SendResult:
        status = response.status_code
        if 200 <= status < 300:
            return SendResult(Outcome.OK, status, rejected=_rejected(response, size))
        detail = f"HTTP {status} from {self._endpoint}: {response.text[:300]!r}"
        if status == 413:
            return SendResult(Outcome.TOO_LARGE, status, error=detail)
        if status in _RETRY_STATUSES:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            return SendResult(Outcome.RETRY, status, retry_after=retry_after, error=detail)
        return SendResult(Outcome.DROP, status, error=detail)

    def close(self) -> None:
        with contextlib.suppress(Exception):  # best effort; the process may be exiting
            self._client.close()


def _rejected(response: httpx.Response, size: int) -> tuple[tuple[int, str], ...]:
    """Entries a 2xx partial-accept answer lists as rejected (indices validated against the batch)."""
    content = response.content
    if not content or len(content) > _MAX_ANSWER_BYTES:
        return ()
    try:
        answer = json.loads(content)
    except ValueError:
        return ()
    items = answer.get("rejected") if isinstance(answer, dict) else None
    if not isinstance(items, list):
        return ()
    seen: dict[int, str] = {}
    for item in items:
        if isinstance(item, dict):
            index = item.get("index")
            if isinstance(index, int) and not isinstance(index, bool) and 0 <= index < size:
                seen[index] = str(item.get("error", ""))
    return tuple(sorted(seen.items()))
