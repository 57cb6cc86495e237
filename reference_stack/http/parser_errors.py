"""Requests aiohttp's HTTP parser refuses, answered as problem+json like every other error.

An over-long request line or header (aiohttp's limits: 8,190 bytes per line, 128 headers), bytes that are
not HTTP, a bad method or a malformed header are refused while parsing, before any middleware runs, and
aiohttp answers them from `RequestHandler.handle_error` with a plain-text 400. aiohttp has no hook for that
answer (aio-libs/aiohttp#3287, open): `install()` replaces that one method, process-wide, once. The
replacement still calls aiohttp's own (which logs the refusal; auth/redact.py turns it into one INFO line)
and then answers `problem_response(Problem(status, ..., "request", reason))` instead, where the reason is
the parser's leading words or the kind of error, never request bytes, at most 100 characters
(`auth.redact.concise`). Errors that are not the parser's (status 500) keep aiohttp's answer.
"""

from __future__ import annotations

from http import HTTPStatus

from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from ..auth.redact import concise
from .boundary import Problem, problem_response

__all__ = ["install"]

_AIOHTTP_HANDLE_ERROR = RequestHandler.handle_error


def _problem_answer(
    self: RequestHandler,
    request: BaseRequest,
    status: int = 500,
    exc: BaseException | None = None,
    message: str | None = None,
) -> StreamResponse:
    if not isinstance(exc, HttpProcessingError) or not 400 <= status < 500:
        return _AIOHTTP_HANDLE_ERROR(self, request, status, exc, message)
    reason = concise(exc)
    # aiohttp's own logs the refusal and raises ConnectionError when an answer was already started; its
    # plain-text response is dropped.
    _AIOHTTP_HANDLE_ERROR(self, request, status, exc, reason)
    try:
        title = HTTPStatus(status).phrase.lower()
    except ValueError:
        title = "bad request"
    response = problem_response(Problem(status, title, "request", reason))
    response.force_close()  # the parser cannot resynchronise on this connection
    return response


def install() -> None:
    """Answer parser-refused requests as problem+json in this process (idempotent)."""
    RequestHandler.handle_error = _problem_answer  # type: ignore[method-assign]
