"""httpx's and httpcore's loggers as the SDK's sending needs them: silent about the SDK's own requests
(`SENDING`), and their level caches warm, so a log call inside httpx never takes logging's module lock on the
worker (`warm_logging_caches`). Split from `_transport`, which sets `SENDING` around each request.
"""

from __future__ import annotations

import contextvars
import logging

__all__ = ["SENDING", "warm_logging_caches"]

_LEVELS = (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL)
_http_loggers: tuple[int, list[logging.Logger]] = (-1, [])

#: True while this context (the worker thread, or the asyncio sender task) is sending one of our requests.
SENDING: contextvars.ContextVar[bool] = contextvars.ContextVar("oglogstream_sending", default=False)
#: Every logger httpx/httpcore create records on (a logger's filters see only its own records).
_HTTP_LOGGER_NAMES = (
    "httpx", "httpcore.connection", "httpcore.http11", "httpcore.http2", "httpcore.proxy", "httpcore.socks"
)


class _OwnRequestsFilter(logging.Filter):
    """Drops what httpx/httpcore log about the SDK's own requests ("HTTP Request: POST .../logs ..."): with a
    console handler at INFO that is noise in the application's output. The application's own httpx use is
    untouched: only records created while `SENDING` is set in the current context are dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not SENDING.get()


_OWN_REQUESTS = _OwnRequestsFilter()
for _name in _HTTP_LOGGER_NAMES:  # logging.config (dictConfig/fileConfig) adds filters, never removes ours
    logging.getLogger(_name).addFilter(_OWN_REQUESTS)


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
