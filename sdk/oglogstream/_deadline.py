"""A total deadline per HTTP attempt for the synchronous transport.

httpx's timeouts bound each socket operation, not the request: a server that answers one byte per second
never trips a 10 s read timeout and holds the worker forever. `DeadlineBackend` wraps httpcore's own sync
network backend and clamps every connect/read/write to what is left of the deadline set for the current
attempt (`attempt(seconds)`), raising httpcore's ConnectTimeout/ReadTimeout/WriteTimeout once it has passed;
httpx maps those to its TimeoutException subclasses, so the transport reports them as a retryable timeout.
"""

from __future__ import annotations

import contextlib
import contextvars
import ssl
import time
import typing
from collections.abc import Iterator

import httpcore

__all__ = ["DeadlineBackend", "attempt"]

#: monotonic() time by which the attempt running in this context must be over (inf: no attempt running).
_DEADLINE: contextvars.ContextVar[float] = contextvars.ContextVar("oglogstream_attempt_deadline",
                                                                  default=float("inf"))
#: A large body is written in slices of this many bytes, so a slow reader cannot stretch one write past the
#: deadline (each slice gets the time left).
_WRITE_SLICE = 64 * 1024


@contextlib.contextmanager
def attempt(seconds: float) -> Iterator[None]:
    """Within the block, every socket operation of this context ends by `seconds` (> 0) from now."""
    token = _DEADLINE.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


_PASSED = "the attempt's total deadline passed (oglogstream._transport.attempt_deadline)"
_T = typing.TypeVar("_T")


def _bounded(
    timeout: float | None, exc: type[Exception], operation: typing.Callable[[float | None], _T]
) -> _T:
    """`operation(timeout)` with `timeout` clamped to the time left of the attempt; raises `exc` (naming the
    deadline) when none is left, or when the operation timed out only because of the clamp."""
    deadline = _DEADLINE.get()
    if deadline == float("inf"):
        return operation(timeout)
    left = deadline - time.monotonic()
    if left <= 0:
        raise exc(_PASSED)
    if timeout is not None and timeout <= left:
        return operation(timeout)
    try:
        return operation(left)
    except httpcore.TimeoutException as error:
        raise exc(_PASSED) from error


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return _bounded(timeout, httpcore.ReadTimeout, lambda left: self._stream.read(max_bytes, left))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        view = memoryview(buffer)
        for start in range(0, len(view), _WRITE_SLICE):
            piece = bytes(view[start:start + _WRITE_SLICE])
            _bounded(timeout, httpcore.WriteTimeout, lambda left: self._stream.write(piece, left))  # noqa: B023

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        return _DeadlineStream(_bounded(
            timeout,
            httpcore.ConnectTimeout,
            lambda left: self._stream.start_tls(ssl_context, server_hostname, left),
        ))

    def get_extra_info(self, info: str) -> typing.Any:
        return self._stream.get_extra_info(info)


class DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's SyncBackend, with every operation bounded by the current attempt's deadline."""

    def __init__(self, inner: httpcore.NetworkBackend | None = None) -> None:
        self._inner = inner if inner is not None else httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> httpcore.NetworkStream:
        return _DeadlineStream(_bounded(
            timeout,
            httpcore.ConnectTimeout,
            lambda left: self._inner.connect_tcp(host, port, left, local_address, socket_options),
        ))

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> httpcore.NetworkStream:
        return _DeadlineStream(_bounded(
            timeout,
            httpcore.ConnectTimeout,
            lambda left: self._inner.connect_unix_socket(path, left, socket_options),
        ))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)
