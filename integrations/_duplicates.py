"""Keeping a framework's own per-request records out of OgLogStream when the access record says it all.

Django's `django.request` ("Internal Server Error: /x" with the traceback, "Not Found: /y") and
`django.server` (runserver's access lines), Flask's "Exception on ..." and Werkzeug's development-server
access lines (ANSI colours, raw query string) each repeat what the integration's access record carries.
The integrations put a `DuplicateFilter` on every `OgLogHandler`, never on a logger: the console and other
handlers keep those records.
"""

from __future__ import annotations

import logging

__all__ = ["DuplicateFilter", "attach_to_oglog_handlers"]


class DuplicateFilter(logging.Filter):
    """Base of the filters that keep a framework's own request records (which repeat the access record, or
    carry an unredacted query string) out of OgLogStream. They go on `OgLogHandler`s only, so the console
    and any other handler still get those records. `key` tells two instances with the same job apart."""

    key: tuple[object, ...] = ()

    def duplicate(self, record: logging.LogRecord) -> bool:
        raise NotImplementedError

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            return not self.duplicate(record)
        except Exception:  # a record we cannot judge is shipped: a duplicate is better than a loss
            return True


def attach_to_oglog_handlers(duplicate_filter: DuplicateFilter) -> int:
    """Add `duplicate_filter` to every `OgLogHandler` attached to a logger now (unless one with the same key
    is there already); returns how many handlers got it. Handlers added to loggers later do not get it."""
    from oglogstream import OgLogHandler

    manager = logging.Logger.manager
    named = [lg for lg in list(manager.loggerDict.values()) if isinstance(lg, logging.Logger)]
    loggers = [manager.root, *named]
    added = 0
    for logger in loggers:
        for handler in list(logger.handlers):
            if not isinstance(handler, OgLogHandler):
                continue
            if any(isinstance(f, DuplicateFilter) and f.key == duplicate_filter.key for f in handler.filters):
                continue
            handler.addFilter(duplicate_filter)
            added += 1
    return added
