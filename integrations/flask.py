"""Flask: `OgLog(app)` / `OgLog().init_app(app)` — request id, access records, and (optionally) the handler.

Read once from `app.config` at `init_app`: OGLOG_URL, OGLOG_SERVICE, OGLOG_API_KEY, OGLOG_LEVEL,
OGLOG_HANDLER_OPTIONS (when OGLOG_URL is set, an OgLogHandler is added to the root logger), and the request
settings shared with Django: OGLOG_REQUEST_ID_HEADER, OGLOG_TRUSTED_PROXIES, OGLOG_SKIP_PATHS,
OGLOG_SKIP_ROUTES, OGLOG_ACCESS_SAMPLE_RATE, OGLOG_LOG_QUERY, OGLOG_LOG_USER, OGLOG_USER_ID.
"""

from __future__ import annotations

import copy
import logging
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

import oglogstream
from flask import Flask, Response, has_request_context, request
from flask.signals import got_request_exception

from ._common import ACCESS_LOGGER_NAME, AccessConfig, AccessLog, wsgi_path
from ._duplicates import DuplicateFilter, attach_to_oglog_handlers

__all__ = ["ACCESS_LOGGER_NAME", "EXTENSION_KEY", "OgLog"]

#: `app.extensions[EXTENSION_KEY]` holds the app's `_AppState`.
EXTENSION_KEY = "oglogstream"
DEFAULT_HANDLER_LEVEL = "INFO"

# Per-request state lives in the WSGI environ: `flask.g` may be shared by requests when a test (or a CLI
# command) keeps an application context pushed.
_START = "oglogstream.start"
_REQUEST_ID = "oglogstream.request_id"
_RESPONSE = "oglogstream.response"
_EXCEPTION = "oglogstream.exception"

#: Werkzeug's development-server logger, and the format of its access lines (WSGIRequestHandler.log_request).
WERKZEUG_LOGGER_NAME = "werkzeug"
_WERKZEUG_ACCESS_SUFFIX = '] "%s" %s %s'
#: SGR escape sequences (colours, bold) Werkzeug wraps its startup lines in for a terminal.
_ANSI_SGR = re.compile(r"\x1b\[[0-9;]*m")

_perf_counter = time.perf_counter

UserIdGetter = Callable[[], object]


