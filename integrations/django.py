"""Django: `RequestLogMiddleware` binds a request id for the request and writes one access record.

    MIDDLEWARE = ["oglogstream.integrations.django.RequestLogMiddleware", ...]  # first: it sees everything

The access record is the one record of a request in OgLogStream, and carries an unhandled exception's
traceback: `django.request`'s records about requests it recorded and runserver's `django.server` access lines
are kept off every `OgLogHandler` (other handlers, e.g. the console, still get them).

Settings (all optional, read once when Django builds the middleware chain): OGLOG_REQUEST_ID_HEADER,
OGLOG_TRUSTED_PROXIES, OGLOG_SKIP_PATHS, OGLOG_SKIP_ROUTES, OGLOG_ACCESS_SAMPLE_RATE, OGLOG_LOG_QUERY,
OGLOG_LOG_USER. Shipping is configured in LOGGING as usual (see docs/integrations.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import oglogstream
from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.utils.functional import LazyObject, empty

from ._common import ACCESS_LOGGER_NAME, AccessConfig, AccessLog, level_for_status
from ._duplicates import DuplicateFilter, attach_to_oglog_handlers

__all__ = ["ACCESS_LOGGER_NAME", "RequestLogMiddleware"]

# Where process_exception leaves the view's exception for the access record (the request is per request).
_EXCEPTION_ATTR = "_oglogstream_exception"
# Set on every request the middleware sees: django.request records about it are duplicates.
_RECORDED_ATTR = "_oglogstream_recorded"
# runserver's access line (django.core.servers.basehttp.WSGIRequestHandler.log_request).
_RUNSERVER_ACCESS_FORMAT = '"%s" %s %s'

_perf_counter = time.perf_counter


class RequestLogMiddleware:
    """Request id in the logging context, echoed in the response, and one access record per request."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        config = AccessConfig.from_settings(lambda name, default: getattr(settings, name, default))
        self.access = AccessLog(config)
        self._meta_key = self.access.config.wsgi_header_key
        self._header = self.access.config.request_id_header
        self._async = iscoroutinefunction(get_response)
        if self._async:
            markcoroutinefunction(self)
        # Django builds the middleware chain after LOGGING is applied: the handlers it configured are there.
        attach_to_oglog_handlers(_DjangoDuplicates())

    def __call__(self, request: Any) -> Any:
        if self._async:
            return self.__acall__(request)
        start = _perf_counter()
        request_id = self.access.request_id(request.META.get(self._meta_key))
        setattr(request, _RECORDED_ATTR, True)
        with oglogstream.bound(request_id=request_id):
            try:
                response = self.get_response(request)
            except BaseException as exc:  # only when exceptions propagate (DEBUG_PROPAGATE_EXCEPTIONS)
                self._record(request, None, start, request_id, None, exc)
                raise
            user_id = self._user_id(request) if self.access.config.log_user else None
            self._record(request, response, start, request_id, user_id, None)
        return response

    async def __acall__(self, request: Any) -> Any:
        start = _perf_counter()
        request_id = self.access.request_id(request.META.get(self._meta_key))
        setattr(request, _RECORDED_ATTR, True)
        with oglogstream.bound(request_id=request_id):
            try:
                response = await self.get_response(request)
            except BaseException as exc:
                self._record(request, None, start, request_id, None, exc)
                raise
            user_id = await self._auser_id(request) if self.access.config.log_user else None
            self._record(request, response, start, request_id, user_id, None)
        return response

    def process_exception(self, request: Any, exception: BaseException) -> None:
        """Remember the view's exception: the access record carries its traceback if it ends in a 5xx."""
        setattr(request, _EXCEPTION_ATTR, exception)

    def _record(
        self,
        request: Any,
        response: Any,
        start: float,
        request_id: str,
        user_id: object,
        raised: BaseException | None,
    ) -> None:
        try:
            status = 500 if response is None else int(response.status_code)
            if response is not None:
                response[self._header] = request_id
            match = getattr(request, "resolver_match", None)
            route = getattr(match, "route", None) if match is not None else None
            self.access.record(
                request.META,
                path=request.path,
                route=route or None,
                status=status,
                start=start,
                request_id=request_id,
                user_id=user_id,
                exc=raised if raised is not None else getattr(request, _EXCEPTION_ATTR, None),
            )
        except Exception as exc:  # never fail the request because of its access record
            self.access.report(f"access record failed: {exc!r}")

    def _user_id(self, request: Any) -> object:
        """The authenticated user's pk (reading `request.user` may load it, as most views do anyway)."""
        try:
            return _pk(getattr(request, "user", None))
        except Exception:  # e.g. the session store or the database is down: the record goes out without it
            return None

    async def _auser_id(self, request: Any) -> object:
        """Like `_user_id`, without touching the database from the event loop."""
        try:
            user = getattr(request, "user", None)
            if isinstance(user, LazyObject) and user._wrapped is empty:  # not loaded by the view
                auser: Callable[[], Awaitable[Any]] | None = getattr(request, "auser", None)  # Django ≥ 5.0
                if auser is not None:
                    return _pk(await auser())
                return await sync_to_async(_pk)(user)
            return _pk(user)
        except Exception:
            return None


def _pk(user: Any) -> object:
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return user.pk


class _DjangoDuplicates(DuplicateFilter):
    """On OgLogHandlers: drops `django.request`'s record of a request the middleware records (the access
    record has the status and, for a 5xx, the traceback) and runserver's access lines (`django.server`, which
    also carry the raw query string)."""

    key = ("django",)

    def __init__(self) -> None:
        super().__init__()
        self.access_logger = logging.getLogger(ACCESS_LOGGER_NAME)

    def duplicate(self, record: logging.LogRecord) -> bool:
        name = record.name
        if name == "django.request":
            status = getattr(record, "status_code", None)
            return (
                isinstance(status, int)
                and status >= 400  # always recorded: skip rules and sampling never drop an error
                and getattr(getattr(record, "request", None), _RECORDED_ATTR, False)
                and self.access_logger.isEnabledFor(level_for_status(status))
            )
        return name == "django.server" and record.msg == _RUNSERVER_ACCESS_FORMAT
