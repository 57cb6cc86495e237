"""HTTP delivery of one batch: `send(batch) -> SendResult` and `close()`; httpx stays behind this boundary.

Every httpx exception is translated here into a `SendResult`, so the worker only ever sees outcomes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import email.utils
import enum
import gzip
import importlib
import json
import time
from typing import Protocol

import httpcore  # noqa: F401  # imported now: httpx imports it lazily, and importing takes logging's lock
import httpx

from . import wire as _wire
from ._answer import ACCEPT_ENCODING, MAX_ANSWER_BYTES, AnswerReader
from ._buffer import Batch
from ._deadline import attempt
from ._http_client import (
    PROXY_AUTH_HINT,
    GoingOut,
    async_trace,
    bound_every_attempt,
    proxy_route,
    trace,
    with_env_proxies,
)
from ._http_logging import SENDING, warm_logging_caches  # re-exported: the worker warms the caches
from ._settings import Settings
from ._version import VERSION

__all__ = [
    "ASYNC_GZIP_OFFLOAD_BYTES",
    "GZIP_LEVEL",
    "AsyncHttpTransport",
    "GoingOut",
    "HttpTransport",
    "Outcome",
    "SendResult",
    "Transport",
    "attempt_deadline",
    "classify",
    "failure",
    "parse_retry_after",
    "phase_timeout",
    "request_body",
    "request_headers",
    "warm_logging_caches",
]

#: Fast compression: log lines compress well even at level 1, and the worker's CPU is the bottleneck.
GZIP_LEVEL = 1
#: Characters of a rejected entry's error kept (the first one is reported on stderr).
_MAX_ERROR_CHARS = 300
_RETRY_STATUSES = frozenset({408, 429}) | frozenset(range(500, 600))


# socket.getaddrinfo() encodes the host with the "idna" codec, whose first use imports encodings.idna. Done
# now, at import: in a forked child (a gunicorn worker) that first import on the worker thread can race the
# main thread's imports, fail, and be cached as "unknown encoding: idna" (LookupError on every send after).
"oglogstream".encode("idna")


class Outcome(enum.Enum):
    OK = "ok"  # 2xx: sent (minus any entries the answer lists as rejected)
    RETRY = "retry"  # connection error, timeout, 408, 429, 5xx: send the same batch again later
    TOO_LARGE = "too_large"  # 413: split and resend
    DROP = "drop"  # any other answer: the server will never take this batch


@dataclasses.dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    status: int | None = None
    #: For OK: (index in batch, error) of entries the server listed as rejected (it may list only the first).
    rejected: tuple[tuple[int, str], ...] = ()
    #: For OK: how many entries of the batch the server refused in all (`_rejected`): at least
    #: len(rejected), at most the batch's length.
    rejected_count: int = 0
    #: Seconds the server asked us to wait (Retry-After), if it did.
    retry_after: float | None = None
    error: str | None = None
    #: For OK: why the answer's body was not read (an encoding we do not decode, a body that does not
    #: decode or is cut short, one past MAX_ANSWER_BYTES): the batch counts as accepted in full, announced.
    unread: str | None = None


class Transport(Protocol):
    def send(
        self, batch: Batch, *, timeout: float | None = None, going_out: GoingOut | None = None
    ) -> SendResult: ...

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


def request_headers(settings: Settings) -> dict[str, str]:
    """Headers every `POST /logs` carries (the per-batch id header is added per request)."""
    headers = {
        "Content-Type": _wire.NDJSON_CONTENT_TYPE,
        "Content-Encoding": "gzip",
        "User-Agent": f"oglogstream-python/{VERSION}",
        "Accept-Encoding": ACCEPT_ENCODING,
    }
    if settings.api_key:
        headers["Authorization"] = f"Bearer {settings.api_key}"
    return headers


def request_body(batch: Batch) -> bytes:
    """The gzip NDJSON body of a batch (deterministic: mtime=0, so a resent batch is byte-identical)."""
    return gzip.compress(b"".join(batch.lines), compresslevel=GZIP_LEVEL, mtime=0)


def phase_timeout(settings: Settings, cap: float | None) -> httpx.Timeout:
    """Per-phase timeouts, each capped at `cap` seconds (what is left before a close() deadline)."""
    connect, read = settings.connect_timeout, settings.read_timeout
    if cap is not None:
        cap = max(cap, 0.001)
        connect, read = min(connect, cap), min(read, cap)
    return httpx.Timeout(connect=connect, read=read, write=read, pool=connect)


def attempt_deadline(settings: Settings, cap: float | None) -> float:
    """Seconds one attempt (connect, send, wait for and read the answer) may take in total:
    connect_timeout + read_timeout (15 s by default), or `cap` (a close() deadline) if that is sooner.
    The per-phase timeouts alone never end an attempt against a server that trickles its answer."""
    total = settings.connect_timeout + settings.read_timeout
    return total if cap is None else max(min(total, cap), 0.001)


def failure(endpoint: str, exc: Exception) -> SendResult:
    """An exception from sending, translated: always retryable (never a reason to lose data). Whether the
    server may have stored the request is not decided here but by whether it went out (`GoingOut`).
    `endpoint`: as `_http_client.describe_route` names it (the proxy too, when the request goes through
    one: a refusing proxy is what the user must look at)."""
    if isinstance(exc, httpx.TimeoutException):
        detail = f": {exc}" if str(exc) else ""
        return SendResult(
            Outcome.RETRY,
            error=f"timeout talking to {endpoint}: {type(exc).__name__}{detail}",
        )
    if isinstance(exc, httpx.HTTPError):  # connect/read/write/protocol errors
        error = f"cannot reach {endpoint}: {type(exc).__name__}: {exc}"
        return SendResult(Outcome.RETRY, error=error)
    return SendResult(Outcome.RETRY, error=f"unexpected error sending to {endpoint}: {exc!r}")


def classify(
    response: httpx.Response, endpoint: str, size: int, unread: str | None = None, *, proxied: bool = False
) -> SendResult:
    """What an answer means for the batch: sent (maybe partly rejected), retry, split, or drop. `unread`:
    why the body is not the whole answer (`AnswerReader.problem`); a 2xx is then not parsed. `proxied`: the
    request went through a forward proxy (`_http_client.describe_route`), whose own 4xx (a block page's 403,
    a 407) come back the same way as the server's: one not in the server's problem+json form keeps and
    retries the records, as a 5xx does, instead of dropping them for a refusal the server never made."""
    status = response.status_code
    if 200 <= status < 300:
        if unread is not None:
            return SendResult(Outcome.OK, status, unread=unread)
        count, listed = _rejected(response, size)
        return SendResult(Outcome.OK, status, rejected=listed, rejected_count=count)
    text = response.text[:300]
    detail = f"HTTP {status} from {endpoint}: {text!r}" + (f" ({unread})" if unread and not text else "")
    if status == 413:
        return SendResult(Outcome.TOO_LARGE, status, error=detail)
    if status == 407:
        # Proxy Authentication Required (RFC 9110 15.5.8) comes from a proxy between us and the server, never
        # from the server: it says nothing about the records, so they wait and are retried (bounded by the
        # buffer; loss is counted and announced as ever) instead of being dropped as `client_error` as the
        # server's own 4xx are (found by review: an http:// endpoint behind an authenticating proxy).
        hint = f"the proxy {PROXY_AUTH_HINT} (user:password in its HTTP(S)_PROXY value)"
        return SendResult(Outcome.RETRY, status, error=f"{detail}: {hint}")
    problem = _wire.is_problem(response.headers.get("Content-Type"))
    if proxied and 400 <= status < 500 and status != 413 and not problem:
        return SendResult(
            Outcome.RETRY, status, error=f"{detail}: not the server's problem+json answer, so taken for the"
            " proxy's (records kept and retried)",
        )
    if status in _RETRY_STATUSES:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return SendResult(Outcome.RETRY, status, retry_after=retry_after, error=detail)
    return SendResult(Outcome.DROP, status, error=detail)


def _route(client: httpx.Client | httpx.AsyncClient, endpoint: str) -> tuple[str, bool]:
    """(the endpoint as failures name it, `_http_client.describe_route`; whether requests go through a
    proxy, for `classify`)."""
    proxy = proxy_route(client, endpoint)
    return (endpoint if proxy is None else f"{endpoint} via proxy {proxy}"), proxy is not None


_LIMITS = httpx.Limits(max_connections=1, max_keepalive_connections=1, keepalive_expiry=30.0)


class HttpTransport:
    """One keep-alive connection to `{url}/logs`; gzip NDJSON bodies; per-batch idempotency header."""

    def __init__(self, settings: Settings) -> None:
        # gevent's resolver (after a late `monkey.patch_all()`) imports concurrent.futures.thread the first
        # time it resolves a host, and that import registers a threading exit hook, which raises once the
        # interpreter is exiting: a connection first opened by the exit drain failed, and every record logged
        # since the patch was lost as `shutdown`. Imported here, when the transport is built.
        import concurrent.futures.thread  # noqa: F401

        self._settings = settings
        self._url = httpx.URL(settings.endpoint)  # parsed once, not on every request
        # No `transport=`: with one, httpx ignores HTTP(S)_PROXY/ALL_PROXY/NO_PROXY (found by review: the
        # handler went direct where AsyncOgLogClient used the proxy); the client builds its transports from
        # the environment, as the asyncio client's does.
        self._client = with_env_proxies(
            httpx.Client,
            headers=request_headers(settings),
            timeout=phase_timeout(settings, None),
            limits=_LIMITS,
            verify=settings.verify,
            follow_redirects=False,
        )
        bound_every_attempt(self._client)
        #: The endpoint as failures name it: with the proxy the request goes through, if any.
        self._target, self._proxied = _route(self._client, settings.endpoint)

    def send(
        self, batch: Batch, *, timeout: float | None = None, going_out: GoingOut | None = None
    ) -> SendResult:
        """POST the batch within `attempt_deadline(settings, timeout)` seconds in total; `timeout` also caps
        each phase (used to honour a close() deadline); `going_out()` is called just before the request's
        first byte is written (not when the connection is refused)."""
        token = SENDING.set(True)
        try:
            with attempt(attempt_deadline(self._settings, timeout)):
                response, unread = self._post(batch, timeout, going_out)
        except Exception as exc:
            return failure(self._target, exc)
        finally:
            SENDING.reset(token)
        return classify(response, self._target, len(batch), unread, proxied=self._proxied)

    def _post(
        self, batch: Batch, timeout: float | None, going_out: GoingOut | None
    ) -> tuple[httpx.Response, str | None]:
        """The answer, its body read up to MAX_ANSWER_BYTES decoded bytes (`_answer.AnswerReader`), and
        why that body is not the whole answer (`AnswerReader.problem`) or None."""
        # None: the client's own timeouts (`phase_timeout(settings, None)`), not built per request
        phases = httpx.USE_CLIENT_DEFAULT if timeout is None else phase_timeout(self._settings, timeout)
        with self._client.stream(
            "POST",
            self._url,
            content=request_body(batch),
            headers={_wire.BATCH_ID_HEADER: batch.batch_id},
            timeout=phases,
            extensions=None if going_out is None else {"trace": trace(going_out)},
        ) as answer:
            reader = AnswerReader(answer.headers.get("Content-Encoding", ""))
            for raw in answer.iter_raw():
                if not reader.feed(raw):
                    break  # the rest is not read: closing the stream drops the connection
            return reader.response(answer), reader.problem

    def close(self) -> None:
        with contextlib.suppress(Exception):  # best effort; the process may be exiting
            self._client.close()


#: Bodies at least this large are gzipped on a thread by the asyncio transport (zlib releases the GIL), so a
#: large batch does not hold the event loop for milliseconds.
ASYNC_GZIP_OFFLOAD_BYTES = 32 * 1024


class AsyncHttpTransport:
    """`HttpTransport` for asyncio (httpx.AsyncClient): same headers, body, timeouts and classification."""

    def __init__(self, settings: Settings) -> None:
        # httpcore imports its asyncio backend (anyio) on the first request; do it now, not on the loop.
        with contextlib.suppress(ImportError):
            importlib.import_module("httpcore._backends.anyio")
        self._settings = settings
        self._endpoint = settings.endpoint
        #: Gzip large bodies on a thread (off at interpreter exit, when no thread can be started).
        self.offload_gzip = True
        self._client = with_env_proxies(
            httpx.AsyncClient,
            headers=request_headers(settings),
            timeout=phase_timeout(settings, None),
            limits=_LIMITS,
            verify=settings.verify,
            follow_redirects=False,
        )
        self._target, self._proxied = _route(self._client, settings.endpoint)

    async def send(
        self, batch: Batch, *, timeout: float | None = None, going_out: GoingOut | None = None
    ) -> SendResult:
        token = SENDING.set(True)  # in this task's context only: other tasks' httpx use is untouched
        try:
            body = await self._body(batch)
            total = attempt_deadline(self._settings, timeout)
            posting = self._post(body, batch.batch_id, timeout, going_out)
            response, unread = await asyncio.wait_for(posting, total)
        except asyncio.TimeoutError:  # the attempt's total deadline (httpx's own timeouts are per phase)
            return SendResult(
                Outcome.RETRY,
                error=f"timeout talking to {self._target}: no answer within {total:g} s",
            )
        except Exception as exc:
            return failure(self._target, exc)
        finally:
            SENDING.reset(token)
        return classify(response, self._target, len(batch), unread, proxied=self._proxied)

    async def _post(
        self, body: bytes, batch_id: str, timeout: float | None, going_out: GoingOut | None
    ) -> tuple[httpx.Response, str | None]:
        """As `HttpTransport._post`: the answer and its reading's problem, if any."""
        async with self._client.stream(
            "POST",
            self._endpoint,
            content=body,
            headers={_wire.BATCH_ID_HEADER: batch_id},
            timeout=phase_timeout(self._settings, timeout),
            extensions=None if going_out is None else {"trace": async_trace(going_out)},
        ) as answer:
            reader = AnswerReader(answer.headers.get("Content-Encoding", ""))
            async for raw in answer.aiter_raw():
                if not reader.feed(raw):
                    break  # the rest is not read: closing the stream drops the connection
            return reader.response(answer), reader.problem

    async def _body(self, batch: Batch) -> bytes:
        """The gzipped body; a large one on a thread, unless no thread can be started any more (the
        interpreter is exiting: the executor refuses work, or cannot even register its atexit hook)."""
        if self.offload_gzip and batch.nbytes >= ASYNC_GZIP_OFFLOAD_BYTES:
            try:
                return await asyncio.to_thread(request_body, batch)
            except RuntimeError:
                self.offload_gzip = False
        return request_body(batch)

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            await self._client.aclose()