class OgLog:
    """The Flask extension. One instance may serve several apps; each app's state is in `app.extensions`."""

    def __init__(self, app: Flask | None = None) -> None:
        self.handler: oglogstream.OgLogHandler | None = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Validate the config; install the handler (if OGLOG_URL is set), the WSGI wrapper and the hooks."""
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError(f"oglogstream is already initialised on app {app.name!r}")
        config = app.config
        access = AccessLog(AccessConfig.from_settings(config.get))
        user_id = config.get("OGLOG_USER_ID")
        if user_id is not None and not callable(user_id):
            raise ValueError(f"OGLOG_USER_ID must be a callable returning a user id or None, got {user_id!r}")
        # Create Flask's logger now: it only adds its default stderr handler when no handler above it exists,
        # and the handler installed below must not take that console output away.
        app_logger = app.logger
        handler = _build_handler(config)
        state = _AppState(app, access, handler, user_id)
        if handler is not None:
            _keep_werkzeug_console()
            logging.getLogger().addHandler(handler)
            self.handler = handler
        # On the installed handler and on any OgLogHandler the app configured itself.
        attach_to_oglog_handlers(_FlaskDuplicates(app_logger.name))
        app.extensions[EXTENSION_KEY] = state
        app.wsgi_app = _RequestScope(app.wsgi_app, state)  # type: ignore[method-assign]
        # Registered first, so it runs last (after_request functions run in reverse order): the access record
        # sees the final response.
        app.after_request_funcs.setdefault(None, []).insert(0, state.after_request)
        got_request_exception.connect(state.on_exception, app)

    def close(self, app: Flask | None = None, timeout: float | None = None) -> bool:
        """Remove the installed handler from the root logger and close it (delivering what it holds)."""
        handler: oglogstream.OgLogHandler | None = (
            app.extensions[EXTENSION_KEY].handler if app is not None else self.handler
        )
        if handler is None:
            return True
        logging.getLogger().removeHandler(handler)
        self.handler = None if self.handler is handler else self.handler
        return bool(handler.close(timeout))


def _build_handler(config: Any) -> oglogstream.OgLogHandler | None:
    url = config.get("OGLOG_URL")
    if not url:
        return None
    options = config.get("OGLOG_HANDLER_OPTIONS") or {}
    if not isinstance(options, dict):
        raise ValueError(f"OGLOG_HANDLER_OPTIONS must be a dict of OgLogHandler settings, got {options!r}")
    try:
        return oglogstream.OgLogHandler(
            url,
            config.get("OGLOG_SERVICE"),
            api_key=config.get("OGLOG_API_KEY"),
            level=config.get("OGLOG_LEVEL", DEFAULT_HANDLER_LEVEL),
            **options,
        )
    except TypeError as exc:  # an unknown or duplicated keyword in OGLOG_HANDLER_OPTIONS
        raise ValueError(f"OGLOG_HANDLER_OPTIONS: {exc}") from None


def _keep_werkzeug_console() -> None:
    """Werkzeug adds its own stderr handler for its development-server lines only when no handler above its
    logger would print them; the root handler about to be installed would count as one (and is kept from
    shipping those lines), so the console they would have had is added now, as Werkzeug would have."""
    werkzeug = logging.getLogger(WERKZEUG_LOGGER_NAME)
    level = werkzeug.getEffectiveLevel() if werkzeug.level else logging.INFO
    logger: logging.Logger | None = werkzeug
    while logger is not None:
        if any(h.level <= level for h in logger.handlers):
            return
        logger = logger.parent if logger.propagate else None
    werkzeug.addHandler(logging.StreamHandler())


class _AppState:
    """Per-app settings and the hooks bound to them."""

    def __init__(
        self,
        app: Flask,
        access: AccessLog,
        handler: oglogstream.OgLogHandler | None,
        user_id: UserIdGetter | None,
    ) -> None:
        self.app = app
        self.access = access
        self.handler = handler
        self.user_id = user_id
        self.header = access.config.request_id_header
        self.log_user = access.config.log_user

    def after_request(self, response: Response) -> Response:
        try:
            environ = request.environ
            request_id = environ.get(_REQUEST_ID)
            if request_id is not None:
                response.headers[self.header] = request_id
                rule = request.url_rule
                environ[_RESPONSE] = (
                    response.status_code,
                    rule.rule if rule is not None else None,
                    self._user_id() if self.log_user else None,
                )
        except Exception as exc:
            self.access.report(f"after_request failed: {exc!r}")
        return response

    def on_exception(self, sender: Flask, exception: BaseException, **_: Any) -> None:
        """Keep the unhandled exception for the access record (and for the duplicate filter)."""
        request.environ[_EXCEPTION] = exception

    def _user_id(self) -> object:
        """OGLOG_USER_ID() — Flask has no user model of its own, so the app says who is logged in."""
        if self.user_id is None:
            return None
        try:
            return self.user_id()
        except Exception:  # e.g. the session store is down: the record goes out without a user id
            return None

    def finish(self, environ: dict[str, Any], raised: BaseException | None) -> None:
        try:
            status, route, user_id = environ.get(_RESPONSE) or (500, None, None)
            if raised is not None:
                status = 500
            # Only unhandled exceptions get here (HTTPExceptions and handled errors never reach the signal).
            self.access.record(
                environ,
                path=wsgi_path(environ),
                route=route,
                status=status,
                start=environ[_START],
                request_id=environ[_REQUEST_ID],
                user_id=user_id,
                exc=raised if raised is not None else environ.get(_EXCEPTION),
            )
        except Exception as exc:
            self.access.report(f"access record failed: {exc!r}")


class _RequestScope:
    """WSGI wrapper: the request id is bound around the whole request (every hook, view and teardown) and the
    context is restored afterwards even when a teardown raises: nothing leaks into the thread's next request.
    """

    def __init__(self, wsgi_app: Callable[..., Iterable[bytes]], state: _AppState) -> None:
        self.wsgi_app = wsgi_app
        self.state = state
        self._environ_key = state.access.config.wsgi_header_key

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        environ[_START] = _perf_counter()
        request_id = self.state.access.request_id(environ.get(self._environ_key))
        environ[_REQUEST_ID] = request_id
        with oglogstream.bound(request_id=request_id):
            try:
                result = self.wsgi_app(environ, start_response)
            except BaseException as exc:  # PROPAGATE_EXCEPTIONS (testing/debug), or a failing teardown
                self.state.finish(environ, exc)
                raise
            self.state.finish(environ, None)
        return result


class _FlaskDuplicates(DuplicateFilter):
    """On OgLogHandlers: drops Flask's own "Exception on ..." record when the access record carries that
    traceback, and Werkzeug's development-server access lines (ANSI colours, raw query string, and a second
    record for every request)."""

    def __init__(self, app_logger_name: str) -> None:
        super().__init__()
        self.app_logger_name = app_logger_name
        self.key = ("flask", app_logger_name)

    def filter(self, record: logging.LogRecord) -> bool | logging.LogRecord:  # type: ignore[override]
        """Not a duplicate: shipped; a Werkzeug line in terminal colours ("WARNING: This is a development
        server", "Press CTRL+C to quit") as a copy without them (`OgLogHandler.handle` takes a filter's
        replacement record on every Python version; the console keeps its colours)."""
        if not super().filter(record):
            return False
        if record.name != WERKZEUG_LOGGER_NAME:
            return True
        try:
            text = record.getMessage()
        except Exception:  # a line we cannot render is shipped as it is
            return True
        if "\x1b[" not in text:
            return True
        plain = copy.copy(record)
        plain.msg, plain.args = _ANSI_SGR.sub("", text), None
        return plain

    def duplicate(self, record: logging.LogRecord) -> bool:
        name = record.name
        if name == WERKZEUG_LOGGER_NAME:
            msg = record.msg
            return isinstance(msg, str) and msg.endswith(_WERKZEUG_ACCESS_SUFFIX)
        exc_info = record.exc_info
        if not exc_info or name != self.app_logger_name or not has_request_context():
            return False
        return request.environ.get(_EXCEPTION) is exc_info[1]