def _rejected(response: httpx.Response, size: int) -> tuple[int, tuple[tuple[int, str], ...]]:
    """(how many entries of a batch of `size` a 2xx partial-accept answer refused, the (index, error) pairs
    it lists). The list's indices are validated against the batch (ints in range, each once). The stack
    lists only the first refusals and counts them all in `rejected_count`: that count is taken when it is an
    int from len(listed) to `size`; anything else (absent, negative, over the batch, below what is listed, a
    string, a bool) falls back to the listed entries. Never raises; bounded work (the body is parsed only
    up to MAX_ANSWER_BYTES, and the list's walk stops once every index of the batch was seen)."""
    content = response.content
    if not content or len(content) > MAX_ANSWER_BYTES:
        return 0, ()
    try:
        answer = json.loads(content)
    except Exception:  # any unparsable 2xx body (bad JSON, RecursionError on deep nesting): all accepted
        return 0, ()
    if not isinstance(answer, dict):
        return 0, ()
    items = answer.get("rejected")
    seen: dict[int, str] = {}
    if isinstance(items, list):
        for item in items:
            if isinstance(item, dict):
                index = item.get("index")
                if type(index) is int and 0 <= index < size and index not in seen:
                    seen[index] = str(item.get("error", ""))[:_MAX_ERROR_CHARS]
                    if len(seen) == size:
                        break
    listed = tuple(sorted(seen.items()))
    count = answer.get("rejected_count")
    if type(count) is int and len(listed) <= count <= size:
        return count, listed
    return len(listed), listed
